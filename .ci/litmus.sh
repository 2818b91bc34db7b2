#!/usr/bin/env bash
# Runs litmus against the reference server and fails unless the required suites pass 100%.
# usage: .ci/litmus.sh STORE   (e.g. memory, sqlite:/tmp/x.db, postgres:URL)
set -euo pipefail
cd "$(dirname "$0")/.."
store="${1:-memory}"
required="basic copymove props http locks"

cargo build --release --locked -q -p davrepl-server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
./target/release/davrepl-server --listen "127.0.0.1:$port" --store "$store" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    grep -q "listening on" "$log" && break
    sleep 0.1
done
grep -q "listening on" "$log" || { echo "server did not start:"; cat "$log"; exit 1; }

out=$(mktemp)
# litmus -k exits 0 even when tests fail; the summary lines are the truth.
(cd "$(mktemp -d)" && litmus -k "http://127.0.0.1:$port/") >"$out" 2>&1 || true
grep -E '^<- summary for' "$out" || { echo "litmus printed no summary:"; cat "$out"; exit 1; }

status=0
for suite in $required; do
    line=$(grep -E "^<- summary for \`$suite'" "$out" || true)
    failed=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
    if [ -z "$line" ] || [ "${failed:-1}" != "0" ]; then
        echo "litmus suite $suite did not pass 100%: ${line:-missing}"
        grep -E 'FAIL' "$out" || true
        status=1
    fi
done
# Every test must run: a skipped test (e.g. locking tests when the server does not answer
# class 2) is not a pass.
if grep -E 'SKIPPED|were skipped' "$out"; then
    echo "litmus skipped tests (above)"
    status=1
fi
exit $status
