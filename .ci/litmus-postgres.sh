#!/usr/bin/env bash
# Runs .ci/litmus.sh against the reference server on a throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p davrepl-postgres --example throwaway-cluster
tmp=$(mktemp -d)
mkfifo "$tmp/ctl"
./target/release/examples/throwaway-cluster <"$tmp/ctl" >"$tmp/url" 2>"$tmp/log" &
cluster=$!
exec 3>"$tmp/ctl" # the cluster lives until this closes
stop() {
    exec 3>&-
    wait "$cluster" 2>/dev/null || true
    rm -rf "$tmp"
}
trap stop EXIT
for _ in $(seq 1 600); do
    [ -s "$tmp/url" ] && break
    kill -0 "$cluster" 2>/dev/null || break
    sleep 0.1
done
[ -s "$tmp/url" ] || { echo "the throwaway cluster did not start:"; cat "$tmp/log"; exit 1; }
bash .ci/litmus.sh "$(head -1 "$tmp/url")"
