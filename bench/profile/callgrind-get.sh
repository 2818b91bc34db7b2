#!/usr/bin/env bash
# Instructions per request of a GET of 1 KiB (or a PUT), counted by callgrind over 20,000
# keep-alive requests:
#
#     bash bench/profile/callgrind-get.sh                       # davrepl-server, memory store
#     bash bench/profile/callgrind-get.sh target/release/overhead ceiling   # the bare-axum ceiling
#
# The server runs under valgrind; 2,000 GETs warm it up, the counters are zeroed, 20,000 GETs
# are counted (one connection, so the count is per request, not per scheduling accident). The
# profile is left in target/profile/callgrind.out.1 for `callgrind_annotate` (see
# docs/benchmarks/profiling.md).
#
# `MEMBERS=1000` first stores that many small items beside the one read (as the peers report
# does), so that a store's lookup cost at a realistic size is in the count. `METHOD=PUT`
# counts PUTs of 1 KiB instead, each to a new URL (as the report's PUT row does).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
port=$((20000 + RANDOM % 10000))
out=target/profile/callgrind.out
mkdir -p target/profile
rm -f "$out"*
if [ $# -eq 0 ]; then
    cargo build --release --quiet -p davrepl-server
    set -- target/release/davrepl-server --listen "127.0.0.1:$port" --store memory
else
    set -- "$@" "127.0.0.1:$port"
fi
DAVREPL_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.5
done
head -c 1024 /dev/zero | curl -s -o /dev/null -X PUT --data-binary @- "http://127.0.0.1:$port/small.bin"
if [ "${MEMBERS:-0}" -gt 0 ]; then
    curl -s -o /dev/null -X MKCOL "http://127.0.0.1:$port/coll/"
    python3 - "$port" "$MEMBERS" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("PUT", f"/coll/m{i:05}.txt", body=b"hello")
    r = c.getresponse()
    assert r.status == 201, r.status
    r.read()
PY
fi
method=${METHOD:-GET}
# Sends $2 requests; PUTs go to new URLs numbered from $3.
requests() {
    python3 - "$port" "$method" "$1" "$2" <<'PY'
import http.client, sys
port, method, n, first = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(first, first + n):
    if method == "PUT":
        c.request("PUT", f"/new-{i}.bin", body=b"x" * 1024)
    else:
        c.request("GET", "/small.bin")
    r = c.getresponse()
    assert r.status == (201 if method == "PUT" else 200), r.status
    r.read()
PY
}
requests 2000 0
callgrind_control -z "$pid" >/dev/null 2>&1
requests 20000 100000
callgrind_control -d "$pid" >/dev/null 2>&1
total=$(awk '/^summary:/ {print $2}' "$out.1")
echo "instructions per $method: $((total / 20000))   (profile: $out.1)"
