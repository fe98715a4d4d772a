#!/usr/bin/env bash
# Runs every fault scenario in RELIABILITY.md and collects their figures:
#   SIGKILL mid-load (SQLite, PostgreSQL), PostgreSQL restart under load, Redis outage under
#   load, downstream servers that die/hang/flood under load, protocol-level bad input at
#   volume, bad tool arguments at volume, races and idempotency across two instances, event
#   delivery across a crash, and the short soak.
# Everything runs on loopback, each scenario bounded in time (about 5 minutes in all on 2
# cores). They are part of `cargo test`, so CI runs them too; this script runs them one at
# a time (steadier figures) and keeps the log.
#
#   benches/reliability.sh                   # the scenarios, as in CI
#   SOAK_SECS=600 benches/reliability.sh     # …then a release soak of 10 minutes
#
# Needs what `cargo test` needs (PostgreSQL, Redis, `npm ci`; see README). Figures go to
# benches/results/<time>-reliability/figures.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="benches/results/$(date -u +%Y%m%dT%H%M%SZ)-reliability"
mkdir -p "$out"
set +e
cargo test --test durability --test faults --test scale --test races --test delivery \
    --test protocol_abuse --test bad_input --test soak -- --nocapture --test-threads=1 \
    2>&1 | tee "$out/log.txt"
status=${PIPESTATUS[0]}
set -e
grep -o 'FIGURES:.*' "$out/log.txt" | awk '!seen[$0]++' > "$out/figures.txt" || true
if [ "$status" -ne 0 ]; then
    echo "reliability: a scenario failed (exit $status); see $out/log.txt" >&2
    exit "$status"
fi

if [ -n "${SOAK_SECS:-}" ]; then
    cargo build --release --bin ares --bin ares-bench
    target/release/ares-bench --spawn --workload soak --scale 1 --rate 200 --sessions 32 \
        --session-calls 10 --warmup 60 --duration "$SOAK_SECS" --sample-every 5 \
        --rss-growth-mb 10 2>&1 | tee "$out/soak.txt"
    grep -o 'FIGURES:.*' "$out/soak.txt" >> "$out/figures.txt" || true
fi
echo
echo "reliability: every scenario passed; figures in $out/figures.txt:"
cat "$out/figures.txt"
