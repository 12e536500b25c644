"""The last mile: from a change in Mixpeek to a notification at the right receiver.

monitoring/alertmanager.yml is checked by ``amtool`` (the configuration, and where each shipped
alert's severity is routed), and then run in a real Alertmanager (Debian's 0.25, on loopback,
gossip off) behind a real Prometheus that evaluates the shipped rules (their ``for:`` shortened
through the knob table) against the real exporter polling the simulator. The receivers' webhook
URLs point at a loopback HTTP server in this test; everything else (routes, grouping,
inhibition) is the shipped file. Halving a namespace's documents must deliver
MixpeekNamespaceDocumentsDropped to the paging receiver with the namespace's labels, a summary
rendered with its name and numbers, and its runbook link; a steady namespace must send nothing.
A second Alertmanager, fed alerts through its API, shows that MixpeekExporterDown holds back the
per-namespace alerts of its own exporter and of no other. Every wait polls with a deadline.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import API_KEY
from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, wait_until
from tests.monitoring_stack import (
    JOB,
    MON,
    AlertmanagerProcess,
    PrometheusProcess,
    WebhookReceiver,
    alertmanager_config_for_test,
    prometheus_config,
)
from tests.test_monitoring_rules import readme_anchors
from tests.tooling import require_tool
from tools.dashcheck import alertrules

pytestmark = [pytest.mark.prometheus, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
AM_CONFIG = MON / "alertmanager.yml"
README = ROOT / "README.md"
RECEIVER_OF = {"critical": "mixpeek-paging", "warning": "mixpeek-ticket"}
DROPPED = "MixpeekNamespaceDocumentsDropped"
FAST_KNOBS = {"documents_drop_for": "2s"}
DEADLINE = 60.0  # Prometheus's first scrape alone takes ~6 s


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("amtool", "run `make tools` as root"), *args],
                          capture_output=True, text=True, timeout=60)


def _shipped_alerts() -> list[dict[str, Any]]:
    return alertrules.alert_rules(yaml.safe_load((MON / "alerts.yaml").read_text()))


def _route(config: Path, labels: dict[str, str]) -> str:
    res = _amtool("config", "routes", "test", f"--config.file={config}",
                  *(f"{k}={v}" for k, v in labels.items()))
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


# ---------------------------------------------------------------------------- amtool

def test_shipped_config_passes_amtool_check_config() -> None:
    res = _amtool("check-config", str(AM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    assert "1 inhibit rules" in res.stdout and "2 receivers" in res.stdout


@pytest.mark.parametrize("alert", _shipped_alerts(), ids=lambda r: r["alert"])
def test_every_shipped_alert_routes_by_its_severity(alert: dict[str, Any]) -> None:
    """Critical alerts page and warnings open a ticket, as the README promises."""
    severity = alert["labels"]["severity"]
    labels = {"alertname": alert["alert"], "severity": severity, "job": JOB,
              "namespace_name": "orders"}
    assert _route(AM_CONFIG, labels) == RECEIVER_OF[severity]


def test_unknown_severity_still_reaches_a_receiver() -> None:
    assert _route(AM_CONFIG, {"alertname": "MixpeekSomethingNew"}) == "mixpeek-ticket"


def _kube_prometheus_stack_snippet() -> dict[str, Any]:
    """The kube-prometheus-stack values block the README gives for Alertmanager."""
    blocks = re.findall(r"```yaml\n(# kube-prometheus-stack values.*?)```", README.read_text(),
                        re.S)
    assert len(blocks) == 1, "README: one ```yaml block starting '# kube-prometheus-stack values'"
    return yaml.safe_load(blocks[0])


def test_readme_kube_prometheus_stack_routing_is_valid(tmp_path: Path) -> None:
    """The Helm path's Alertmanager values route and inhibit like monitoring/alertmanager.yml."""
    snippet = _kube_prometheus_stack_snippet()["alertmanager"]["config"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(snippet))
    res = _amtool("check-config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    for alert in _shipped_alerts():
        severity = alert["labels"]["severity"]
        labels = {"alertname": alert["alert"], "severity": severity, "job": JOB}
        assert _route(path, labels) == RECEIVER_OF[severity], alert["alert"]
    shipped = yaml.safe_load(AM_CONFIG.read_text())
    assert snippet["inhibit_rules"] == shipped["inhibit_rules"]


# ---------------------------------------------------------------------------- inhibition

def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def test_exporter_down_inhibits_only_its_own_exporters_alerts() -> None:
    now = dt.datetime.now(dt.UTC)
    window = {"startsAt": _iso(now), "endsAt": _iso(now + dt.timedelta(minutes=10))}
    per_namespace = [r for r in _shipped_alerts() if r["alert"] != "MixpeekExporterDown"]
    assert per_namespace

    def alert(name: str, instance: str, **extra: str) -> dict[str, Any]:
        return {"labels": {"alertname": name, "severity": "critical", "job": JOB,
                           "instance": instance, **extra}, **window}

    ns = {"namespace_id": "ns_1", "namespace_name": "orders"}
    with WebhookReceiver() as hook, AlertmanagerProcess(
            alertmanager_config_for_test(hook.url)) as am:
        am.post_alerts([alert("MixpeekExporterDown", "exp-a:10117")]
                       + [alert(r["alert"], "exp-a:10117", **ns) for r in per_namespace]
                       + [alert(DROPPED, "exp-b:10117", **ns)])

        def states() -> dict[tuple[str, str], dict[str, Any]] | None:
            got = {(a["labels"]["alertname"], a["labels"]["instance"]): a["status"]
                   for a in am.alerts()}
            return got if len(got) == len(per_namespace) + 2 else None

        def all_inhibited() -> dict[tuple[str, str], dict[str, Any]] | None:
            got = states()
            if got and all(got[(r["alert"], "exp-a:10117")]["inhibitedBy"]
                           for r in per_namespace):
                return got
            return None

        got = wait_until(all_inhibited, 20, 0.2, what="per-namespace alerts inhibited")
        for r in per_namespace:
            assert got[(r["alert"], "exp-a:10117")]["state"] == "suppressed", r["alert"]
        # The outage itself pages, and the other exporter's namespaces are not held back.
        assert got[("MixpeekExporterDown", "exp-a:10117")] == {
            "state": "active", "inhibitedBy": [], "silencedBy": []}
        assert got[(DROPPED, "exp-b:10117")]["state"] == "active"
        assert got[(DROPPED, "exp-b:10117")]["inhibitedBy"] == []


# ---------------------------------------------------------------------------- end to end

Page = tuple[str, dict[str, Any], dict[str, Any]]  # (path, notification, alert)


class _Stack:
    def __init__(self, sim: SimulatorProcess, exporter: ExporterProcess,
                 prom: PrometheusProcess, hook: WebhookReceiver) -> None:
        self.sim, self.exporter, self.prom, self.hook = sim, exporter, prom, hook


@pytest.fixture(scope="module")
def stack() -> Iterator[_Stack]:
    rules = alertrules.render_variant((MON / "alerts.yaml").read_text(), FAST_KNOBS)
    with WebhookReceiver() as hook, \
            AlertmanagerProcess(alertmanager_config_for_test(hook.url)) as am, \
            SimulatorProcess(api_key=API_KEY) as sim, \
            ExporterProcess(exporter_config(sim.url, ["demo_catalog", "demo_media"]),
                            api_key=API_KEY) as exporter, \
            PrometheusProcess(prometheus_config([f"127.0.0.1:{exporter.port}"], am.address),
                              rules) as prom:
        yield _Stack(sim, exporter, prom, hook)


@pytest.fixture(scope="module")
def page(stack: _Stack) -> Page:
    """Halve demo_catalog's documents and wait for the notification that it caused."""
    query = 'mixpeek_namespace_documents{namespace_name="demo_catalog"}'
    before = wait_until(lambda: stack.prom.query(query), DEADLINE, 0.25,
                        what="demo_catalog documents in Prometheus")
    stack.sim.patch("demo_catalog", {"document_count": int(float(before[0]["value"][1]) / 2)})

    def delivered() -> Page | None:
        for path, body in stack.hook.received():
            for alert in body["alerts"]:
                if (alert["labels"]["alertname"] == DROPPED and alert["status"] == "firing"
                        and alert["labels"].get("namespace_name") == "demo_catalog"):
                    return path, body, alert
        return None

    try:
        return wait_until(delivered, DEADLINE, 0.25, what=f"{DROPPED} at the webhook")
    except AssertionError as e:
        raise AssertionError(f"{e}\nPrometheus alerts: {stack.prom.api('alerts')}\n"
                             f"webhook got: {stack.hook.received()}") from e


def test_documents_drop_pages_with_the_namespace_labels(stack: _Stack, page: Page) -> None:
    path, body, alert = page
    assert path == "/mixpeek-paging" and body["receiver"] == "mixpeek-paging"
    assert body["status"] == "firing"
    assert body["groupLabels"] == {"alertname": DROPPED, "namespace_name": "demo_catalog"}
    assert alert["labels"] == {
        "alertname": DROPPED, "severity": "critical", "job": JOB,
        "instance": f"127.0.0.1:{stack.exporter.port}",
        "namespace_id": "ns_demo0001", "namespace_name": "demo_catalog"}


def test_page_summary_names_the_namespace_and_the_loss(page: Page) -> None:
    _, _, alert = page
    summary = alert["annotations"]["summary"]
    lost = re.fullmatch(r"Mixpeek namespace demo_catalog lost ([\d.]+)% of its documents",
                        summary)
    assert lost and 45 <= float(lost.group(1)) <= 55, summary
    assert 'namespace "demo_catalog" (id "ns_demo0001")' in alert["annotations"]["description"]
    assert "{{" not in summary + alert["annotations"]["description"]  # every template rendered


def test_page_links_its_runbook(page: Page) -> None:
    _, _, alert = page
    url = alert["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base.endswith("/README.md") and anchor == DROPPED.lower()
    assert anchor in readme_anchors()


def test_steady_namespace_does_not_page(stack: _Stack, page: Page) -> None:
    """demo_media kept its documents: no alert of any kind for it, pending or firing, reached
    Prometheus's ALERTS or any receiver, and the paging receiver got only the drop."""
    assert stack.prom.query('mixpeek_namespace_documents{namespace_name="demo_media"}')
    assert stack.prom.query('max_over_time(ALERTS{namespace_name="demo_media"}[10m])') == []
    notified = stack.hook.alerts()
    assert [a for _, a in notified if a["labels"].get("namespace_name") == "demo_media"] == []
    paged = {(a["labels"]["alertname"], a["labels"].get("namespace_name"))
             for _, a in stack.hook.alerts("/mixpeek-paging")}
    assert paged == {(DROPPED, "demo_catalog")}
