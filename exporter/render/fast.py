"""Snapshot -> exposition, incrementally, byte-identical to prometheus-client's output.

Sample lines are formatted by hand from the catalogue (exporter.render.families), about 10x
cheaper than prometheus-client's ``generate_latest``; HELP/TYPE lines and the few exporter-wide
series are formatted by prometheus-client itself, so help escaping and counter naming are
never re-implemented here. tests/test_render_fast.py holds the output equal to
``generate_latest`` over the same snapshot.

Namespaces are rendered in blocks: a block whose NamespaceState objects are the very same ones
as at the previous render (states are immutable, so identity means "no change") reuses its
compressed pieces; a block of new states with the same labels re-renders only the families
whose inputs changed.

A value that cannot be rendered (an integer beyond float range, NaN, anything whose reading or
formatting raises) costs its own series, never the exposition: each family of a block is
formatted at once, and if that fails, again one namespace at a time, dropping what fails.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest

from exporter.mixpeek.models import NamespaceValues
from exporter.render.families import EXPORTER_FAMILIES, NAMESPACE_FAMILIES, Family
from exporter.render.gzip import Piece, Rendered, piece
from exporter.render.lines import FamilyLines, Report, family_text, finite, label_pairs
from exporter.state.snapshot import NamespaceState, Snapshot

log = logging.getLogger(__name__)

BLOCK_SIZE = 512  # namespaces per block: the unit of reuse (~50 KB of text per family chunk)
_EOF = b"# EOF\n"
_REPORTED_MAX = 10_000  # distinct dropped series remembered, so each is logged once


def _client_family(family: Family, samples: Sequence[tuple[Sequence[str], Any]]) -> Metric:
    """``family`` with ``samples`` ((own label values, value) pairs) as prometheus-client's
    object; Unrenderable if a value is not a finite number."""
    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
    out = cls(family.name, family.help, labels=list(family.labels))
    for label_values, value in samples:
        out.add_metric(list(label_values), finite(value))
    return out


class _One:
    """One family in the shape generate_latest wants (anything with collect())."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> list[Metric]:
        return [self._family]


def _client_text(family: Metric) -> tuple[bytes, bytes]:
    """(text, OpenMetrics without # EOF) of ``family``, formatted by prometheus-client."""
    one = _One(family)
    om = om_generate_latest(one)  # type: ignore[arg-type]
    return generate_latest(one), om[: -len(_EOF)] if om.endswith(_EOF) else om  # type: ignore[arg-type]


def _fresh(states: Sequence[NamespaceState], now: float, stale_after: float, report: Report
           ) -> tuple[list[NamespaceValues | None], float]:
    """Per state, the values it prints (None: none, or stale) and until when all that holds,
    by NamespaceState.fresh_until (the one staleness rule)."""
    out: list[NamespaceValues | None] = []
    valid_until = math.inf
    for st in states:
        try:
            until = st.fresh_until(stale_after)
            fresh = until is not None and now <= until
        except Exception as e:  # e.g. a last_success that is not a number: no values shown
            report("values", str(st.identifier), e)
            until, fresh = None, False
        if fresh:
            out.append(st.values)
            if until < valid_until:  # type: ignore[operator]
                valid_until = until  # type: ignore[assignment]
        else:
            out.append(None)
    return out, valid_until


# Every field of a NamespaceValues, read in C: equal tuples mean no values family can change.
_all_values = attrgetter(*(f.name for f in fields(NamespaceValues)))


def _changed(lines: Sequence[FamilyLines], old: Sequence[NamespaceState],
             old_fresh: Sequence[NamespaceValues | None], new: Sequence[NamespaceState],
             new_fresh: Sequence[NamespaceValues | None]) -> list[bool]:
    """Which families could print differently for ``new`` than for ``old`` (same labels, in
    the same order). Conservative: True may still print the same bytes, False never differs.
    (== treats -0.0 as 0.0, which print differently; no input here is ever -0.0.)"""
    changed = [False] * len(lines)
    # Families not known to have changed yet, with their readers; a family leaves its list
    # at its first difference, so the common case (a poll changed a few fields of every
    # namespace) costs few reads per namespace.
    of_values = [(f, x.read) for f, x in enumerate(lines) if x.of_values]
    of_state = [(f, x.read) for f, x in enumerate(lines) if not x.of_values]
    try:
        for a, b, va, vb in zip(old, new, old_fresh, new_fresh, strict=True):
            # After a poll every state and values object is new, and most values are equal.
            if of_values and va is not vb and (
                    va is None or vb is None or _all_values(va) != _all_values(vb)):
                for f, read in of_values:
                    if va is None or vb is None or read(va) != read(vb):
                        changed[f] = True
                of_values = [x for x in of_values if not changed[x[0]]]
            if of_state and a is not b:
                diff = False
                for f, read in of_state:
                    if read(a) != read(b):
                        changed[f] = diff = True
                if diff:
                    of_state = [x for x in of_state if not changed[x[0]]]
    except Exception:
        return [True] * len(lines)  # the render itself will isolate what fails
    return changed


