"""The tunables of monitoring/alerts.yaml, and variants of the rules with other values.

monitoring/alerts.yaml writes every threshold and window literally in its rules (Prometheus rule
files have no variables) and lists them all in a table in its header comment:

    #   knob                   value   alert                              meaning
    #   documents_drop_ratio   0.10    MixpeekNamespaceDocumentsDropped   fraction of ...

This module reads that table, checks that each value really is in the named alert (and only
once per alert, so a substitution is unambiguous), and renders a copy of the rules with some
knobs changed. The tests use it to keep the table, the rules and the README in step, and the
real-Prometheus test uses it to shorten the windows. Users can use it to tune without editing:

    python tools/dashcheck/alertrules.py --set documents_drop_ratio=0.25 \
        --set poll_failing_for=30m > /etc/prometheus/rules/mixpeek-exporter-alerts.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_RULES = ROOT / "monitoring" / "alerts.yaml"

_TABLE_START = re.compile(r"^#\s+knob\s+value\s+alert\s+meaning\s*$")
_ROW = re.compile(r"^#\s+(?P<knob>[a-z][a-z0-9_]*)\s+(?P<value>\S+)\s+(?P<alert>Mixpeek\w+)\s+"
                  r"(?P<meaning>\S.*?)\s*$")


@dataclass(frozen=True)
class Tunable:
    knob: str
    value: str
    alert: str
    meaning: str


def parse_tunables(text: str) -> list[Tunable]:
    """The rows of the knob table in the header comment (empty if there is none)."""
    rows: list[Tunable] = []
    in_table = False
    for line in text.splitlines():
        if not in_table:
            in_table = bool(_TABLE_START.match(line))
            continue
        m = _ROW.match(line)
        if not m:
            break  # the table ends at the first line that is not a row
        rows.append(Tunable(m["knob"], m["value"], m["alert"], m["meaning"]))
    return rows


def alert_rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc.get("groups", []) for r in g.get("rules", []) if "alert" in r]


def _pattern(value: str) -> re.Pattern[str]:
    # Whole tokens only: "3" must not match inside "[30m]", nor "5m" inside "15m".
    return re.compile(rf"(?<![\w.]){re.escape(value)}(?![\w.])")


def occurrences(rule: dict[str, Any], value: str) -> int:
    n = len(_pattern(value).findall(str(rule.get("expr", ""))))
    return n + (1 if str(rule.get("for", "")) == value else 0)


def problems(text: str) -> list[str]:
    """Why the knob table and the rules disagree (empty when they agree)."""
    doc = yaml.safe_load(text)
    rules = {r["alert"]: r for r in alert_rules(doc)}
    tunables = parse_tunables(text)
    out: list[str] = []
    if not tunables:
        out.append("no knob table found in the header comment")
    seen: set[str] = set()
    for t in tunables:
        if t.knob in seen:
            out.append(f"knob {t.knob} is listed twice")
        seen.add(t.knob)
        rule = rules.get(t.alert)
        if rule is None:
            out.append(f"knob {t.knob}: no alert named {t.alert}")
            continue
        if occurrences(rule, t.value) == 0:
            out.append(f"knob {t.knob}: {t.alert} does not contain {t.value!r} in expr or for")
        clash = [o.knob for o in tunables
                 if o.alert == t.alert and o.knob != t.knob and o.value == t.value]
        if clash:
            out.append(f"knobs {t.knob} and {clash[0]} of {t.alert} share the value {t.value!r}: "
                       "a substitution could not tell them apart")
    return out


def render_variant(text: str, overrides: dict[str, str]) -> str:
    """alerts.yaml with some knobs set to other values (comments are not kept)."""
    tunables = {t.knob: t for t in parse_tunables(text)}
    doc = yaml.safe_load(text)
    rules = {r["alert"]: r for r in alert_rules(doc)}
    for knob, new in overrides.items():
        if knob not in tunables:
            raise KeyError(f"unknown knob {knob!r}; known: {', '.join(sorted(tunables))}")
        t = tunables[knob]
        rule = rules[t.alert]
        if occurrences(rule, t.value) == 0:
            raise ValueError(f"{t.alert} does not contain {t.value!r}: the knob table is stale")
        rule["expr"] = _pattern(t.value).sub(new, str(rule["expr"]))
        if str(rule.get("for", "")) == t.value:
            rule["for"] = new
    return yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=1000)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the exprs) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str)


# ---------------------------------------------------------------------------- PromQL names

_FUNCS_AND_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (recording-rule names with ':' included)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # drop strings
    s = re.sub(r"\{[^}]*\}", "", s)  # drop label matchers
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)  # drop ranges / subqueries
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name in _FUNCS_AND_KEYWORDS:
            continue
        names.add(name)
    return names


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_* clauses."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    out: set[str] = set()
    for body in re.findall(r"\{([^}]*)\}", s):
        out.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                           s):
        out.update(x.strip() for x in body.split(",") if x.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rules", nargs="?", type=Path, default=DEFAULT_RULES)
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="change one knob (repeatable)")
    ap.add_argument("--list", action="store_true", help="print the knobs and exit")
    args = ap.parse_args(argv)
    text = args.rules.read_text()
    if args.list:
        for t in parse_tunables(text):
            print(f"{t.knob:24} {t.value:24} {t.alert:36} {t.meaning}")
        return 0
    bad = problems(text)
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    overrides = dict(s.split("=", 1) for s in args.set)
    sys.stdout.write(render_variant(text, overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
