#!/usr/bin/env bash
# Real clients against the reference server (SQLite store): rclone (plain and with its
# owncloud vendor), cadaver, a Python replication client, the Python caldav library's RFC 6578
# sync (the server lists at most 10 members per sync report, so the library must page) and an
# SSE client library on the event stream. Each step must succeed; figures are printed.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in rclone cadaver python3; do
    command -v "$tool" >/dev/null || { echo "FAILED: $tool is not installed (.ci/run installs it)"; exit 1; }
done
work=$(mktemp -d)
cargo build --release --locked -q -p davrepl-server
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./target/release/davrepl-server --listen "127.0.0.1:$port" --store "sqlite:$work/store.db" \
    --max-sync-results 10 --quota-bytes 10000000000 >"$work/server.log" 2>&1 &
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

echo "--- rclone, owncloud vendor: modification times, checksums, bisync, quota"
export RCLONE_CONFIG_OC_TYPE=webdav RCLONE_CONFIG_OC_URL="$base/" RCLONE_CONFIG_OC_VENDOR=owncloud
# Count the lines of rclone's -v log that say a file was transferred.
transferred() { grep -cE "Copied \((new|replaced existing)\)" "$1" || true; }
start=$(date +%s.%N)
rclone sync "$src" oc:octree -v >"$work/oc1.log" 2>&1
n1=$(transferred "$work/oc1.log")
t1=$(echo "$(date +%s.%N) - $start" | bc)
# Modification times kept to the second: both listings equal once sub-seconds are dropped.
lsl() { rclone lsl "$1" | sed -E 's/ ([0-9:]+)\.[0-9]+ / \1 /' | sort -k4; }
if ! diff <(lsl "$src") <(lsl oc:octree); then echo "rclone owncloud: times differ"; exit 1; fi
touch "$src/dir0/file5.bin" "$src/dir2/sub/note1.txt" "$src/dir3-renamed/file7.bin"
start=$(date +%s.%N)
rclone sync "$src" oc:octree -v >"$work/oc2.log" 2>&1
n2=$(transferred "$work/oc2.log")
t2=$(echo "$(date +%s.%N) - $start" | bc)
if [ "$n2" != 3 ]; then echo "rclone owncloud: expected 3 transfers after touching 3 files, got $n2"; cat "$work/oc2.log"; exit 1; fi
start=$(date +%s.%N)
rclone sync "$src" oc:octree -v >"$work/oc3.log" 2>&1
n3=$(transferred "$work/oc3.log")
t3=$(echo "$(date +%s.%N) - $start" | bc)
if [ "$n3" != 0 ]; then echo "rclone owncloud: a sync with no change transferred $n3 files"; exit 1; fi
# Integrity through the server's checksums, without downloading anything.
rclone check "$src" oc:octree >"$work/occheck.log" 2>&1 || { cat "$work/occheck.log"; exit 1; }
if grep -q "No common hash" "$work/occheck.log"; then echo "rclone check found no common hash"; exit 1; fi
grep -E "matching files" "$work/occheck.log"
echo "rclone owncloud: sync $n1 files in $t1 s; after touching 3: $n2 transferred in $t2 s; no change: $n3 in $t3 s; lsl equal to the second; check via checksums clean"
bi="$work/bisync-local"
mkdir -p "$bi"
for f in 1 2 3 4; do echo "bisync $f" >"$bi/b$f.txt"; done
rclone mkdir oc:bisync
# MKCOL of an existing collection answers 409 (the replication spec's A19, not RFC 4918's 405):
# rclone then looks the directory up and treats it as made, so a second mkdir must succeed.
rclone mkdir oc:bisync || { echo "rclone mkdir of an existing directory failed (MKCOL 409)"; exit 1; }
rclone bisync "$bi" oc:bisync --resync --workdir "$work/bisync-state" -v >"$work/bi1.log" 2>&1 \
    || { cat "$work/bi1.log"; exit 1; }
# bisync detects changes by modification time, which the server keeps to the second.
sleep 1.1
echo "changed here" >>"$bi/b1.txt"
echo "changed there" | rclone rcat oc:bisync/b2.txt
rclone bisync "$bi" oc:bisync --workdir "$work/bisync-state" -v >"$work/bi2.log" 2>&1 \
    || { cat "$work/bi2.log"; exit 1; }
b2=$(transferred "$work/bi2.log")
if [ "$b2" != 2 ] || [ "$(cat "$bi/b2.txt")" != "changed there" ] \
    || ! rclone cat oc:bisync/b1.txt | grep -q "changed here"; then
    echo "rclone bisync did not pick up one change on each side"; cat "$work/bi2.log"; exit 1
fi
rclone bisync "$bi" oc:bisync --workdir "$work/bisync-state" -v >"$work/bi3.log" 2>&1 \
    || { cat "$work/bi3.log"; exit 1; }
b3=$(transferred "$work/bi3.log")
if [ "$b3" != 0 ]; then echo "rclone bisync with no change transferred $b3 files"; exit 1; fi
echo "rclone bisync: resync, then one change each side ($b2 transferred), then no change ($b3)"
rclone about oc: | tee "$work/about.txt"
grep -q "^Used:" "$work/about.txt" && grep -q "^Free:" "$work/about.txt" \
    || { echo "rclone about reported no quota"; exit 1; }

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
"$work/venv/bin/pip" install -q requests caldav==3.6.0 httpx==0.28.1 httpx-sse==0.4.0
"$work/venv/bin/python" .ci/repl_client.py "$base"

echo "--- python caldav library: RFC 6578 sync-collection"
"$work/venv/bin/python" .ci/caldav_sync.py "$base"

echo "--- python httpx-sse: the event stream"
"$work/venv/bin/python" .ci/sse_client.py "$base"