class _Block:
    """Up to BLOCK_SIZE consecutive namespaces, rendered: one compressed piece per family."""

    __slots__ = ("fresh", "pieces", "rendered_at", "stale_after", "states", "valid_until")

    def __init__(self, lines: Sequence[FamilyLines], states: tuple[NamespaceState, ...], now: float,
                 stale_after: float, report: Report, previous: _Block | None = None) -> None:
        self.states = states  # keeps the states alive, so their id()s stay unique
        self.rendered_at = now
        self.stale_after = stale_after
        fresh, self.valid_until = _fresh(states, now, stale_after, report)
        self.fresh = fresh  # what each state printed, for the next render's diff
        if previous is not None and _same_labels(previous.states, states):
            # After a poll every state is a new object, but most families (counts, metadata)
            # print what they printed before: keep those pieces as they are.
            changed = _changed(lines, previous.states, previous.fresh, states, fresh)
        else:
            changed = [True] * len(lines)
        labs: list[str | None] | None = None
        pieces = []
        for f, family_lines in enumerate(lines):
            if not changed[f] and previous is not None:
                pieces.append(previous.pieces[f])
                continue
            if labs is None:
                labs = label_pairs(states, report)
            text = family_text(family_lines, states, fresh, labs, report)
            # "replace": a lone surrogate (JSON allows "\ud800") becomes "?" instead of
            # failing the family, which is what UTF-8 encoding in generate_latest would do.
            pieces.append(piece(text.encode("utf-8", "replace")))
        self.pieces = tuple(pieces)

    def reusable(self, now: float, stale_after: float) -> bool:
        # Same states (the cache key) and no value has crossed its staleness deadline; a
        # clock that went backwards could make a stale value fresh again, so re-render then.
        return (stale_after == self.stale_after and self.rendered_at <= now
                and now <= self.valid_until)


def _same_labels(a: tuple[NamespaceState, ...], b: tuple[NamespaceState, ...]) -> bool:
    return (len(a) == len(b)
            and [st.namespace_id for st in a] == [st.namespace_id for st in b]
            and [st.namespace_name for st in a] == [st.namespace_name for st in b])


class FastRenderer:
    """Renders snapshots (``renderer(snapshot, now) -> Rendered``), reusing the blocks of
    namespaces whose state did not change. ``now`` is Unix seconds, for staleness.

    One instance per ExpositionCache (which serialises renders); a lock guards sharing anyway.
    The catalogue can be replaced (tests do, to render families that fail).
    """

    def __init__(self, block_size: int = BLOCK_SIZE,
                 namespace_families: Sequence[Family] = NAMESPACE_FAMILIES,
                 exporter_families: Sequence[Family] = EXPORTER_FAMILIES) -> None:
        self.block_size = block_size
        self._lines = tuple(FamilyLines(f) for f in namespace_families)
        self._exporter_families = tuple(exporter_families)
        headers = [_client_text(_client_family(f, ())) for f in namespace_families]
        self._headers_text = tuple(piece(text) for text, _ in headers)
        self._headers_om = tuple(piece(om) for _, om in headers)
        # (id of each state in the block) -> block. Blocks hold their states, so no id in a
        # key can be reused by another object while the key is in here.
        self._blocks: dict[tuple[int, ...], _Block] = {}
        self._by_position: list[_Block] = []  # the previous render's blocks, in order
        self._tail_key: object = None
        self._tail: tuple[Piece, Piece] = (piece(b""), piece(b""))
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot, now: float) -> Rendered:
        with self._lock:
            return self._render(snap, now)

    def _report(self, what: str, where: str, error: BaseException) -> None:
        """Log a left-out series once (per family and namespace), not on every render."""
        key = (what, where)
        if key in self._reported:
            return
        if len(self._reported) >= _REPORTED_MAX:
            self._reported.clear()
        self._reported.add(key)
        log.warning("a value cannot be rendered; its series is left out of /metrics",
                    extra={"fields": {"family": what, "namespace": where,
                                      "error": f"{type(error).__name__}: {error}"[:200]}})

    def _render(self, snap: Snapshot, now: float) -> Rendered:
        t0 = time.perf_counter()
        states = snap.namespaces
        size = self.block_size
        old, new = self._blocks, {}
        old_at = self._by_position
        blocks: list[_Block] = []
        for i in range(0, len(states), size):
            chunk = states[i:i + size]
            key = tuple(map(id, chunk))
            block = old.get(key)
            if block is None or not block.reusable(now, snap.stale_after):
                at = i // size
                block = _Block(self._lines, chunk, now, snap.stale_after, self._report,
                               old_at[at] if at < len(old_at) else None)
            new[key] = block
            blocks.append(block)
        # Drops the blocks (and states) no longer in the snapshot.
        self._blocks, self._by_position = new, blocks

        tail_text, tail_om = self._render_tail(snap)
        text: list[Piece] = []
        om: list[Piece] = []
        for f in range(len(self._lines)):
            family = [b.pieces[f] for b in blocks]
            text += (self._headers_text[f], *family)
            om += (self._headers_om[f], *family)
        text.append(tail_text)
        om.append(tail_om)
        expiry = min((b.valid_until for b in blocks), default=math.inf)
        return Rendered(tuple(text), tuple(om), time.perf_counter() - t0,
                        None if expiry == math.inf else expiry)

    def _render_tail(self, snap: Snapshot) -> tuple[Piece, Piece]:
        # A few series: formatted by prometheus-client, re-done only when they change.
        reads: list[Any] = []
        for family in self._exporter_families:
            try:
                reads.append(family.read(snap))
            except Exception as e:
                self._report(family.sample_name, "exporter", e)
                reads.append(None)
        if reads == self._tail_key:
            return self._tail
        text, om = [], []
        for family, value in zip(self._exporter_families, reads, strict=True):
            if value is None:
                continue
            try:
                t, o = _client_text(
                    _client_family(family, value if family.own_labels else (((), value),)))
            except Exception as e:
                self._report(family.sample_name, "exporter", e)
                continue
            text.append(t)
            om.append(o)
        self._tail = (piece(b"".join(text)), piece(b"".join(om)))
        self._tail_key = reads
        return self._tail
