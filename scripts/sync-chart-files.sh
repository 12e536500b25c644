#!/usr/bin/env bash
# Keeps the Helm chart in step with its single sources of truth:
#   monitoring/alerts.yaml     -> helm/mixpeek-exporter/files/alerts.yaml     (PrometheusRule)
#   monitoring/dashboard.json  -> helm/mixpeek-exporter/files/dashboard.json  (Grafana ConfigMap)
#   helm/mixpeek-exporter/values.yaml comments -> the values table in the chart README
# Helm can only read files inside the chart directory, and a symlink breaks `helm package` on
# some platforms, so the chart carries copies; tests/test_helm_chart.py fails when they differ.
# Run it after editing any of the sources. With --check it changes nothing and exits 1 on drift.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[ "${1:-}" = "--check" ] && check=1
files_dir=helm/mixpeek-exporter/files
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python

rc=0
for name in alerts.yaml dashboard.json; do
  src=monitoring/$name dst=$files_dir/$name
  if [ ! -f "$src" ]; then
    echo "sync-chart-files: $src is missing" >&2
    rc=1
    continue
  fi
  if ! cmp -s "$src" "$dst"; then
    if ((check)); then
      echo "sync-chart-files: $dst differs from $src" >&2
      rc=1
    else
      mkdir -p "$files_dir"
      cp "$src" "$dst"
      echo "sync-chart-files: updated $dst"
    fi
  fi
done

if ((check)); then
  "$py" scripts/chart_values_table.py --check || rc=1
else
  "$py" scripts/chart_values_table.py --write
fi
exit "$rc"
