#!/usr/bin/env bash
# Same-run comparison: each workload run by each build in turn.
# Usage: ab.sh OUT "build1 build2 ..." workload...   (builds are /tmp/bins-NAME/ares-bench)
# A workload pg-W runs W on PostgreSQL; mix-open-R runs the mix open loop at R calls/s.
# EXTRA is passed on to every run (e.g. EXTRA="--seed-cache /tmp/seed-cache").
set -u
OUT=$1; shift
BUILDS=$1; shift
mkdir -p "$OUT"
for w in "$@"; do
  for v in $BUILDS; do
    extra=""
    case $w in
      pg-*) wl=${w#pg-}; extra="--database-url postgres://postgres@127.0.0.1:5432/ares_bench";;
      mix-open-*) wl=mix; extra="--rate ${w#mix-open-}";;
      *) wl=$w;;
    esac
    /tmp/bins-$v/ares-bench --spawn --json --duration 10 --warmup 3 --concurrency 16 --tasks 16000 --workload "$wl" $extra ${EXTRA:-} > "$OUT/$w-$v.json" 2> "$OUT/$w-$v.log"
    echo "$w $v: $(grep -E '^(ref-)?[a-z-]+ (hs|pr)|^idle' "$OUT/$w-$v.log" | tail -1)"
  done
done
