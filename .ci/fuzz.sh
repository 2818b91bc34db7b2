#!/usr/bin/env bash
# Bounded fuzzing of every target (cargo-fuzz, nightly). The committed corpus and any past
# crashers (fuzz/regressions/) are replayed first; new corpus entries go to a temp dir.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-30}"
if ! rustup toolchain list 2>/dev/null | grep -q nightly; then
    if [ -n "${CI:-}" ]; then
        echo "FAILED: no nightly toolchain, and CI is set: the fuzz targets must run in CI"
        exit 1
    fi
    echo "SKIPPED: no nightly toolchain on this machine; fuzz targets were not run"
    exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
cargo +nightly fuzz build -O
for t in $(cargo +nightly fuzz list); do
    scratch=$(mktemp -d)
    dirs=("$scratch" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    if ! cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -max_len=4096 >"$scratch.log" 2>&1; then
        echo "fuzz target $t FAILED:"
        tail -40 "$scratch.log"
        exit 1
    fi
    echo "fuzz $t: $(grep -E '^Done' "$scratch.log") (no crash)"
    rm -rf "$scratch" "$scratch.log"
done
