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

One knob is not in the table because it belongs to every alert: ``runbook_base``, the part of
each ``runbook_url`` before the ``#`` (the fragment is the alert name in lower case). Setting it
points every runbook link at another copy of the runbooks:

    python tools/dashcheck/alertrules.py \
        --set runbook_base=https://git.example.com/ops/mixpeek-exporter/-/blob/main/README.md
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_RULES = ROOT / "monitoring" / "alerts.yaml"

_TABLE_START = re.compile(r"^#\s+knob\s+value\s+alert\s+meaning\s*$")
# The knob of every alert's runbook_url (not a row of the table: it has no single alert).
RUNBOOK_BASE = "runbook_base"

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


def runbook_base(doc: dict[str, Any]) -> str | None:
    """The part of the runbook_urls before the ``#``, when every alert has the same one."""
    bases = {str(r.get("annotations", {}).get("runbook_url", "")).partition("#")[0]
             for r in alert_rules(doc)}
    return bases.pop() if len(bases) == 1 else None


def runbook_problems(doc: dict[str, Any]) -> list[str]:
    """Why the runbook links cannot be moved with ``runbook_base`` (empty when they can)."""
    base = runbook_base(doc)
    if base is None:
        return ["the alerts' runbook_urls do not share one base before the '#'"]
    return [f"{r['alert']}: runbook_url is not {base}#{r['alert'].lower()}"
            for r in alert_rules(doc)
            if r.get("annotations", {}).get("runbook_url") != f"{base}#{r['alert'].lower()}"]


def problems(text: str) -> list[str]:
    """Why the knob table and the rules disagree (empty when they agree)."""
    doc = yaml.safe_load(text)
    rules = {r["alert"]: r for r in alert_rules(doc)}
    tunables = parse_tunables(text)
    out: list[str] = runbook_problems(doc)
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
        if knob_kind(t.knob, t.value) is None:
            out.append(f"knob {t.knob}: {t.value!r} is no ratio, seconds, count, duration or "
                       "label matcher, so --set could not check a new value")
        clash = [o.knob for o in tunables
                 if o.alert == t.alert and o.knob != t.knob and o.value == t.value]
        if clash:
            out.append(f"knobs {t.knob} and {clash[0]} of {t.alert} share the value {t.value!r}: "
                       "a substitution could not tell them apart")
    return out


# ---------------------------------------------------------------------------- knob values

_DURATION = re.compile(r"(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?"
                       r"(?:[0-9]+s)?(?:[0-9]+ms)?")
_MATCHER = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*(?:=|!=|=~|!~)"(?:[^"\\\n]|\\.)*"')
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# No fragment (the alert's anchor is appended), and nothing a Go template, YAML or a Markdown
# link would read as syntax: braces, quotes, angle brackets, backslashes, white space.
_URL = re.compile(r"https?://[^\s\"'<>{}|\\^`#]+")


class KnobError(ValueError):
    """A knob name or value that cannot be rendered into a valid rule (one line, for users)."""


def knob_kind(knob: str, value: str) -> str | None:
    """What a knob holds, judged by its name and its shipped value: ``ratio`` (0 < r <= 1),
    ``seconds`` (a number > 0), ``count`` (an integer >= 0), ``duration`` (a Prometheus
    duration; ``*_for`` may be 0, windows may not), ``matcher`` (one label matcher) or ``url``
    (runbook_base: an http(s) URL). None when the table holds a value of no known kind."""
    if knob == RUNBOOK_BASE:
        return "url"
    if knob.endswith("_ratio") and _NUMBER.fullmatch(value):
        return "ratio"
    if knob.endswith("_seconds") and _NUMBER.fullmatch(value):
        return "seconds"
    if value.isdigit():
        return "count"
    if value and _DURATION.fullmatch(value):
        return "duration"
    if _MATCHER.fullmatch(value):
        return "matcher"
    return None


def _duration_ms(value: str) -> int | None:
    if not value or not _DURATION.fullmatch(value):
        return None
    unit_ms = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
               "m": 60_000, "s": 1000, "ms": 1}
    return sum(int(n) * unit_ms[u] for n, u in re.findall(r"([0-9]+)(ms|[ywdhms])", value))


