"""The alerts and the dashboard against a real Prometheus server.

Prometheus (Debian's 2.42, started by hand on loopback with its own data directory) scrapes the
real exporter (``python -m exporter``, polling every second) that polls the simulator, plus a
second exporter with the optional features on (discovery, batched counts, sharding), so that
every documented metric exists. Its configuration is monitoring/prometheus.yml with a 1 s scrape
and evaluation interval, the two exporters as targets of the job and, as rule file,
monitoring/alerts.yaml with its `for:` durations shortened through the knob table
(tools/dashcheck/alertrules.py), not a second copy of the rules.

Checked: the target is up; every metric the README documents is queryable; every dashboard
query (variables included) returns data; the documents-dropped alert fires after the simulator
drops a namespace's documents; the poll-failure alert fires when the simulator starts failing a
namespace; and no other alert fires meanwhile. Every wait polls the HTTP API with a deadline.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.harness import ExporterProcess, SimulatorProcess, wait_until
from tests.monitoring_stack import JOB, MON, PrometheusProcess, prometheus_config
from tests.test_monitoring_names import (
    CONDITIONAL,
    MISSING_NAMESPACE,
    monitored_stack,
    readme_metric_table,
)
from tools.dashcheck import alertrules, dashcheck

pytestmark = [pytest.mark.prometheus, pytest.mark.e2e]

# The real windows stay; only the waits before firing shrink, so that the test's few seconds of
# history behave like the production minutes.
FAST_KNOBS = {"documents_drop_for": "2s", "poll_failing_for": "3s"}
DEADLINE = 40.0  # Prometheus's first scrape alone takes ~6 s


Stack = tuple[SimulatorProcess, ExporterProcess, PrometheusProcess]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Simulator, the main exporter, the features exporter (optional metrics switched on, see
    tests/test_monitoring_names.py) and Prometheus scraping both exporters as one job."""
    rules = alertrules.render_variant((MON / "alerts.yaml").read_text(), FAST_KNOBS)
    with monitored_stack(interval=1.0) as (sim, main, features):
        targets = [f"127.0.0.1:{main.port}", f"127.0.0.1:{features.port}"]
        with PrometheusProcess(prometheus_config(targets), rules) as prom:
            yield sim, main, prom


def test_targets_are_up(stack: Stack) -> None:
    _, _, prom = stack
    t0 = time.monotonic()
    wait_until(lambda: len([r for r in prom.query(f'up{{job="{JOB}"}}')
                            if r["value"][1] == "1"]) == 2,
               DEADLINE, 0.25, what="up == 1 for both exporters")
    print(f"both targets up {time.monotonic() - t0:.1f}s after Prometheus was ready")
    targets = prom.api("targets")["activeTargets"]
    assert [t["health"] for t in targets if t["labels"]["job"] == JOB] == ["up", "up"]


def test_readme_metrics_are_queryable(stack: Stack) -> None:
    _, _, prom = stack
    documented = readme_metric_table()
    missing: list[str] = []

    def check() -> bool:
        missing.clear()
        for name in documented:
            sel = (f'{{__name__=~"{name[:-1]}.*", job="{JOB}"}}' if name.endswith("*")
                   else f'{name}{{job="{JOB}"}}')
            if not prom.query(sel):
                missing.append(name)
        return not missing

    try:
        wait_until(check, DEADLINE, 0.5, what="every README metric")
    except AssertionError as e:
        why = {m: CONDITIONAL.get(m, "unconditional") for m in missing}
        raise AssertionError(f"not queryable in Prometheus: {why}") from e


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    _, _, prom = stack
    dash = json.loads((MON / "dashboard.json").read_text())
    qs = dashcheck.queries(dash) + dashcheck.variable_queries(dash)
    # The dashboard's "All" is ".*" for every query variable.
    variables = {"job": JOB, "instance": ".*", "namespace_name": ".*"}
    exprs = {f"{q.panel} [{q.ref_id}]": dashcheck.substitute(q.expr, variables=variables)
             for q in qs}
    empty: dict[str, str] = {}

    def check() -> bool:
        empty.clear()
        empty.update({k: e for k, e in exprs.items() if not prom.query(e)})
        return not empty

    try:
        # rate()/delta() need two samples, and the failed-polls panel a second 404.
        wait_until(check, DEADLINE, 0.5, what="data for every dashboard query")
    except AssertionError as e:
        raise AssertionError(f"queries without data: {json.dumps(empty, indent=1)}") from e


