#!/usr/bin/env bash
# Alternating A/B of GET 1 KiB on the memory store between two davrepl-server binaries (or a
# binary and the ceiling), so that drift of the machine hits both alike:
#
#     bash bench/profile/ab-get.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Each round runs `wrk -t2 -c16 -d3s` against A, then B; prints every round's requests/s
# and the two medians. A binary named `overhead` is started as the bare-axum ceiling;
# `target/release/overhead:ceiling-headers` starts it in that mode instead (the ceiling
# answering with a davrepl GET's response headers, see bench/src/bin/overhead.rs).
# `STORE=postgres://...` runs both on that database instead of the memory store; `ARGS="..."`
# adds server options to both (e.g. `ARGS="--pg-hot-items 0"`). `METHOD=PUT` sends PUTs of
# 1 KiB instead, each to a new URL (as the peers report's PUT row does).
set -euo pipefail
a=$1; b=$2; rounds=${3:-6}
pids=()
script=$(mktemp --suffix=.lua)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$script"' EXIT
start() {
    local bin=$1 port=$2 mode=ceiling
    case "$bin" in
        *overhead:*) mode=${bin##*:}; bin=${bin%:*} ;;
    esac
    if [ "$(basename "$bin")" = overhead ]; then
        "$bin" "$mode" "127.0.0.1:$port" >/dev/null 2>&1 &
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
target=/small.bin
if [ "${METHOD:-GET}" = PUT ]; then
    target=/new
    cat > "$script" <<'LUA'
wrk.method = "PUT"
wrk.body = string.rep("x", 1024)
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) n = 0 end
function request() n = n + 1; return wrk.format(nil, wrk.path .. "-" .. tid .. "-" .. n) end
LUA
else
    echo 'wrk.method = "GET"' > "$script"
fi
for i in $(seq 1 "$rounds"); do
    for p in "$pa" "$pb"; do
        r=$(wrk -t2 -c16 -d3s -s "$script" "http://127.0.0.1:$p$target" | awk '/Requests\/sec/ {print $2}')
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
