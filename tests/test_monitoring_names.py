"""Names kept in step: every metric and label the alerts and the dashboard use is in the real
exporter's output, and so is every metric the README's metrics table documents (and the table
documents every metric the exporter serves).

The exporter runs for real (``python -m exporter``) against the simulator. Some series exist
only under a condition, so the setup (``monitored_stack``, shared with the real-Prometheus test)
provides every condition; CONDITIONAL says which series needs which.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.polling.targets import shard_of
from exporter.render.families import sample_names
from exporter.web.server import LANDING
from tests.conftest import API_KEY
from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, sample
from tests.tooling import require_tool
from tools.dashcheck import alertrules, dashcheck

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = pytest.mark.e2e

# Series Prometheus makes itself (target health, alert state), not the exporter.
PROMETHEUS_MADE = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Label names Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}

# The main exporter polls three simulator namespaces and one the simulator does not know.
MISSING_NAMESPACE = "ns_missing0001"
NAMESPACES = ["demo_catalog", "ns_demo0002", "demo_archive", MISSING_NAMESPACE]
# Rate limit far above what the tests use: the simulator sends X-RateLimit-* but never 429.
# No stats/batch endpoint: an exporter configured for it falls back (and says so in a metric).
SIM_ARGS = ["--rate-limit-rpm", "1000000", "--no-stats-batch"]
# A second exporter switches on the optional features: it discovers namespaces (only
# demo_archive, so it stays out of the alert tests' way), asks for batched counts, and is one
# of two shards (the one demo_archive's id falls in).
FEATURES_SHARD = shard_of("ns_demo0003", 2)
FEATURES_ARGS = ["--shard", str(FEATURES_SHARD), "--total-shards", "2"]
# A namespace with a TTL, far enough away that MixpeekNamespaceExpiringSoon stays quiet.
EXPIRING_NAMESPACE = "demo_catalog"
EXPIRES_IN = dt.timedelta(days=30)

# README metrics that exist only under a condition, and what in the setup provides it.
CONDITIONAL = {
    "mixpeek_api_rate_limit_remaining": "the simulator sends X-RateLimit-Remaining",
    "mixpeek_namespace_poll_errors_total": f"{MISSING_NAMESPACE} answers 404 on every poll",
    "mixpeek_exporter_discovery_up": "features exporter: discovery.enabled",
    "mixpeek_exporter_discovery_last_success_timestamp_seconds":
        "features exporter: discovery.enabled",
    "mixpeek_exporter_discovery_limit_reached": "features exporter: discovery.enabled",
    "mixpeek_namespace_expiry_timestamp_seconds":
        f"{EXPIRING_NAMESPACE} has an expires_at (set through the simulator's control API)",
    "mixpeek_exporter_stats_batch_available":
        "features exporter: counts_source stats_batch, simulator --no-stats-batch",
    "mixpeek_exporter_shard_ordinal": "features exporter: --total-shards 2",
    "mixpeek_exporter_total_shards": "features exporter: --total-shards 2",
}


def main_config(sim_url: str, interval: float = 1.0) -> dict[str, Any]:
    return exporter_config(sim_url, NAMESPACES, interval=interval)


def features_config(sim_url: str, interval: float = 1.0) -> dict[str, Any]:
    cfg = exporter_config(sim_url, [], interval=interval)
    cfg["discovery"] = {"enabled": True, "include": ["^demo_archive$"]}
    cfg["poll"]["counts_source"] = "stats_batch"
    return cfg


@contextmanager
def monitored_stack(interval: float = 1.0
                    ) -> Iterator[tuple[SimulatorProcess, ExporterProcess, ExporterProcess]]:
    """The simulator, the main exporter and the features exporter, all running."""
    with ExitStack() as stack:
        sim = stack.enter_context(SimulatorProcess(api_key=API_KEY, extra_args=SIM_ARGS))
        expires = (dt.datetime.now(dt.UTC) + EXPIRES_IN).isoformat().replace("+00:00", "Z")
        sim.patch(EXPIRING_NAMESPACE, {"expires_at": expires})
        main = stack.enter_context(ExporterProcess(main_config(sim.url, interval),
                                                   api_key=API_KEY))
        features = stack.enter_context(ExporterProcess(
            features_config(sim.url, interval), api_key=API_KEY, extra_args=FEATURES_ARGS))
        yield sim, main, features


def readme_metric_table() -> list[str]:
    """First-column names of the metrics table (header ``| metric | ...``) in the README's
    core section. A name may be followed by its labels (``mixpeek_namespace_info{...}``), and a
    pattern like ``process_*`` stands for a family of prometheus-client's own metrics.
    """
    text = README.read_text()
    m = re.search(r"<!-- BEGIN core -->(.*?)<!-- END core -->", text, re.S)
    assert m, "README.md has no core section markers"
    names: list[str] = []
    in_table = False
    for line in m.group(1).splitlines():
        if re.match(r"^\|\s*metric\s*\|", line):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cell = re.match(r"^\|\s*`([a-zA-Z_:*][\w:*]*)", line)
            if cell:
                names.append(cell.group(1))
    assert names, ("README core section has no metrics table "
                   "(| metric | ... | header, rows | `metric_name` | ... |)")
    return names


def referenced_metrics() -> dict[str, set[str]]:
    """{metric name: where it is used} over the alerts and the dashboard."""
    where: dict[str, set[str]] = {}
    rules = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    for rule in alertrules.alert_rules(rules):
        for name in alertrules.metric_names(rule["expr"]):
            where.setdefault(name, set()).add(f"alert {rule['alert']}")
    dash = json.loads((ROOT / "monitoring" / "dashboard.json").read_text())
    for q in dashcheck.queries(dash) + dashcheck.variable_queries(dash):
        for name in alertrules.metric_names(q.expr):
            where.setdefault(name, set()).add(f"panel {q.panel!r}")
    return where


def referenced_labels() -> set[str]:
    out: set[str] = set()
    rules = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    for rule in alertrules.alert_rules(rules):
        out |= alertrules.label_names(rule["expr"])
    dash = json.loads((ROOT / "monitoring" / "dashboard.json").read_text())
    for q in dashcheck.queries(dash) + dashcheck.variable_queries(dash):
        out |= alertrules.label_names(q.expr)
    return out


Exposition = dict[str, list[tuple[dict[str, str], float]]]


@pytest.fixture(scope="module")
def exposition() -> Iterator[Exposition]:
    """Samples of both exporters, merged, once every conditional series has shown up."""
    with monitored_stack(interval=1.0) as (_, main, features):
        main.wait_ready()
        features.wait_ready()
        main.wait_for_sample("mixpeek_namespace_poll_errors_total", lambda v: v is not None,
                             reason="not_found")
        features.wait_for_sample("mixpeek_exporter_stats_batch_available",
                                 lambda v: v is not None)
        merged: Exposition = {}
        for exp in (main, features):
            for name, samples in exp.metrics().items():
                merged.setdefault(name, []).extend(samples)
        yield merged


def test_metric_name_extraction() -> None:
    """The PromQL scanner the other tests rely on."""
    assert alertrules.metric_names(
        'sum by (namespace_id) (rate(mixpeek_api_requests_total{status=~"5.."}[5m])) * 60 '
        "and on (job) up == 1 or absent(mixpeek:x offset 6h) > bool 0") == {
        "mixpeek_api_requests_total", "up", "mixpeek:x"}
    assert alertrules.label_names('max by (a, b) (m{c="1", d=~"x"}) and on (e) n') == {
        "a", "b", "c", "d", "e"}


def test_alert_and_dashboard_metrics_exist(exposition: Exposition) -> None:
    exposed = set(exposition)
    missing = {name: sorted(where) for name, where in referenced_metrics().items()
               if name not in exposed and name not in PROMETHEUS_MADE and ":" not in name}
    assert not missing, f"not in the exporter's output: {missing}"


def test_recording_rules_used_are_documented() -> None:
    """A colon name is a recording rule the user writes (the stall alert's opt-in); the alerts
    file must show how to write it."""
    header = (ROOT / "monitoring" / "alerts.yaml").read_text()
    for name in referenced_metrics():
        if ":" in name:
            assert f"record: {name}" in header, name


def test_alert_and_dashboard_labels_exist(exposition: Exposition) -> None:
    exposed = {k for samples in exposition.values() for labels, _ in samples for k in labels}
    unknown = referenced_labels() - exposed - TARGET_LABELS
    assert not unknown, f"labels used but never exposed: {sorted(unknown)}"


def test_readme_metrics_exist(exposition: Exposition) -> None:
    exposed = set(exposition)
    missing = []
    for name in readme_metric_table():
        if name.endswith("*"):
            if not any(e.startswith(name[:-1]) for e in exposed):
                missing.append(name)
        elif name not in exposed:
            missing.append(name)
    assert not missing, f"README documents metrics the exporter does not serve: {missing}"


def test_readme_documents_every_exporter_metric(exposition: Exposition) -> None:
    documented = readme_metric_table()
    exact = {n for n in documented if not n.endswith("*")}
    prefixes = tuple(n[:-1] for n in documented if n.endswith("*"))
    undocumented = sorted(n for n in exposition
                          if n.startswith("mixpeek_") and not n.endswith("_created")
                          and n not in exact and not n.startswith(prefixes))
    assert not undocumented, f"served but missing from the README table: {undocumented}"


def test_conditional_list_is_current() -> None:
    """Every exception named here is a catalogued, documented metric (no stale entries)."""
    assert set(CONDITIONAL) <= set(sample_names()) & set(readme_metric_table())


# The operator fields of API 0.82 (issue 12) and the parser's unusable-field count: each has an
# alert and a dashboard panel (and, through the tests above, a README row and a real series).
OPERATOR_FAMILIES = {
    "mixpeek_namespace_ready", "mixpeek_namespace_document_count_complete",
    "mixpeek_namespace_expiry_timestamp_seconds", "mixpeek_namespace_invalid_fields",
}


def test_operator_families_have_an_alert_and_a_panel() -> None:
    where = referenced_metrics()
    for name in sorted(OPERATOR_FAMILIES):
        uses = where.get(name, set())
        assert any(u.startswith("alert ") for u in uses), f"{name}: no alert uses it"
        assert any(u.startswith("panel ") for u in uses), f"{name}: no dashboard panel shows it"
    assert "clone_status" in referenced_labels()


# ---------------------------------------------------------------------------- what users meet first

def _shipped_alert(name: str) -> dict[str, Any]:
    rules = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    return next(r for r in alertrules.alert_rules(rules) if r["alert"] == name)


def test_demo_archive_is_explained_as_it_is_served(exposition: Exposition) -> None:
    """The README's first screen and the landing page explain the demo's missing documents
    series by what the exporter really serves for demo_archive (a count that timed out, not one
    "not yet counted"), and name the alert that series feeds."""
    archive = {"namespace_name": "demo_archive"}
    assert sample(exposition, "mixpeek_namespace_document_count_complete", **archive) == 0
    assert sample(exposition, "mixpeek_namespace_documents", **archive) is None
    rule = _shipped_alert("MixpeekNamespaceDocumentCountDegraded")
    assert "mixpeek_namespace_document_count_complete" in rule["expr"]
    first_screen = README.read_text().split("<!-- BEGIN core -->")[0]
    for where, text in (("README first screen", first_screen), ("landing page", LANDING)):
        for said in ("document_count_complete: false", "mixpeek_namespace_document_count_complete",
                     "MixpeekNamespaceDocumentCountDegraded", f"for: {rule['for']}"):
            assert said in text, f"{where}: {said!r}"
        assert "not yet counted" not in text, where


def _as_input_series(served: Exposition, job: str, instance: str) -> list[dict[str, str]]:
    """Every mixpeek_* sample an exporter serves, as promtool input held for 20 minutes."""
    out = []
    for name, rows in sorted(served.items()):
        if not name.startswith("mixpeek_") or name.endswith("_created"):
            continue
        for labels, value in rows:
            labels = {**labels, "job": job, "instance": instance}
            matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
            out.append({"series": f"{name}{{{matchers}}}", "values": f"{value!r}x20"})
    return out


def test_wrong_key_with_discovery_on_pages(tmp_path: Path) -> None:
    """The zero-config default (discovery on, no namespaces listed) with a key the API refuses:
    the real exporter serves no namespace series at all, so the per-namespace auth and poll
    alerts have nothing to fire on; the shipped rules, fed exactly what it serves, page with
    MixpeekDiscoveryFailingNoNamespaces."""
    with SimulatorProcess(api_key=API_KEY, extra_args=SIM_ARGS) as sim:
        cfg = exporter_config(sim.url, [])
        cfg["discovery"] = {"enabled": True}
        with ExporterProcess(cfg, api_key="sk_live_NOT_THE_KEY_0000") as exp:
            exp.wait_for_sample("mixpeek_exporter_discovery_up", lambda v: v == 0)
            served = exp.metrics()
    assert sample(served, "mixpeek_exporter_namespaces") == 0
    assert not [n for n in served if n.startswith("mixpeek_namespace_")]

    job, instance = "mixpeek-exporter", "exp:10117"
    paging = _shipped_alert("MixpeekDiscoveryFailingNoNamespaces")
    annotations = {k: v.replace("{{ $labels.instance }}", instance)
                   for k, v in paging["annotations"].items()}
    assert not [v for v in annotations.values() if "{{" in v], annotations
    quiet = ["MixpeekAuthFailing", "MixpeekNamespacePollFailing", "MixpeekDiscoveryFailing",
             "MixpeekConfigReloadFailed"]
    case = {"interval": "1m", "input_series": _as_input_series(served, job, instance),
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": paging["alert"], "exp_alerts": [
                    {"exp_labels": {**paging["labels"], "job": job, "instance": instance},
                     "exp_annotations": annotations}]},
                *({"eval_time": "15m", "alertname": name, "exp_alerts": []} for name in quiet)]}
    (tmp_path / "alerts.yaml").write_text((ROOT / "monitoring" / "alerts.yaml").read_text())
    (tmp_path / "wrong-key.test.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yaml"], "evaluation_interval": "1m", "tests": [case]}))
    res = subprocess.run([require_tool("promtool"), "test", "rules", "wrong-key.test.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
