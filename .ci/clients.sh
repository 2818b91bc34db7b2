#!/usr/bin/env bash
# Real clients against the reference server (SQLite store): rclone, cadaver, a Python
# replication client and the Python caldav library's RFC 6578 sync (the server lists at most
# 10 members per sync report, so the library must page). Each step must succeed; figures are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in rclone cadaver python3; do
    command -v "$tool" >/dev/null || { echo "FAILED: $tool is not installed (.ci/run installs it)"; exit 1; }
done
work=$(mktemp -d)
cargo build --release --locked -q -p davrepl-server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/davrepl-server --listen "127.0.0.1:$port" --store "sqlite:$work/store.db" \
    --max-sync-results 10 >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
base="http://127.0.0.1:$port"

echo "--- rclone"
export RCLONE_CONFIG_DAV_TYPE=webdav RCLONE_CONFIG_DAV_URL="$base/" RCLONE_CONFIG_DAV_VENDOR=other
src="$work/src"
mkdir -p "$src"
for d in 0 1 2 3 4; do
    mkdir -p "$src/dir$d/sub"
    for f in $(seq 0 9); do head -c $((100 + f * 997)) /dev/urandom >"$src/dir$d/file$f.bin"; done
    for f in $(seq 0 9); do echo "note $d $f" >"$src/dir$d/sub/note$f.txt"; done
done
count=$(find "$src" -type f | wc -l)
start=$(date +%s.%N)
rclone sync -I "$src" dav:tree
rclone check --download "$src" dav:tree
echo "rclone: first sync of $count files in $(echo "$(date +%s.%N) - $start" | bc) s, check clean"
for f in 0 1 2; do echo "modified $f" >>"$src/dir0/file$f.bin"; done
rm "$src/dir1/file3.bin" "$src/dir1/file4.bin"
rm -r "$src/dir4/sub"
mv "$src/dir2/file5.bin" "$src/dir2/renamed5.bin"
mv "$src/dir3" "$src/dir3-renamed"
rclone sync -I "$src" dav:tree
rclone check --download "$src" dav:tree
echo "rclone: re-sync after modify/delete/rename: check clean ($(find "$src" -type f | wc -l) files)"

echo "--- cadaver"
echo "hello from cadaver" >"$work/c.txt"
cd "$work"
cat >cmds <<CMDS
mkcol cad
put c.txt cad/c.txt
get cad/c.txt got.txt
copy cad/c.txt cad/copy.txt
move cad/copy.txt cad/moved.txt
propset cad/c.txt colour blue
propget cad/c.txt colour
delete cad/moved.txt
ls cad
quit
CMDS
cadaver "$base/" <cmds >cadaver.out 2>&1 || true
cd - >/dev/null
cat "$work/cadaver.out"
ok=$(grep -c "succeeded" "$work/cadaver.out" || true)
# cadaver echoes each command ("propset ... colour blue"), so look for its answer line only.
if grep -qiE "failed|error|not found" "$work/cadaver.out" || ! cmp -s "$work/c.txt" "$work/got.txt" \
    || ! grep -qx "Value of colour is: blue" "$work/cadaver.out" \
    || [ "$ok" -lt 7 ]; then
    echo "cadaver: a step failed"
    exit 1
fi
echo "cadaver: $ok operations succeeded (mkcol, put, get, copy, move, propset, propget, delete)"

echo "--- python replication client"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q requests caldav==3.6.0
"$work/venv/bin/python" .ci/repl_client.py "$base"

echo "--- python caldav library: RFC 6578 sync-collection"
"$work/venv/bin/python" .ci/caldav_sync.py "$base"