def check_value(knob: str, kind: str, value: str) -> None:
    """Raise KnobError unless ``value`` is a valid new value of a knob of this kind."""
    def bad(what: str) -> KnobError:
        return KnobError(f"--set {knob}={value}: {what}")
    if kind == "ratio":
        if not _NUMBER.fullmatch(value) or not 0 < float(value) <= 1:
            raise bad("not a ratio in (0, 1] (e.g. 0.25)")
    elif kind == "seconds":
        if not _NUMBER.fullmatch(value) or float(value) <= 0:
            raise bad("not a number of seconds > 0 (e.g. 900)")
    elif kind == "count":
        if not value.isdigit():
            raise bad("not a whole number >= 0 (e.g. 3)")
    elif kind == "duration":
        ms = _duration_ms(value)
        if ms is None:
            raise bad("not a Prometheus duration (e.g. 90s, 5m, 1h30m, 7d)")
        if ms == 0 and not knob.endswith("_for"):
            raise bad("a window must be longer than 0")
    elif kind == "matcher":
        if not _MATCHER.fullmatch(value):
            raise bad('not one label matcher (e.g. job="mixpeek")')
    elif kind == "url":
        if not _URL.fullmatch(value) or not urlsplit(value).hostname:
            raise bad("not an http(s) URL without a #fragment, spaces, quotes or braces (e.g. "
                      "https://git.example.com/ops/mixpeek-exporter/-/blob/main/README.md)")
    else:
        raise bad(f"the knob table gives no known kind for {knob}")


def parse_overrides(text: str, settings: list[str]) -> dict[str, str]:
    """``["knob=value", ...]`` from the command line, validated against the knob table."""
    tunables = {t.knob: t for t in parse_tunables(text)}
    out: dict[str, str] = {}
    for s in settings:
        knob, eq, value = s.partition("=")
        knob, value = knob.strip(), value.strip()
        if not eq or not knob:
            raise KnobError(f"--set {s}: expected KNOB=VALUE (see --list)")
        t = tunables.get(knob)
        if t is None and knob != RUNBOOK_BASE:
            raise KnobError(f"--set {s}: unknown knob {knob!r}; known: "
                            f"{', '.join(sorted([*tunables, RUNBOOK_BASE]))}")
        check_value(knob, knob_kind(knob, t.value if t else value) or "", value)
        out[knob] = value
    return out


def render_variant(text: str, overrides: dict[str, str]) -> str:
    """alerts.yaml with some knobs set to other values (comments are not kept).

    Every value is substituted at once, in the rules as shipped, so that setting one knob to
    another knob's old value (``documents_drop_for=30m`` next to ``documents_drop_window``)
    cannot make a later substitution hit it. ``runbook_base`` replaces what every runbook_url
    has before its ``#``. Raises KnobError for an unknown knob or a value of the wrong kind.
    """
    tunables = {t.knob: t for t in parse_tunables(text)}
    overrides = dict(overrides)
    base = overrides.pop(RUNBOOK_BASE, None)
    if base is not None:
        check_value(RUNBOOK_BASE, "url", base)
    for knob, new in overrides.items():
        if knob not in tunables:
            raise KnobError(f"unknown knob {knob!r}; known: "
                            f"{', '.join(sorted([*tunables, RUNBOOK_BASE]))}")
        check_value(knob, knob_kind(knob, tunables[knob].value) or "", new)
    doc = yaml.safe_load(text)
    rules = {r["alert"]: r for r in alert_rules(doc)}
    if base is not None:
        bad = runbook_problems(doc)
        if bad:
            raise KnobError(f"cannot set {RUNBOOK_BASE}: {bad[0]}")
        for rule in rules.values():
            rule["annotations"]["runbook_url"] = f"{base}#{rule['alert'].lower()}"
    per_rule: dict[str, dict[str, str]] = {}
    for knob, new in overrides.items():
        t = tunables[knob]
        if occurrences(rules[t.alert], t.value) == 0:
            raise KnobError(f"{t.alert} does not contain {t.value!r}: the knob table is stale")
        per_rule.setdefault(t.alert, {})[t.value] = new
    for alert, subs in per_rule.items():
        rule = rules[alert]
        alternation = "|".join(re.escape(v) for v in sorted(subs, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w.])(?:{alternation})(?![\w.])")
        rule["expr"] = pattern.sub(lambda m, s=subs: s[m.group(0)], str(rule["expr"]))
        old_for = str(rule.get("for", ""))
        if old_for in subs:
            rule["for"] = subs[old_for]
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
    """Exit 0 with the rules on stdout; 1 when the knob table and the rules disagree; 2 with
    one line on stderr for a usage error (unknown knob, bad value, unreadable file)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("rules", nargs="?", type=Path, default=DEFAULT_RULES)
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                    help="change one knob (repeatable); --list shows them")
    ap.add_argument("--list", action="store_true", help="print the knobs and exit")
    args = ap.parse_args(argv)
    prog = Path(sys.argv[0]).name if argv is None else "alertrules.py"
    try:
        text = args.rules.read_text()
        yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        print(f"{prog}: cannot read {args.rules}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.list:
        for t in parse_tunables(text):
            print(f"{t.knob:24} {t.value:24} {t.alert:36} {t.meaning}")
        print(f"{RUNBOOK_BASE:24} {runbook_base(yaml.safe_load(text)) or '?'}  (every alert: "
              "runbook_url before the #)")
        return 0
    bad = problems(text)
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    try:
        out = render_variant(text, parse_overrides(text, args.set))
    except KnobError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
