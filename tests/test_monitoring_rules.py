"""monitoring/alerts.yaml, its unit tests and monitoring/prometheus.yml, checked by promtool, and
the promises the rules make to their readers: every alert labelled, annotated and linked to a
runbook that exists, every knob in the header table really in its rule and in the README, and
every alert covered by a firing and a quiet unit test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tooling import require_tool
from tools.dashcheck import alertrules

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / "monitoring"
RULES = MON / "alerts.yaml"
RULE_TESTS = MON / "alerts.test.yaml"
PROM_CONFIG = MON / "prometheus.yml"
README = ROOT / "README.md"


REQUIRED_ALERTS = {
    "MixpeekNamespaceDocumentsDropped", "MixpeekNamespaceDocumentsStalled",
    "MixpeekNamespacePollFailing", "MixpeekNamespaceDataStale", "MixpeekAuthFailing",
    "MixpeekRateLimited", "MixpeekExporterDown",
    # the operator fields of API 0.82 (issue 12) and the fields the parser could not use
    "MixpeekNamespaceNotReady", "MixpeekNamespaceExpiringSoon",
    "MixpeekNamespaceDocumentCountDegraded", "MixpeekNamespaceInvalidFields",
    # the exporter's own work: a wrong key with discovery on leaves no namespace series at all
    "MixpeekDiscoveryFailingNoNamespaces", "MixpeekDiscoveryFailing", "MixpeekConfigReloadFailed",
}
# Alerts about an exporter as a whole carry its instance, and no namespace labels to name.
EXPORTER_ALERTS = {"MixpeekExporterDown", "MixpeekDiscoveryFailingNoNamespaces",
                   "MixpeekDiscoveryFailing", "MixpeekConfigReloadFailed"}
# Alerts on Prometheus's own `up`, which has no exporter series that could end.
TARGET_ALERTS = {"MixpeekExporterDown"}
SEVERITIES = {"critical", "warning", "info"}


def _doc() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text())


def _alerts() -> list[dict[str, Any]]:
    return alertrules.alert_rules(_doc())


def monitoring_section() -> str:
    text = README.read_text()
    m = re.search(r"<!-- BEGIN monitoring -->(.*?)<!-- END monitoring -->", text, re.S)
    assert m, "README.md has no monitoring section markers"
    return m.group(1)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def readme_anchors() -> set[str]:
    return {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", README.read_text(),
                                                   re.M)}


def _promtool(*args: str, cwd: Path = MON) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------------------- promtool

def test_promtool_check_rules() -> None:
    res = _promtool("check", "rules", RULES.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    res = _promtool("test", "rules", RULE_TESTS.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: without its `for:` the poll-failure alert fires on a
    single failed poll, and the tests must say so."""
    doc = _doc()
    rule = next(r for r in alertrules.alert_rules(doc)
                if r["alert"] == "MixpeekNamespacePollFailing")
    del rule["for"]
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = yaml.safe_load(RULE_TESTS.read_text())
    # Only this alert's cases: the others (6 h of stall data) would just cost time.
    tests["tests"] = [g for g in tests["tests"]
                      if any(c["alertname"] == "MixpeekNamespacePollFailing"
                             for c in g.get("alert_rule_test", []))]
    assert tests["tests"]
    (tmp_path / "alerts.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    res = _promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert res.returncode != 0
    assert "MixpeekNamespacePollFailing" in res.stdout + res.stderr


def test_example_prometheus_config_is_valid(tmp_path: Path) -> None:
    """The example config with its rule path pointed at this repository's rules."""
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    assert len(cfg["rule_files"]) == 1
    cfg["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    res = _promtool("check", "config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 1 rule files found" in res.stdout


def test_example_scrape_job_matches_the_alerts() -> None:
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    job = jobs["mixpeek-exporter"]
    assert job["scrape_interval"] == "30s"
    assert job["scrape_timeout"] == "10s"
    assert job["static_configs"][0]["targets"] == ["localhost:10117"]
    down = next(r for r in _alerts() if r["alert"] == "MixpeekExporterDown")
    assert 'job="mixpeek-exporter"' in down["expr"]


# ---------------------------------------------------------------------------- the rules' promises

def test_required_alerts_exist_once() -> None:
    names = [r["alert"] for r in _alerts()]
    assert len(names) == len(set(names)), names
    assert REQUIRED_ALERTS <= set(names)


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_alert_labels_and_annotations(alert: str) -> None:
    rule = next(r for r in _alerts() if r["alert"] == alert)
    assert rule["labels"]["severity"] in SEVERITIES
    ann = rule["annotations"]
    assert set(ann) >= {"summary", "description", "runbook_url"}
    if alert not in EXPORTER_ALERTS:
        # Per-namespace alerts name the namespace in both texts; the summary falls back to the
        # id for a namespace configured by id that never answered (namespace_name empty).
        assert "$labels.namespace_name" in ann["summary"]
        assert "$labels.namespace_id" in ann["summary"]
        assert "$labels.namespace_name" in ann["description"]
        assert "$labels.namespace_id" in ann["description"]
    else:
        assert "$labels.instance" in ann["summary"]


def test_runbook_urls_point_at_readme_headings() -> None:
    anchors = readme_anchors()
    for rule in _alerts():
        url = rule["annotations"]["runbook_url"]
        base, _, frag = url.partition("#")
        assert base.endswith("/README.md"), url
        assert frag == rule["alert"].lower(), url
        assert frag in anchors, f"README.md has no heading for #{frag}"


def test_runbook_subsections_are_in_the_monitoring_section() -> None:
    section = monitoring_section()
    for alert in REQUIRED_ALERTS:
        assert re.search(rf"^#+ {alert}\s*$", section, re.M), f"no runbook heading for {alert}"


def test_knob_table_matches_the_rules() -> None:
    assert alertrules.problems(RULES.read_text()) == []
    knobs = alertrules.parse_tunables(RULES.read_text())
    # every alert has at least one documented threshold or window
    assert {t.alert for t in knobs} == REQUIRED_ALERTS


def test_readme_knob_table_matches_the_rules() -> None:
    """The README repeats the header's table; both must say the same."""
    section = monitoring_section()
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\|\s*`(?P<knob>[a-z_0-9]+)`\s*\|\s*`(?P<value>[^`]+)`\s*\|\s*"
                     r"(?P<alert>Mixpeek\w+)", line)
        if m:
            rows[m["knob"]] = (m["value"], m["alert"])
    expected = {t.knob: (t.value, t.alert) for t in alertrules.parse_tunables(RULES.read_text())}
    assert rows == expected


def test_variant_substitutes_only_what_it_is_asked(tmp_path: Path) -> None:
    text = RULES.read_text()
    out = yaml.safe_load(alertrules.render_variant(text, {"documents_drop_for": "7s",
                                                           "stall_window": "2m"}))
    rules = {r["alert"]: r for r in alertrules.alert_rules(out)}
    assert rules["MixpeekNamespaceDocumentsDropped"]["for"] == "7s"
    assert "[30m]" in rules["MixpeekNamespaceDocumentsDropped"]["expr"]
    assert "[2m]" in rules["MixpeekNamespaceDocumentsStalled"]["expr"]
    assert "offset 2m" in rules["MixpeekNamespaceDocumentsStalled"]["expr"]
    assert rules["MixpeekAuthFailing"]["for"] == "5m"
    with pytest.raises(alertrules.KnobError, match="unknown knob 'no_such_knob'"):
        alertrules.render_variant(text, {"no_such_knob": "1"})
    # Setting one knob to another's old value does not let the second substitution hit it.
    out = yaml.safe_load(alertrules.render_variant(text, {"documents_drop_for": "30m",
                                                           "documents_drop_window": "1h"}))
    dropped = next(r for r in alertrules.alert_rules(out)
                   if r["alert"] == "MixpeekNamespaceDocumentsDropped")
    assert dropped["for"] == "30m"
    assert dropped["expr"].count("[1h]") == 2 and "[30m]" not in dropped["expr"]
    (tmp_path / "v.yaml").write_text(alertrules.render_variant(text, {"poll_failing_for": "3s"}))
    res = _promtool("check", "rules", str(tmp_path / "v.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired >= REQUIRED_ALERTS, REQUIRED_ALERTS - fired
    assert quiet >= REQUIRED_ALERTS, REQUIRED_ALERTS - quiet


def test_unit_tests_cover_restarts_and_vanished_namespaces() -> None:
    """Each alert on the exporter's series is tested against a restart gap and a series that
    ends (a `stale` marker), not only against steady data."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    covered: set[str] = set()
    for group in tests["tests"]:
        ends = any("stale" in s["values"].split() for s in group.get("input_series", []))
        if ends:
            covered.update(c["alertname"] for c in group.get("alert_rule_test", [])
                           if not c.get("exp_alerts"))
    assert covered >= REQUIRED_ALERTS - TARGET_ALERTS, REQUIRED_ALERTS - TARGET_ALERTS - covered


def test_yaml_lint() -> None:
    yamllint = pytest.importorskip("yamllint.cli")
    conf = ("{extends: default, rules: {line-length: disable, document-start: disable, "
            "comments: {min-spaces-from-content: 1}}}")
    with pytest.raises(SystemExit) as exc:
        yamllint.run(["-s", "-d", conf, str(RULES), str(RULE_TESTS), str(PROM_CONFIG),
                      str(MON / "alertmanager.yml")])
    assert exc.value.code == 0


# ---------------------------------------------------------------------------- the knob CLI

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "dashcheck" / "alertrules.py"),
                           *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("arg", "why"), [
    ("bogus=1", "unknown knob 'bogus'; known: auth_for, "),
    ("documents_drop_ratio=abc", "not a ratio in (0, 1]"),
    ("documents_drop_ratio=0", "not a ratio in (0, 1]"),
    ("documents_drop_ratio=1.5", "not a ratio in (0, 1]"),
    ("rate_limited_failures=2.5", "not a whole number >= 0"),
    ("rate_limited_failures=-1", "not a whole number >= 0"),
    ("data_stale_after_seconds=soon", "not a number of seconds > 0"),
    ("stale_after_seconds=900", "unknown knob 'stale_after_seconds'"),  # poll.'s, not a knob
    ("runbook_base=ftp://git.example.com/README.md", "not an http(s) URL"),
    ("runbook_base=https://git.example.com/README.md#top", "not an http(s) URL"),
    ("runbook_base=https://git.example.com/{{ .Values }}/README.md", "not an http(s) URL"),
    ("runbook_base=https:///README.md", "not an http(s) URL"),
    ("documents_drop_window=30 minutes", "not a Prometheus duration"),
    ("documents_drop_window=5M", "not a Prometheus duration"),
    ("documents_drop_window=0s", "a window must be longer than 0"),
    ("exporter_job=mixpeek", "not one label matcher"),
    ("documents_drop_ratio", "expected KNOB=VALUE"),
])
def test_knob_cli_refuses_bad_names_and_values_in_one_line(arg: str, why: str) -> None:
    """Exit 2, nothing on stdout (so `> rules.yaml` never gets a broken rule file), and one
    line on stderr naming the argument and what is wrong with it."""
    res = _cli("--set", arg)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"--set {arg}" in lines[0] and why in lines[0], lines[0]


def test_knob_cli_renders_valid_values(tmp_path: Path) -> None:
    res = _cli("--set", "documents_drop_ratio=0.25", "--set", "documents_drop_for=0s",
               "--set", "rate_limited_failures=0", "--set", "data_stale_after_seconds=1800",
               "--set", "stall_window=1d12h", "--set", 'exporter_job=job=~"mixpeek.*"')
    assert res.returncode == 0, res.stderr
    rules = {r["alert"]: r for r in alertrules.alert_rules(yaml.safe_load(res.stdout))}
    assert "> 0.25" in rules["MixpeekNamespaceDocumentsDropped"]["expr"]
    assert rules["MixpeekNamespaceDocumentsDropped"]["for"] == "0s"
    assert "> 1800" in rules["MixpeekNamespaceDataStale"]["expr"]
    assert "offset 1d12h" in rules["MixpeekNamespaceDocumentsStalled"]["expr"]
    assert 'up{job=~"mixpeek.*"}' in rules["MixpeekExporterDown"]["expr"]
    (tmp_path / "tuned.yaml").write_text(res.stdout)
    check = _promtool("check", "rules", str(tmp_path / "tuned.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_runbook_base_moves_every_link_and_nothing_else(tmp_path: Path) -> None:
    """Runbooks kept in one's own copy: every runbook_url gets the new base before its anchor,
    and the rules are otherwise the shipped ones."""
    shipped = _doc()
    assert alertrules.runbook_base(shipped) == (
        "https://github.com/mixpeek-exporter/mixpeek-exporter/blob/main/README.md")
    base = "https://git.example.com/ops/mixpeek-exporter/-/blob/main/README.md"
    res = _cli("--set", f"runbook_base={base}")
    assert res.returncode == 0, res.stderr
    moved = yaml.safe_load(res.stdout)
    for rule in alertrules.alert_rules(moved):
        assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"
        rule["annotations"]["runbook_url"] = ""
    for rule in alertrules.alert_rules(shipped):
        rule["annotations"]["runbook_url"] = ""
    assert moved == shipped
    (tmp_path / "moved.yaml").write_text(res.stdout)
    check = _promtool("check", "rules", str(tmp_path / "moved.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_runbook_links_that_cannot_move_are_a_problem() -> None:
    """A new alert whose link does not follow <base>#<alert> would keep pointing at GitHub
    after --set runbook_base: the table check says so."""
    text = RULES.read_text()
    broken = text.replace("README.md#mixpeekratelimited", "README.md#rate-limits", 1)
    assert broken != text
    assert any("MixpeekRateLimited: runbook_url" in p for p in alertrules.problems(broken))
    with pytest.raises(alertrules.KnobError, match="cannot set runbook_base"):
        alertrules.render_variant(broken, {"runbook_base": "https://wiki.example.com/mixpeek"})


def test_knob_cli_unreadable_rules_file_is_one_line(tmp_path: Path) -> None:
    res = _cli(str(tmp_path / "missing.yaml"), "--list")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "missing.yaml" in res.stderr


def test_every_knob_has_a_checkable_kind() -> None:
    kinds = {t.knob: alertrules.knob_kind(t.knob, t.value)
             for t in alertrules.parse_tunables(RULES.read_text())}
    assert None not in kinds.values(), kinds
