#!/usr/bin/env bash
# `davrepl sync` beside `rclone sync` and `rclone bisync` on one davrepl server (SQLite store,
# release build) in one run: first sync and no-change re-sync of 10,000 small files.
# Prints a Markdown table (docs/benchmarks/sync.md holds the last run). Options: --files N, --runs N.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v rclone >/dev/null || { echo "rclone is not installed (apt-get install rclone)"; exit 1; }
cargo build --release --locked -q -p davrepl-server -p davrepl-cli
exec python3 bench/sync/run.py "$@"
