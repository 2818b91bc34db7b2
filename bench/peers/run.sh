#!/usr/bin/env bash
# Side-by-side benchmark of davrepl against its peers, on this machine, in one run:
#
#     bash bench/peers/run.sh            # writes docs/benchmarks/peers.md and peers.svg
#     QUICK=1 bash bench/peers/run.sh    # fewer sizes and shorter runs (a smoke test)
#
# Installs what it needs (wrk, apache2, postgresql for the PostgreSQL column and pgbench; Radicale and Xandikos from PyPI in a venv under target/), builds
# davrepl's server and benchmark binaries and the dav-server peer in release mode, starts every
# server on loopback itself and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

missing=()
for pkg in wrk apache2 python3-venv postgresql; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

venv=target/peers/venv
if [ ! -x "$venv/bin/radicale" ] || [ ! -x "$venv/bin/xandikos" ]; then
    echo "==> installing Radicale and Xandikos into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q radicale xandikos
fi

echo "==> building (release)"
cargo build --release --quiet -p davrepl-server -p davrepl-bench
cargo build --release --quiet -p davrepl-postgres --example throwaway-cluster
cargo build --release --quiet --manifest-path bench/peers/dav-server-peer/Cargo.toml \
    --target-dir target/peers

exec python3 bench/peers/run.py --radicale "$venv/bin/radicale" --xandikos "$venv/bin/xandikos" "$@"
