#!/usr/bin/env bash
# A/B/C same-run comparison: each workload run by each build in turn.
set -u
OUT=$1; shift
mkdir -p "$OUT"
for w in "$@"; do
  for v in mmapoff group wire; do
    extra=""
    case $w in pg-submit) wl=submit; extra="--database-url postgres://postgres@127.0.0.1:5432/ares_bench";; *) wl=$w;; esac
    /tmp/bins-$v/ares-bench --spawn --json --duration 10 --warmup 3 --concurrency 16 --tasks 16000 --workload $wl $extra > "$OUT/$w-$v.json" 2> "$OUT/$w-$v.log"
    echo "$w $v: $(grep -E '^(ref-)?[a-z-]+ (hs|pr)' "$OUT/$w-$v.log" | tail -1)"
  done
done
