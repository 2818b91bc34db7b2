#!/usr/bin/env bash
# Alternating A/B of GET 1 KiB on the memory store between two davrepl-server binaries (or a
# binary and the ceiling), so that drift of the machine hits both alike:
#
#     bash bench/profile/ab-get.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Each round runs `wrk -t2 -c16 -d3s` against A, then B; prints every round's requests/s
# and the two medians. A binary named `overhead` is started as the bare-axum ceiling.
# `STORE=postgres://...` runs both on that database instead of the memory store; `ARGS="..."`
# adds server options to both (e.g. `ARGS="--pg-hot-items 0"`).
set -euo pipefail
a=$1; b=$2; rounds=${3:-6}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
start() {
    local bin=$1 port=$2
    if [ "$(basename "$bin")" = overhead ]; then
        "$bin" ceiling "127.0.0.1:$port" >/dev/null 2>&1 &
    else
        DAVREPL_LOG=warn "$bin" --listen "127.0.0.1:$port" --store "${STORE:-memory}" ${ARGS:-} >/dev/null 2>&1 &
    fi
    pids+=($!)
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
    head -c 1024 /dev/zero | curl -s -o /dev/null -X PUT --data-binary @- \
        "http://127.0.0.1:$port/small.bin"
}
pa=$((20000 + RANDOM % 5000)); pb=$((pa + 1))
start "$a" "$pa"
start "$b" "$pb"
for i in $(seq 1 "$rounds"); do
    for p in "$pa" "$pb"; do
        r=$(wrk -t2 -c16 -d3s "http://127.0.0.1:$p/small.bin" | awk '/Requests\/sec/ {print $2}')
        echo "$p $r"
    done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    port, rate = line.split()
    runs.setdefault(port, []).append(float(rate))
for name, port in (("A", sys.argv[1]), ("B", sys.argv[2])):
    r = runs[port]
    print(f"{name}: median {statistics.median(r):,.0f}/s  runs " + " ".join(f"{x:,.0f}" for x in r))
a, b = (statistics.median(runs[p]) for p in sys.argv[1:3])
print(f"B / A = {b / a:.3f}")
' "$pa" "$pb"