def test_documents_dropped_alert_fires(stack: Stack) -> None:
    sim, _, prom = stack
    wait_until(lambda: prom.query('mixpeek_namespace_documents{namespace_name="demo_catalog"}'),
               DEADLINE, 0.25, what="demo_catalog documents in Prometheus")
    assert prom.alerts("MixpeekNamespaceDocumentsDropped") == []  # quiet on a fresh start
    before = float(prom.query(
        'mixpeek_namespace_documents{namespace_name="demo_catalog"}')[0]["value"][1])
    sim.patch("demo_catalog", {"document_count": int(before * 0.5)})
    t0 = time.monotonic()
    pending = wait_until(lambda: prom.alerts("MixpeekNamespaceDocumentsDropped",
                                             namespace_name="demo_catalog"),
                         DEADLINE, 0.25, what="documents-dropped alert pending")
    firing = wait_until(lambda: prom.alerts("MixpeekNamespaceDocumentsDropped", "firing",
                                            namespace_name="demo_catalog"),
                        DEADLINE, 0.25, what="documents-dropped alert firing")
    print(f"dropped: {pending[0]['state']} then firing {time.monotonic() - t0:.1f}s after PATCH")
    alert = firing[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["namespace_id"] == "ns_demo0001"
    summary = alert["annotations"]["summary"]
    lost = re.search(r"Mixpeek namespace demo_catalog lost ([\d.]+)% of its documents", summary)
    assert lost and 45 <= float(lost.group(1)) <= 55, summary
    assert alert["annotations"]["runbook_url"].endswith("#mixpeeknamespacedocumentsdropped")
    # Only the namespace whose documents dropped.
    assert {a["labels"]["namespace_name"]
            for a in prom.alerts("MixpeekNamespaceDocumentsDropped")} == {"demo_catalog"}


def test_poll_failure_alert_fires(stack: Stack) -> None:
    sim, _, prom = stack
    wait_until(lambda: prom.query('mixpeek_namespace_up{namespace_name="demo_media"} == 1'),
               DEADLINE, 0.25, what="demo_media up")
    assert prom.alerts("MixpeekNamespacePollFailing", namespace_name="demo_media") == []
    sim.patch("ns_demo0002", {"_fail": {"status": 500}})
    t0 = time.monotonic()
    firing = wait_until(lambda: prom.alerts("MixpeekNamespacePollFailing", "firing",
                                            namespace_name="demo_media"),
                        DEADLINE, 0.25, what="poll-failure alert firing for demo_media")
    print(f"poll failing: firing {time.monotonic() - t0:.1f}s after the fault")
    alert = firing[0]
    assert alert["labels"]["namespace_id"] == "ns_demo0002"
    assert alert["labels"]["severity"] == "warning"
    assert 'namespace "demo_media" (id "ns_demo0002")' in alert["annotations"]["description"]
    assert prom.query('mixpeek_namespace_poll_errors_total{namespace_name="demo_media", '
                      'reason="server_error"}')
    # The namespace that never existed fails too, and is named by its configured id.
    missing = prom.alerts("MixpeekNamespacePollFailing", "firing", namespace_id=MISSING_NAMESPACE)
    assert missing and MISSING_NAMESPACE in missing[0]["annotations"]["summary"]


def test_no_other_alert_fired(stack: Stack) -> None:
    """Nothing else fired over the whole run: not on the fresh start, not on the 404s, not on
    the 500s (rate limits, auth, staleness and the exporter itself were fine)."""
    _, _, prom = stack
    expected = {"MixpeekNamespaceDocumentsDropped", "MixpeekNamespacePollFailing"}
    fired = prom.query('max_over_time(ALERTS{alertstate="firing"}[10m])')
    assert {r["metric"]["alertname"] for r in fired} <= expected, fired
