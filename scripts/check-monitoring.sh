#!/usr/bin/env bash
# Checks the monitoring files shipped in gwlb/monitoring with Prometheus's own tool:
#   - gwlb-alerts.yml parses (`promtool check rules`) and its alerts fire, and only fire, as
#     the unit tests in gwlb-alerts.test.yml say (`promtool test rules`);
#   - every query of grafana-dashboard.json is valid PromQL (Grafana's $__rate_interval and
#     $instance filled in, each query checked as a recording rule).
# That they name metrics gwlb exports is a unit test (gwlb/src/api/metrics.rs); that a real
# Prometheus fires them on a running gwlb is gwlb/tests/prometheus_alerts.rs.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../gwlb/monitoring" && pwd)"
command -v promtool >/dev/null || { echo "check-monitoring: promtool not found (scripts/install-deps.sh installs prometheus)" >&2; exit 1; }

promtool check rules "$dir/gwlb-alerts.yml"
(cd "$dir" && promtool test rules gwlb-alerts.test.yml)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
{
  echo "groups:"
  echo "  - name: grafana-dashboard-queries"
  echo "    rules:"
  jq -r '.. | objects | select(has("expr")) | .expr' "$dir/grafana-dashboard.json" |
    sed -e 's/\$__rate_interval/5m/g' -e 's/\$instance/.*/g' |
    jq -R -r --slurp 'split("\n") | map(select(length > 0)) | to_entries[] |
      "      - record: dashboard:query\(.key)\n        expr: \(.value | tojson)"'
} >"$tmp/dashboard-rules.yml"
n="$(grep -c 'record:' "$tmp/dashboard-rules.yml")"
[ "$n" -ge 10 ] || { echo "check-monitoring: only $n dashboard queries found" >&2; exit 1; }
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null
echo "check-monitoring: $n dashboard queries are valid PromQL"
