"""monitoring/dashboard.json: type-checked against Grafana's published schema (@grafana/schema
with TypeScript, via tools/dashcheck), its PromQL parsed by promtool, and the conventions a
reader relies on: variables, rows, units, legends, one layout without overlaps.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_monitoring_rules import RULES, alertrules, monitoring_section
from tests.tooling import in_ci, require_tool
from tools.dashcheck import dashcheck

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "monitoring" / "dashboard.json"
DASHCHECK = ROOT / "tools" / "dashcheck"


ROWS = ["Overview", "Documents and contents", "Readiness and lifecycle", "Jobs and autoscaling",
        "Poll health and API errors", "Staleness"]
# Grafana unit ids used here (packages/grafana-data/src/valueFormats/categories.ts).
KNOWN_UNITS = {"none", "short", "s", "ms", "dtdurations", "dateTimeAsIso", "reqps", "cpm",
               "percentunit"}
NAMESPACE_SELECTOR = 'namespace_name=~"$namespace_name"'


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _tsc() -> Path:
    if not dashcheck.TSC.exists():
        msg = f"{dashcheck.TSC} missing (run `make tools`: npm install in tools/dashcheck)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return dashcheck.TSC


def _content_panels() -> list[dict[str, Any]]:
    return [p for p in dashcheck.iter_panels(_dashboard()) if p["type"] != "row"]


# ---------------------------------------------------------------------------- schema

def test_type_checks_against_grafana_schema() -> None:
    res = dashcheck.type_check(DASHBOARD, _tsc())
    assert res.ok, res.output


def test_type_check_rejects_schema_errors(tmp_path: Path) -> None:
    """The check is not vacuous: typical hand-editing mistakes fail it, at the right line."""
    tsc = _tsc()
    d = _dashboard()
    ts = next(p for p in d["panels"] if p["type"] == "timeseries")
    ts["targets"][0]["legendformat"] = ts["targets"][0].pop("legendFormat")
    stat = next(p for p in d["panels"] if p["type"] == "stat")
    stat["fieldConfig"]["defaults"]["thresholds"]["mode"] = "absolut"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d, indent=2))
    try:
        res = dashcheck.type_check(bad, tsc, name="negative")
    finally:
        for leftover in (DASHCHECK / "gen").glob("*negative*"):
            leftover.unlink()
    assert not res.ok
    assert "'\"legendformat\"' does not exist" in res.output, res.output
    assert "Did you mean '\"absolute\"'" in res.output, res.output
    lines = bad.read_text().splitlines()
    m = re.search(r"bad\.json:(\d+):\d+: error TS\d+: Object literal may only specify known "
                  r"properties, and '\"legendformat\"'", res.output)
    assert m and '"legendformat"' in lines[int(m.group(1)) - 1], res.output


def test_promql_of_every_panel_parses() -> None:
    ok, out = dashcheck.check_promql(DASHBOARD, require_tool("promtool"))
    assert ok, out


def test_promql_check_rejects_a_syntax_error(tmp_path: Path) -> None:
    d = _dashboard()
    panel = next(p for p in d["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["expr"] = "rate(mixpeek_api_requests_total[5m]"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    ok, out = dashcheck.check_promql(bad, require_tool("promtool"))
    assert not ok
    assert "unclosed left parenthesis" in out


# ---------------------------------------------------------------------------- conventions

def test_template_variables() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ns = variables["namespace_name"]
    assert ns["type"] == "query" and ns["multi"] and ns["includeAll"]
    # "All" must also match a namespace configured by id that never answered (empty name),
    # which Grafana's default All value (an alternation of the known names) would drop.
    assert ns["allValue"] == ".*"
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    for p in _content_panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]


def test_rows_in_order() -> None:
    rows = [p["title"] for p in _dashboard()["panels"] if p["type"] == "row"]
    assert rows == ROWS


def test_unique_ids_and_no_overlapping_panels() -> None:
    panels = list(dashcheck.iter_panels(_dashboard()))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_units_descriptions_and_legends() -> None:
    for p in _content_panels():
        assert p.get("description"), f"{p['title']}: no description"
        defaults = p["fieldConfig"]["defaults"]
        units = {defaults.get("unit")} | {
            prop["value"] for o in p["fieldConfig"]["overrides"] for prop in o["properties"]
            if prop["id"] == "unit"}
        assert None not in units, f"{p['title']}: no unit"
        assert units <= KNOWN_UNITS, f"{p['title']}: unknown unit {units - KNOWN_UNITS}"
        for t in p["targets"]:
            if t.get("format") == "table" or t.get("instant"):
                continue
            # A legend from labels, never Grafana's default of the whole series name.
            assert "{{" in t.get("legendFormat", "") or p["type"] == "stat", p["title"]


def test_seconds_and_timestamps_have_time_units() -> None:
    for p in _content_panels():
        unit = p["fieldConfig"]["defaults"].get("unit")
        for t in p["targets"]:
            e = t["expr"]
            age_or_time_left = "time() -" in e or e.rstrip().endswith("- time()")
            if age_or_time_left or "duration_seconds" in e:
                assert unit in {"s", "dtdurations"}, p["title"]
            if "timestamp_seconds" in e and not age_or_time_left:
                # Grafana's date units take milliseconds.
                assert e.rstrip().endswith("* 1000"), p["title"]


def test_per_namespace_queries_follow_the_namespace_variable() -> None:
    for p in _content_panels():
        for t in p["targets"]:
            if "mixpeek_namespace_" in t["expr"]:
                assert NAMESPACE_SELECTOR in t["expr"], f"{p['title']}: {t['expr']}"
                assert 'job=~"$job"' in t["expr"], f"{p['title']}: {t['expr']}"


def test_required_content() -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in _content_panels()}
    joined = " ".join(exprs.values())
    for metric in ["documents", "objects", "buckets", "collections", "max_concurrent_jobs",
                   "autoscaling_enabled", "up", "poll_errors_total",
                   "last_success_timestamp_seconds", "ready", "document_count_complete",
                   "expiry_timestamp_seconds", "invalid_fields",
                   "metadata_last_refresh_timestamp_seconds"]:
        assert f"mixpeek_namespace_{metric}" in joined, metric
    assert "mixpeek_api_requests_total" in joined
    assert "$__range" in joined  # changes over the selected range
    stats = [p for p in _content_panels() if p["type"] == "stat"]
    assert any("mixpeek_namespace_up" in p["targets"][0]["expr"] for p in stats)
    assert any("mixpeek_namespace_documents" in p["targets"][0]["expr"] for p in stats)


def test_readme_describes_every_row() -> None:
    section = monitoring_section()
    for row in ROWS:
        assert re.search(rf"^\*\*{re.escape(row)}\*\*", section, re.M), row


def test_dashboard_import_keeps_no_instance_specifics() -> None:
    d = _dashboard()
    assert d["id"] is None
    assert d["uid"] == "mixpeek-exporter"
    text = json.dumps(d)
    assert "__inputs" not in text  # import needs no prompt: the datasource is a variable
    clone = copy.deepcopy(d)
    clone["templating"]["list"] = []
    assert "${datasource}" in json.dumps(clone["panels"])


def test_staleness_thresholds_follow_the_alert() -> None:
    """The red lines of the staleness panels sit where MixpeekNamespaceDataStale fires."""
    knob = next(t for t in alertrules.parse_tunables(RULES.read_text())
                if t.knob == "data_stale_after_seconds")
    panels = [p for p in _content_panels()
              if "mixpeek_namespace_last_success_timestamp_seconds" in p["targets"][0]["expr"]
              and "time() -" in p["targets"][0]["expr"]]
    assert len(panels) == 2
    for p in panels:
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"color": "red", "value": float(knob.value)}, p["title"]


def test_expiry_threshold_follows_the_alert() -> None:
    """Time until expiry turns red where MixpeekNamespaceExpiringSoon fires."""
    knob = next(t for t in alertrules.parse_tunables(RULES.read_text())
                if t.knob == "expiry_warning_seconds")
    panel = next(p for p in _content_panels()
                 if "mixpeek_namespace_expiry_timestamp_seconds" in p["targets"][0]["expr"])
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "red", "value": None},
                     {"color": "green", "value": float(knob.value)}], panel["title"]


def test_namespace_details_show_the_clone_status() -> None:
    table = next(p for p in _content_panels() if p["title"] == "Namespace details")
    assert "clone_status)" in table["targets"][0]["expr"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    assert organize["renameByName"]["clone_status"] == "Clone"
