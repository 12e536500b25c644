"""The reference renderer: prometheus-client's ``generate_latest`` over the catalogue.

It is the definition of what the exposition must be: tests hold the fast renderer
(exporter.render.fast) to it byte for byte, and bench/ compares costs with it. It follows the
custom-collector pattern (nothing mutable at module level; vanished namespaces vanish). The
exporter never runs it, so it lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.registry import Collector

from exporter.render.families import EXPORTER_FAMILIES, NAMESPACE_FAMILIES, Family
from exporter.render.gzip import GZIP_HEADER, Rendered, piece
from exporter.state.snapshot import Snapshot

EOF_LINE = b"# EOF\n"


def _empty(family: Family) -> Metric:
    cls = CounterMetricFamily if family.type == "counter" else GaugeMetricFamily
    return cls(family.name, family.help, labels=list(family.labels))


def collect_snapshot(snap: Snapshot, now: float) -> Iterator[Metric]:
    """The families of ``snap`` at Unix time ``now``, in exposition order."""
    for family in NAMESPACE_FAMILIES:
        m = _empty(family)
        for st in snap.namespaces:
            source = st.fresh_values(now, snap.stale_after) if family.source == "values" else st
            value = None if source is None else family.read(source)
            if value is None:
                continue
            labels = [st.namespace_id, st.namespace_name]
            if family.own_labels:
                for own, v in value:
                    m.add_metric([*labels, *own], float(v))
            else:
                m.add_metric(labels, float(value))
        yield m
    for family in EXPORTER_FAMILIES:
        value = family.read(snap)
        if value is None:
            continue
        m = _empty(family)
        for own, v in (value if family.own_labels else [((), value)]):
            m.add_metric(list(own), float(v))
        yield m


class SnapshotCollector(Collector):
    """Yields the families of whatever snapshot ``source`` returns at collect time."""

    def __init__(self, source: Callable[[], Snapshot], clock: Callable[[], float] = time.time):
        self._source = source
        self._clock = clock

    def describe(self) -> list[Metric]:
        # Registering must not render: an empty describe() keeps register() cheap.
        return []

    def collect(self) -> Iterator[Metric]:
        return collect_snapshot(self._source(), self._clock())


class _Families:
    def __init__(self, families: Iterator[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def render_generic(snap: Snapshot, now: float) -> tuple[bytes, bytes]:
    """(text, OpenMetrics with # EOF) of ``snap``, formatted by prometheus-client."""
    fams = _Families(collect_snapshot(snap, now))
    return generate_latest(fams), om_generate_latest(fams)  # type: ignore[arg-type]


def next_expiry(snap: Snapshot, now: float) -> float | None:
    """When the first value of ``snap`` fresh at ``now`` goes stale (None: none will)."""
    times = [t for st in snap.namespaces
             if (t := st.fresh_until(snap.stale_after)) is not None and now <= t]
    return min(times, default=None)


def render_reference(snap: Snapshot, now: float) -> Rendered:
    """A ``Rendered`` made by prometheus-client (the pipeline before the fast renderer)."""
    t0 = time.perf_counter()
    text, om = render_generic(snap, now)
    return Rendered((piece(text),), (piece(om[: -len(EOF_LINE)]),), time.perf_counter() - t0,
                    next_expiry(snap, now))


def whole(r: Rendered, openmetrics: bool = False, gz: bool = False) -> bytes:
    """One variant of ``r`` without live metrics, as one bytes object."""
    return bytes(r.body(openmetrics, gz))


def text_size(r: Rendered) -> int:
    """Bytes of the plain text body without live metrics."""
    return sum(p.size for p in r.text_pieces)


def gzip_size(r: Rendered) -> int:
    """Bytes of the text variant's gzip body without live metrics."""
    return len(GZIP_HEADER) + sum(len(p.z) for p in r.text_pieces) + 2 + 8
