#!/usr/bin/env bash
# What each SQL statement costs the PostgreSQL server while a benchmark runs against a
# throwaway cluster: calls, mean execution and planning time (µs, wall time inside the
# server), and how often it was planned (a statement planned on every call is not using a
# cached plan).
#
#     bash bench/pg-statements.sh [BENCH ARGS...]
#
# runs `throughput --store postgres` (or the bench binary and arguments given, e.g.
# `manifest --store postgres --sizes 1000,20000`) with pg_stat_statements loaded, and prints
# the table for the benchmark's database as it was just before the run ended.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then set -- throughput --store postgres --seconds 5 --runs 1; fi
bin="$1"
shift
cargo build --release -q -p davrepl-bench --bin "$bin"
export DAVREPL_BENCH_PG_SETTINGS="shared_preload_libraries=pg_stat_statements pg_stat_statements.track=all pg_stat_statements.track_planning=on"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"target/release/$bin" "$@" >"$out/bench" 2>&1 &
bench=$!

# The newest throwaway cluster: its port, socket directory and password file.
snapshot() {
    local args port dir db
    args=$(ps -eo args | grep '[p]ostgres -D' | grep -- ' -k ' | tail -1) || return 1
    port=$(sed -E 's/.* -p ([0-9]+) .*/\1/' <<<"$args")
    dir=$(sed -E 's/.* -k ([^ ]+) .*/\1/' <<<"$args")
    [ -r "$dir/pw" ] || return 1
    export PGPASSWORD PGHOST=127.0.0.1 PGPORT=$port PGUSER=davrepl
    PGPASSWORD=$(cat "$dir/pw")
    db=$(psql -d postgres -Atc "SELECT datname FROM pg_database WHERE datname NOT IN
        ('postgres', 'template0', 'template1') ORDER BY oid DESC LIMIT 1") || return 1
    [ -n "$db" ] || return 1
    psql -d "$db" -qc 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' 2>/dev/null || true
    psql -d "$db" -c "SELECT calls,
        round((total_exec_time * 1000 / calls)::numeric, 1) AS exec_us,
        round((total_plan_time * 1000 / calls)::numeric, 1) AS plan_us,
        plans,
        left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS statement
        FROM pg_stat_statements
        WHERE calls > 0 AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query NOT LIKE '%pg_stat_statements%'
        ORDER BY total_exec_time + total_plan_time DESC LIMIT 20"
}

while kill -0 "$bench" 2>/dev/null; do
    sleep 2
    snapshot >"$out/next" 2>/dev/null && mv "$out/next" "$out/table" || true
done
wait "$bench" || true
cat "$out/bench"
echo
if [ -s "$out/table" ]; then cat "$out/table"; else echo "no statistics were captured"; fi
