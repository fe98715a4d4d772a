#!/usr/bin/env bash
# Checks the deploy kit with promtool: the example Prometheus config, the alerting rules and
# their unit tests, and that every query of the Grafana dashboard is valid PromQL.
# Needs promtool (Debian: `apt-get install prometheus`) and jq.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# The config names a key file beside it; promtool insists that it exists.
cp prometheus/prometheus.yml prometheus/alerts.yml "$scratch"
echo "placeholder-not-a-key" >"$scratch/ares-api-key"
promtool check config "$scratch/prometheus.yml"
promtool check rules prometheus/alerts.yml
promtool test rules prometheus/alerts_test.yml

# Each dashboard query becomes a recording rule, with Grafana's variables replaced by
# values, so promtool parses it.
{
    echo "groups:"
    echo "  - name: grafana-dashboard"
    echo "    rules:"
    jq -r '.. | objects | select(has("expr")) | .expr' grafana/ares-dashboard.json |
        sed -e 's/\$__rate_interval/5m/g' -e 's/\$__range/6h/g' \
            -e 's/\$instance/.*/g' -e 's/\$agent/.*/g' |
        jq -R '"      - record: dashboard:query\n        expr: " + tojson'  -r
} >"$scratch/dashboard_rules.yml"
queries=$(grep -c 'record:' "$scratch/dashboard_rules.yml")
promtool check rules --lint=none "$scratch/dashboard_rules.yml"
echo "the dashboard's $queries queries parse"
