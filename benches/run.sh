#!/usr/bin/env bash
# The whole benchmark comparison in one go: ARES's workloads next to their same-run
# references (bare rmcp with one trivial tool, bare rmcp + sqlx with one INSERT per call,
# pgbench single-row inserts), on SQLite and — if it answers — PostgreSQL.
#
#   benches/run.sh                 # everything but 100×, ~15 minutes on 2 cores
#   QUICK=1 benches/run.sh         # 1× only
#   SCALE100=1 benches/run.sh      # also 100× (seeding it takes a long time: see BENCHMARKS.md)
#   PG_URL=postgres://postgres@127.0.0.1:5432 benches/run.sh
#
# Writes benches/results/<UTC time>/: one JSON file per run (ares-bench --json), pgbench's
# output, machine.txt and summary.txt (every table, in order). Nothing else should be
# compiling or running meanwhile: the figures are CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
C=${C:-16}
# Tasks the submit workload prepares; creating them costs more the more are open, so keep
# it near what one run uses.
TASKS=${TASKS:-8000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=benches/results/$(date -u +%Y%m%dT%H%M%SZ)
SEEDS=${SEEDS:-$TARGET/bench-seeds}
mkdir -p "$OUT" "$SEEDS"

if pgrep -x rustc >/dev/null; then
  echo "warning: rustc is running; the figures will be low and noisy" >&2
fi

cargo build --release --bin ares --bin ares-bench --example bench_ref
BENCH="$TARGET/release/ares-bench"
# 10,000 idle sessions hold a connection each, on both ends.
ulimit -n "$(ulimit -Hn)" || true

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(cat BENCH_COMMIT 2>/dev/null || git rev-parse --short HEAD)"
  echo "cores: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  grep MemTotal /proc/meminfo
  rustc --version
  psql --version 2>/dev/null || true
} | tee "$OUT/machine.txt"

# run NAME ARGS… : one ares-bench invocation, JSON kept, table appended to the summary.
run() {
  local name=$1
  shift
  echo "== $name" | tee -a "$OUT/summary.txt"
  "$BENCH" --spawn --json --duration "$DURATION" --warmup "$WARMUP" --concurrency "$C" \
    --seed-cache "$SEEDS" --tasks "$TASKS" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
    echo "FAILED: see $OUT/$name.log" | tee -a "$OUT/summary.txt"
  # The last table ares-bench printed (after the blank line) is the run's summary.
  awk 'BEGIN{p=0} /^$/{p=1; next} p' "$OUT/$name.log" | tee -a "$OUT/summary.txt"
}

# --- SQLite ---------------------------------------------------------------------------
run ref-trivial --workload ref-trivial
run trivial --workload trivial
run trivial-per-request --workload trivial --protocol per-request
run ref-insert-sqlite --workload ref-insert
run submit-sqlite --workload submit
run reliability-sqlite --workload reliability-cached,reliability-uncached
run mix-sqlite --workload mix
run mix-per-request-sqlite --workload mix --protocol per-request
run mix-open-1000-sqlite --workload mix --rate 1000
if [ -z "${QUICK:-}" ]; then
  for s in 10 ${SCALE100:+100}; do
    run "scale-${s}x-sqlite" --scale "$s" --workload submit,reliability-cached,mix
  done
fi
run idle-sqlite --workload idle
# The same idle sessions held by the bare rmcp server, for comparison.
REF_PORT=${REF_PORT:-18091}
"$TARGET/release/examples/bench_ref" --mode trivial --addr "127.0.0.1:$REF_PORT" 2>/dev/null &
REF_PID=$!
sleep 1
echo "== idle-ref (bare rmcp)" | tee -a "$OUT/summary.txt"
"$BENCH" --url "http://127.0.0.1:$REF_PORT" --server-pid "$REF_PID" --workload idle --json \
  >"$OUT/idle-ref.json" 2>"$OUT/idle-ref.log" || echo "FAILED: see $OUT/idle-ref.log"
awk 'BEGIN{p=0} /^$/{p=1; next} p' "$OUT/idle-ref.log" | tee -a "$OUT/summary.txt"
kill "$REF_PID"

# --- PostgreSQL -----------------------------------------------------------------------
if pg_isready -d "$PG_URL" -q 2>/dev/null; then
  # pgbench: one single-row INSERT per transaction, C clients, the same length of run.
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS pgbench_ref' -c 'CREATE DATABASE pgbench_ref'
  psql "$PG_URL/pgbench_ref" -qc \
    'CREATE TABLE bench_rows (id TEXT PRIMARY KEY, payload TEXT NOT NULL, created_at TEXT NOT NULL)'
  cat >"$OUT/pgbench-insert.sql" <<'SQL'
INSERT INTO bench_rows (id, payload, created_at) VALUES (gen_random_uuid()::text, 'row', now()::text);
SQL
  echo "== pgbench single-row INSERT, $C clients, ${DURATION}s" | tee -a "$OUT/summary.txt"
  pgbench -n -M prepared -c "$C" -j 2 -T "$DURATION" -f "$OUT/pgbench-insert.sql" \
    "$PG_URL/pgbench_ref" 2>&1 | tee "$OUT/pgbench.txt" |
    grep -E 'latency average|tps|transactions actually' | tee -a "$OUT/summary.txt"
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS pgbench_ref'

  PG=(--database-url "$PG_URL/ares_bench")
  run ref-insert-postgres --workload ref-insert "${PG[@]}"
  run trivial-postgres --workload trivial "${PG[@]}"
  run submit-postgres --workload submit "${PG[@]}"
  run reliability-postgres --workload reliability-cached,reliability-uncached "${PG[@]}"
  run mix-postgres --workload mix "${PG[@]}"
  run mix-open-1000-postgres --workload mix --rate 1000 "${PG[@]}"
  if [ -z "${QUICK:-}" ]; then
    run scale-10x-postgres --scale 10 --workload submit,mix "${PG[@]}"
  fi
  psql "$PG_URL/postgres" -qc 'DROP DATABASE IF EXISTS ares_bench' || true
else
  echo "PostgreSQL at $PG_URL does not answer: skipped" | tee -a "$OUT/summary.txt"
fi

echo "figures in $OUT (summary.txt)"
