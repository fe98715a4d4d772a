#!/usr/bin/env bash
set -uo pipefail
cd /work/main
OUT=$(cat /work/bench-out-path)
BENCH=/work/target-bench/release/ares-bench
SEEDS=/work/target-bench/bench-seeds-0ba190c
mkdir -p "$SEEDS"
ulimit -n "$(ulimit -Hn)" || true
run() {
  local name=$1; shift
  echo "== $name ($(date -u +%TZ); load: $(cut -d' ' -f1-3 /proc/loadavg); rustc: $(pgrep -c rustc || true))" | tee -a "$OUT/summary.txt"
  top -bn1 -w 100 | sed -n "8,10p" | cut -c1-100 | sed "s/^/   # /" >> "$OUT/summary.txt"
  "$BENCH" --spawn --json --duration 10 --warmup 3 --concurrency 16 \
    --seed-cache "$SEEDS" --tasks ${TASKS:-8000} "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" ||
    echo "FAILED: see $OUT/$name.log" | tee -a "$OUT/summary.txt"
  awk 'BEGIN{p=0} /^$/{p=1; next} p' "$OUT/$name.log" | tee -a "$OUT/summary.txt"
  grep -h "seeded" "$OUT/$name.log" | tee -a "$OUT/summary.txt" || true
}
for w in "$@"; do
  case $w in
    mix) run mix-sqlite --workload mix ;;
    submit) run submit-sqlite --workload submit ;;
    submit8k) run submit-8000-sqlite --workload submit ;;
    open400) run mix-open-400-sqlite --workload mix --rate 400 ;;
    open1000) run mix-open-1000-sqlite --workload mix --rate 1000 ;;
    s10) run scale-10x-sqlite --scale 10 --workload submit,mix ;;
    s100) run scale-100x-sqlite --scale 100 --workload mix ;;
    s20) run scale-20x-sqlite --scale 20 --workload mix ;;
    pgmix) run mix-postgres --workload mix --database-url postgres://postgres@127.0.0.1:5432/ares_bench ;;
    pgsubmit) run submit-postgres --workload submit --database-url postgres://postgres@127.0.0.1:5432/ares_bench ;;
    pg10) run scale-10x-postgres --scale 10 --workload submit,mix --database-url postgres://postgres@127.0.0.1:5432/ares_bench ;;
  esac
done
