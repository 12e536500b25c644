"""Sample lines of the per-namespace families, formatted by hand exactly as prometheus-client
formats them (values as ``floatToGoString``, label values escaped, labels sorted by name), and
the per-namespace boundary: a value that cannot be rendered costs its own series only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from prometheus_client.utils import floatToGoString

from exporter.mixpeek.models import NamespaceValues
from exporter.render.families import Family
from exporter.state.snapshot import NamespaceState

# (what could not be rendered: a family name or "labels", where: a namespace identifier or
# "exporter", the exception)
Report = Callable[[str, str, BaseException], None]


class Unrenderable(ValueError):
    """A value that has no exposition form: not a finite number."""


def finite(v: Any) -> float:
    """``v`` as a float, or Unrenderable: the rule for every value the exporter publishes."""
    try:
        f = float(v)
    except (OverflowError, TypeError, ValueError) as e:
        raise Unrenderable(f"{type(v).__name__} value is not a number in float range") from e
    if not math.isfinite(f):
        raise Unrenderable(f"{f!r} is not a finite number")
    return f


def format_value(v: float | int | bool) -> str:
    """floatToGoString(v) for finite values, with fast paths for what a namespace has (about
    4x faster); Unrenderable for anything ``finite`` refuses."""
    cls = v.__class__
    if cls is int:
        if 0 <= v < 1_000_000:  # type: ignore[operator]
            return f"{v}.0"  # repr(float(v))
        if 1_000_000 <= v < 1 << 53:  # type: ignore[operator]
            # exact as a float, and repr(float(v)) == f"{v}.0": Go-style exponent form
            d = str(v)
            return f"{(d[0] + '.' + d[1:] + '0').rstrip('0.')}e+{len(d) - 1:02d}"
    elif cls is float:
        if -1e300 < v < 1_000_000:  # type: ignore[operator]  # finite, not nan
            return repr(v)
        if 1_000_000 <= v < 1e16:  # type: ignore[operator]  # repr is digits.digits here
            s = repr(v)
            dot = s.find(".")
            return f"{(s[0] + '.' + s[1:dot] + s[dot + 1:]).rstrip('0.')}e+{dot - 1:02d}"
    elif v is True:
        return "1.0"
    elif v is False:
        return "0.0"
    return floatToGoString(finite(v))


def esc(v: str) -> str:
    # prometheus_client.openmetrics.exposition._escape(v, ALLOWUTF8, ...), used by both
    # generate_latest functions for label values; str.replace returns v itself when unchanged.
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


Rows = list[tuple[int, Any]]  # (index of the namespace in its block, what read returned)


class FamilyLines:
    """Reads one per-namespace family for a run of namespaces and writes its sample lines."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.read = family.read
        self.of_values = family.source == "values"
        own = family.own_labels
        self.prefix = family.sample_name + "{"
        self.template = ""
        if own:
            # Labels print sorted by name, as prometheus-client prints them. The namespace pair
            # (adjacent once sorted) is one preformatted string per namespace; ``arrange`` puts
            # (own label values..., namespace pair, value) in the template's order.
            parts, order = [], []
            for name in sorted(family.labels):
                if name == "namespace_id":
                    parts.append("%s")
                    order.append(len(own))
                elif name != "namespace_name":
                    parts.append(f'{name}="%s"')
                    order.append(own.index(name))
            self.template = family.sample_name + "{" + ",".join(parts) + "} %s\n"
            self.arrange = itemgetter(*order, len(own) + 1)

    def column(self, states: Sequence[NamespaceState],
               fresh: Sequence[NamespaceValues | None]) -> Rows:
        read = self.read
        if self.of_values:
            return [(i, v) for i, vals in enumerate(fresh)
                    if vals is not None and (v := read(vals)) is not None]
        return [(i, v) for i, st in enumerate(states) if (v := read(st)) is not None]

    def lines(self, rows: Rows, labs: Sequence[str | None]) -> str:
        if not self.template:
            p = self.prefix
            return "".join([f"{p}{labs[i]}}} {format_value(v)}\n" for i, v in rows])
        t, arrange = self.template, self.arrange
        return "".join([t % arrange((*map(esc, lv), labs[i], format_value(v)))
                        for i, pairs in rows for lv, v in pairs])


def _pair(st: NamespaceState) -> str:
    return f'namespace_id="{esc(st.namespace_id)}",namespace_name="{esc(st.namespace_name)}"'


def label_pairs(states: Sequence[NamespaceState], report: Report) -> list[str | None]:
    """The namespace_id/namespace_name pair of each state, preformatted (None: unprintable,
    and the namespace is left out)."""
    try:
        return [_pair(st) for st in states]
    except Exception:  # noqa: S110  (found and reported one by one below)
        pass
    out: list[str | None] = []
    for st in states:
        try:
            out.append(_pair(st))
        except Exception as e:
            report("labels", str(st.identifier), e)
            out.append(None)
    return out


def family_text(lines: FamilyLines, states: Sequence[NamespaceState],
                fresh: Sequence[NamespaceValues | None], labs: Sequence[str | None],
                report: Report) -> str:
    """The sample lines of one family for a block: all at once, or if that fails, one
    namespace at a time, leaving out (and reporting) what cannot be rendered."""
    if None not in labs:
        try:
            return lines.lines(lines.column(states, fresh), labs)
        except Exception:  # noqa: S110  (isolated and reported below)
            pass
    out = []
    for i, st in enumerate(states):
        if labs[i] is None:
            continue  # reported when the labels failed
        try:
            out.append(lines.lines(lines.column((st,), (fresh[i],)), (labs[i],)))
        except Exception as e:
            report(lines.family.sample_name, st.identifier, e)
    return "".join(out)
