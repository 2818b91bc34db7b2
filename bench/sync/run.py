"""Times davrepl sync, rclone sync and rclone bisync against one davrepl server (see run.sh)."""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.path.join(ROOT, "target/release/davrepl-server")
DAVREPL = os.path.join(ROOT, "target/release/davrepl")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def mkcol(url):
    req = urllib.request.Request(url, method="MKCOL")
    urllib.request.urlopen(req).read()


def timed(cmd, env=None):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    return time.perf_counter() - start


def make_tree(root, files):
    for i in range(files):
        d = os.path.join(root, f"d{i // 100:03}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05}.txt"), "wb") as f:
            f.write((f"file {i}\n" * (1 + i % 50)).encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="davrepl-sync-bench-")
    port = free_port()
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen(
        [SERVER, "--listen", f"127.0.0.1:{port}", "--store", f"sqlite:{work}/store.db"],
        stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(urllib.request.Request(base + "/", method="OPTIONS"))
                break
            except Exception:
                time.sleep(0.1)
        env = dict(os.environ, RCLONE_CONFIG_DAV_TYPE="webdav", RCLONE_CONFIG_DAV_URL=base + "/",
                   RCLONE_CONFIG_DAV_VENDOR="owncloud")
        results = {}
        # davrepl sync
        src = os.path.join(work, "davrepl")
        make_tree(src, args.files)
        mkcol(base + "/davrepl/")
        cmd = [DAVREPL, "sync", src, base + "/davrepl/", "--quiet"]
        results["davrepl sync"] = (timed(cmd), [timed(cmd) for _ in range(args.runs)])
        # rclone sync (one-way)
        src = os.path.join(work, "rclone")
        make_tree(src, args.files)
        cmd = ["rclone", "sync", src, "dav:rclone", "--transfers", "8", "--checkers", "8"]
        results["rclone sync"] = (timed(cmd, env), [timed(cmd, env) for _ in range(args.runs)])
        # rclone bisync (two-way, the comparable tool)
        src = os.path.join(work, "bisync")
        make_tree(src, args.files)
        subprocess.run(["rclone", "mkdir", "dav:bisync"], check=True, env=env)
        state = ["--workdir", os.path.join(work, "bisync-state"), "--transfers", "8",
                 "--checkers", "8"]
        first = timed(["rclone", "bisync", src, "dav:bisync", "--resync", *state], env)
        again = [timed(["rclone", "bisync", src, "dav:bisync", *state], env)
                 for _ in range(args.runs)]
        results["rclone bisync"] = (first, again)
        ours = statistics.median(results["davrepl sync"][1])
        print(f"{args.files} small files, one davrepl-server (SQLite) on loopback; "
              f"no-change re-sync: median of {args.runs}\n")
        print("| tool | first sync (s) | no-change re-sync (s) | re-sync vs davrepl |")
        print("|---|---|---|---|")
        for name, (first, again) in results.items():
            med = statistics.median(again)
            print(f"| {name} | {first:.2f} | {med:.3f} | {med / ours:.1f}× |")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
