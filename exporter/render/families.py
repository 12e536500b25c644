"""Snapshot -> exposition.

Two renderers produce the same bytes from one immutable ``Snapshot``:

- the reference, ``render_generic``: ``SnapshotCollector`` yields prometheus-client metric
  families (the custom-collector pattern: nothing mutable at module level, vanished namespaces
  vanish) and prometheus-client's ``generate_latest`` formats them. It is the definition of
  what the output must be, and is kept for tests and comparison.
- the fast one, ``FastRenderer``: hand-formatted lines, byte-identical to the reference (the
  golden file and tests/test_render_fast.py hold it to that), about 10x cheaper, and
  incremental: namespaces are rendered in blocks, and a block whose NamespaceState objects are
  the very same ones as at the previous render (states are immutable, so identity means "no
  change") reuses its bytes and its compressed bytes.

A ``Rendered`` keeps each piece of the body twice, plain and as raw deflate ending on a byte
boundary (``Z_SYNC_FLUSH``). Raw deflate pieces concatenate into one valid deflate stream, so a
gzip body is a header, the cached pieces, the live process metrics compressed at scrape time,
and a trailer: one ordinary gzip member, without recompressing what did not change. Text and
OpenMetrics share every piece but a few family headers and the tail.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from typing import Any, NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporter.mixpeek.models import NamespaceValues
from exporter.state.store import NamespaceState, Snapshot

LABELS = ["namespace_id", "namespace_name"]
INFO_LABELS = ["namespace_id", "namespace_name", "compute_tier", "cluster_id", "namespace_type",
               "mode"]
_POLLED = "Polled from the Mixpeek API every poll interval, not at scrape time."

# (metric suffix, help, NamespaceValues attribute). Order is the exposition order.
VALUE_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("documents", "Documents in the namespace (document_count).", "documents"),
    ("buckets", "Buckets in the namespace (bucket_count).", "buckets"),
    ("collections", "Collections in the namespace (collection_count).", "collections"),
    ("objects", "Objects across all buckets of the namespace (object_count).", "objects"),
    ("max_concurrent_jobs", "infrastructure.max_concurrent_jobs of the namespace.",
     "max_concurrent_jobs"),
    ("autoscaling_enabled", "1 if infrastructure.autoscaling_enabled is true, else 0.",
     "autoscaling_enabled"),
    ("auto_create_indexes_enabled", "1 if auto_create_indexes is true, else 0.",
     "auto_create_indexes_enabled"),
    ("feature_extractors", "Feature extractors configured for the namespace.",
     "feature_extractors"),
    ("payload_indexes", "Payload indexes configured for the namespace.", "payload_indexes"),
    ("created_timestamp_seconds", "When the namespace was created (created_at), Unix time.",
     "created_timestamp"),
    ("updated_timestamp_seconds", "When the namespace was last updated (updated_at), Unix time.",
     "updated_timestamp"),
)


def _num(v: int | float | bool | None) -> float | None:
    if v is None:
        return None
    return float(v)


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


def collect_snapshot(snap: Snapshot, now: float) -> Iterator[Metric]:
    yield from namespace_families(snap, now)
    yield from global_families(snap)


def namespace_families(snap: Snapshot, now: float) -> list[Metric]:
    """The per-namespace families, in exposition order (the fast renderer's FAMILY order)."""
    p = "mixpeek_namespace_"
    fams = {suffix: GaugeMetricFamily(p + suffix, f"{help_} {_POLLED}", labels=LABELS)
            for suffix, help_, _ in VALUE_GAUGES}
    info = GaugeMetricFamily(
        p + "info", f"Namespace metadata as labels; always 1. {_POLLED}", labels=INFO_LABELS)
    up = GaugeMetricFamily(
        p + "up", "1 if the last poll of the namespace succeeded, 0 if it failed.", labels=LABELS)
    last_ok = GaugeMetricFamily(
        p + "last_success_timestamp_seconds",
        "Unix time of the last successful poll of the namespace.", labels=LABELS)
    duration = GaugeMetricFamily(
        p + "poll_duration_seconds",
        "Wall time of the last poll of the namespace, retries included.", labels=LABELS)
    errors = CounterMetricFamily(
        p + "poll_errors", "Failed polls of the namespace by reason.", labels=[*LABELS, "reason"])

    for st in snap.namespaces:
        lv = [st.namespace_id, st.namespace_name]
        vals: NamespaceValues | None = st.fresh_values(now, snap.stale_after)
        if vals is not None:
            for suffix, _, attr in VALUE_GAUGES:
                v = _num(getattr(vals, attr))
                if v is not None:  # a null from the API is absent, never 0
                    fams[suffix].add_metric(lv, v)
            info.add_metric([*lv, vals.compute_tier, vals.cluster_id, vals.namespace_type,
                             vals.mode], 1.0)
        if st.up is not None:
            up.add_metric(lv, 1.0 if st.up else 0.0)
            if st.poll_duration is not None:
                duration.add_metric(lv, st.poll_duration)
        if st.last_success is not None:
            last_ok.add_metric(lv, st.last_success)
        for reason, count in st.errors:
            errors.add_metric([*lv, reason], float(count))

    return [*fams.values(), info, up, last_ok, duration, errors]


# (ExporterValues attribute, family, help), published when the value is set.
EXPORTER_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("discovery_last_success", "mixpeek_exporter_discovery_last_success_timestamp_seconds",
     "Unix time of the last successful namespace listing."),
    ("discovery_up", "mixpeek_exporter_discovery_up",
     "1 if the last namespace listing (discovery) succeeded, else 0."),
    ("namespaces", "mixpeek_exporter_namespaces",
     "Namespaces this exporter polls (configured, discovered, shard)."),
    ("poll_interval", "mixpeek_exporter_poll_interval_seconds",
     "Effective poll interval: interval_seconds, or longer when max_requests_per_minute "
     "cannot poll every namespace within it."),
    ("shard_ordinal", "mixpeek_exporter_shard_ordinal", "Shard this exporter polls (--shard)."),
    ("stats_batch_available", "mixpeek_exporter_stats_batch_available",
     "1 if the API offers POST /v1/namespaces/stats/batch, 0 if it answered 404/405 and "
     "counts come from Get Namespace."),
    ("total_shards", "mixpeek_exporter_total_shards", "Number of shards (--total-shards)."),
)


def global_families(snap: Snapshot) -> Iterator[Metric]:
    """Exporter-wide families: a handful of series whatever the namespace count."""
    req = CounterMetricFamily("mixpeek_api_requests",
                              "Requests sent to the Mixpeek API by HTTP status, or by transport "
                              "failure (timeout, connection). Retries count.", labels=["status"])
    for status, count in snap.api_requests:
        req.add_metric([status], float(count))
    yield req
    if snap.rate_limit_remaining is not None:
        yield GaugeMetricFamily(
            "mixpeek_api_rate_limit_remaining",
            "X-RateLimit-Remaining from the last Mixpeek API response that carried it.",
            value=snap.rate_limit_remaining)
    build = GaugeMetricFamily("mixpeek_exporter_build_info",
                              "Version of the exporter and of Python; always 1.",
                              labels=["version", "python_version"])
    build.add_metric(list(snap.version_labels), 1.0)
    yield build
    if snap.cycle_duration is not None:
        yield GaugeMetricFamily(
            "mixpeek_exporter_poll_cycle_duration_seconds",
            "Wall time of the last complete poll cycle over all namespaces.",
            value=snap.cycle_duration)
    yield GaugeMetricFamily(
        "mixpeek_exporter_config_last_reload_successful",
        "1 if the last configuration load succeeded, 0 if it was refused.",
        value=1.0 if snap.reload_ok else 0.0)
    if snap.reload_success_time is not None:
        yield GaugeMetricFamily(
            "mixpeek_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=snap.reload_success_time)
    ex = snap.exporter
    for attr, name, help_ in EXPORTER_GAUGES:
        value = getattr(ex, attr)
        if value is not None:
            yield GaugeMetricFamily(name, help_, value=float(value))


class _Families:
    """A ready list of families, in the shape generate_latest wants (anything with collect)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


_EOF = b"# EOF\n"


def _strip_eof(om: bytes) -> bytes:
    # OpenMetrics ends with "# EOF"; it is left off so live metrics can follow.
    return om[: -len(_EOF)] if om.endswith(_EOF) else om


def prometheus_client_text(families: Iterable[Metric]) -> tuple[bytes, bytes]:
    """(text, OpenMetrics without # EOF) of ``families``, formatted by prometheus-client."""
    fams = _Families(families)
    return generate_latest(fams), _strip_eof(om_generate_latest(fams))  # type: ignore[arg-type]


# -- rendered output --------------------------------------------------------------------------

GZIP_LEVEL = 6  # level 9 costs ~1.8x the time for <1% fewer bytes on this data
LIVE_GZIP_LEVEL = 1  # the live tail is ~2 KB and compressed on every scrape
# gzip member header (RFC 1952): deflate, no flags, mtime 0, no extra flags, OS unknown.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_EMPTY_FINAL_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman deflate block


def deflate_piece(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """Raw deflate of ``data`` that ends on a byte boundary and is not final, so pieces
    compressed separately concatenate into one valid deflate stream (the pigz technique)."""
    if not data:
        return b""
    c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


def deflate_final(data: bytes) -> bytes:
    """Raw deflate of ``data`` ending the stream (the last piece of a gzip body)."""
    if not data:
        return _EMPTY_FINAL_BLOCK
    c = zlib.compressobj(LIVE_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


_ZEROS = bytes(1 << 20)  # calloc'd and only ever read: costs no resident memory


def _crc_of_zeros(n: int, crc: int) -> int:
    while n > len(_ZEROS):
        crc = zlib.crc32(_ZEROS, crc)
        n -= len(_ZEROS)
    return zlib.crc32(memoryview(_ZEROS)[:n], crc)


class Piece(NamedTuple):
    """A run of exposition bytes kept compressed only (plain bytes would triple the memory).

    ``key`` = crc32(data) ^ crc32(len(data) zero bytes): CRC-32 is affine, so the CRC of
    A+data is ``key ^ crc32(len(data) zero bytes, crc(A))`` -- the gzip trailer of any
    sequence of pieces, computed without their plain bytes.
    """

    z: bytes
    size: int
    key: int


def piece(data: bytes, level: int = GZIP_LEVEL) -> Piece:
    return Piece(deflate_piece(data, level), len(data),
                 zlib.crc32(data) ^ _crc_of_zeros(len(data), 0))


class Rendered:
    """One rendered snapshot, as compressed pieces, text and OpenMetrics (which share all but
    a few family headers and the tail).

    Immutable once built, so scrapes read it without a lock. The CRC-32 of each variant (for
    the gzip trailer) is computed the first time that variant is served, or ahead of time by
    ``prepare``. A plain (not gzip) body is inflated per request: Prometheus always asks for
    gzip, and keeping the plain bytes would cost ~6x the memory of the compressed ones.
    """

    __slots__ = ("_crc", "next_expiry", "om_pieces", "seconds", "text_pieces")

    def __init__(self, text_pieces: tuple[Piece, ...], om_pieces: tuple[Piece, ...],
                 seconds: float, next_expiry: float | None = None) -> None:
        self.text_pieces, self.om_pieces = text_pieces, om_pieces
        self.seconds = seconds
        # Earliest time a value in this render goes stale (None: nothing will); the
        # re-render is scheduled for then.
        self.next_expiry = next_expiry
        self._crc: dict[bool, tuple[int, int]] = {}

    def _pieces(self, openmetrics: bool) -> tuple[Piece, ...]:
        return self.om_pieces if openmetrics else self.text_pieces

    def prepare(self, openmetrics: bool) -> tuple[int, int]:
        """(CRC-32, length) of the plain body of one variant; cached."""
        got = self._crc.get(openmetrics)
        if got is None:
            crc, size = 0, 0
            for p in self._pieces(openmetrics):
                if p.size:
                    crc = p.key ^ _crc_of_zeros(p.size, crc)
                    size += p.size
            got = self._crc[openmetrics] = (crc, size)  # a racing duplicate is harmless
        return got

    def body(self, openmetrics: bool, gz: bool, tail: bytes = b"",
             tail_z: bytes | None = None) -> bytes | bytearray:
        """The body of one variant with ``tail`` (live metrics) appended; ``tail_z`` is
        ``deflate_final(tail)`` if the caller has it already."""
        pieces = self._pieces(openmetrics)
        if not gz:
            # Inflated piece by piece into one buffer of the known size: the body exists
            # once in memory, not twice (a list of pieces, then their join).
            _, size = self.prepare(openmetrics)
            out = bytearray(size + len(tail))
            view = memoryview(out)
            at = 0
            d = zlib.decompressobj(-zlib.MAX_WBITS)
            for p in pieces:
                if p.size:
                    view[at:at + p.size] = d.decompress(p.z)
                    at += p.size
            view[at:] = tail
            view.release()
            return out
        crc, size = self.prepare(openmetrics)
        trailer = struct.pack("<II", zlib.crc32(tail, crc), (size + len(tail)) & 0xFFFFFFFF)
        if tail_z is None:
            tail_z = deflate_final(tail)
        return b"".join([GZIP_HEADER, *(p.z for p in pieces), tail_z, trailer])

    # Whole bodies without a tail, for --once, tests and benchmarks (built on each access).
    @property
    def text(self) -> bytes:
        return bytes(self.body(False, False))

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics without the final ``# EOF`` (the live tail carries it)."""
        return bytes(self.body(True, False))

    @property
    def text_gz(self) -> bytes:
        return bytes(self.body(False, True))

    @property
    def openmetrics_gz(self) -> bytes:
        return bytes(self.body(True, True))

    @property
    def text_size(self) -> int:
        return sum(p.size for p in self.text_pieces)

    @property
    def gzip_size(self) -> int:
        """Bytes of the text variant's gzip body without live metrics."""
        return len(GZIP_HEADER) + sum(len(p.z) for p in self.text_pieces) + 2 + 8


def _next_expiry(snap: Snapshot, now: float) -> float | None:
    soonest = None
    for st in snap.namespaces:
        if st.values is not None and st.last_success is not None:
            t = st.last_success + snap.stale_after
            if t >= now and (soonest is None or t < soonest):
                soonest = t
    return soonest


def render_generic(snap: Snapshot, now: float) -> tuple[bytes, bytes]:
    """(text, OpenMetrics with # EOF) through prometheus-client: the reference for format
    correctness, and what the fast renderer is tested against."""
    fams = _Families(collect_snapshot(snap, now))
    return generate_latest(fams), om_generate_latest(fams)  # type: ignore[arg-type]


def render_reference(snap: Snapshot, now: float) -> Rendered:
    """A ``Rendered`` made by prometheus-client (the pre-fast-renderer pipeline)."""
    t0 = time.perf_counter()
    text, om = render_generic(snap, now)
    return Rendered((piece(text),), (piece(_strip_eof(om)),), time.perf_counter() - t0,
                    _next_expiry(snap, now))


# -- the fast renderer --------------------------------------------------------------------------

_PREFIX = "mixpeek_namespace_"
_VALUE_PREFIXES = tuple(f"{_PREFIX}{suffix}{{" for suffix, _, _ in VALUE_GAUGES)
_VALUE_ATTRS = tuple(attr for _, _, attr in VALUE_GAUGES)
_get_values = attrgetter(*_VALUE_ATTRS)
# Family indices after the value gauges, in exposition order.
_INFO, _UP, _LAST, _DURATION, _ERRORS = range(len(VALUE_GAUGES), len(VALUE_GAUGES) + 5)
N_FAMILIES = _ERRORS + 1
BLOCK_SIZE = 512  # namespaces per block: the unit of reuse (~50 KB of text per family chunk)


def _esc(v: str) -> str:
    # prometheus_client.openmetrics.exposition._escape(v, ALLOWUTF8, ...), used by both
    # generate_latest functions for label values; str.replace returns v itself when unchanged.
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float | int | bool) -> str:
    """floatToGoString(v), inlined for the value kinds a namespace has (about 4x faster).

    Same steps as prometheus_client.utils.floatToGoString; anything unusual (inf, nan, huge
    ints, bools handled by the caller's types) goes to the original.
    """
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
    return floatToGoString(v)


def _family_headers() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """HELP/TYPE lines of each per-namespace family, formatted by prometheus-client itself
    (so help escaping and the counter's _total naming are never re-implemented here)."""
    empty = Snapshot(version=0, namespaces=(), stale_after=1.0)
    text, om = [], []
    for fam in namespace_families(empty, 0.0):
        t, o = prometheus_client_text([fam])
        text.append(t)
        om.append(o)
    return tuple(text), tuple(om)


Column = list[tuple[Any, ...]]


def _fresh(states: tuple[NamespaceState, ...], now: float, stale_after: float
           ) -> tuple[list[NamespaceValues | None], float]:
    """Per state, the values it prints (None: none, or stale) and until when that holds.
    Mirrors NamespaceState.fresh_values."""
    out: list[NamespaceValues | None] = []
    valid_until = float("inf")
    for st in states:
        vals, last = st.values, st.last_success
        if vals is not None and last is not None and now - last <= stale_after:
            out.append(vals)
            if last + stale_after < valid_until:
                valid_until = last + stale_after
        else:
            out.append(None)
    return out, valid_until


def _column(f: int, states: tuple[NamespaceState, ...], fresh: list[NamespaceValues | None]
            ) -> Column:
    """What family ``f`` prints for ``states``, as (state index, inputs...) rows. Mirrors
    namespace_families(); tests/test_render_fast.py holds the two equal."""
    if f < len(VALUE_GAUGES):
        attr = _VALUE_ATTRS[f]
        return [(i, v) for i, vals in enumerate(fresh)
                if vals is not None and (v := getattr(vals, attr)) is not None]
    if f == _INFO:
        return [(i, v.cluster_id, v.compute_tier, v.mode, v.namespace_type)
                for i, v in enumerate(fresh) if v is not None]
    if f == _UP:
        return [(i, st.up) for i, st in enumerate(states) if st.up is not None]
    if f == _LAST:
        return [(i, st.last_success) for i, st in enumerate(states)
                if st.last_success is not None]
    if f == _DURATION:
        return [(i, st.poll_duration) for i, st in enumerate(states)
                if st.up is not None and st.poll_duration is not None]
    return [(i, st.errors) for i, st in enumerate(states) if st.errors]


def _changed(old: tuple[NamespaceState, ...], old_fresh: list[NamespaceValues | None],
             new: tuple[NamespaceState, ...], new_fresh: list[NamespaceValues | None]
             ) -> list[bool]:
    """Which families could print differently for ``new`` than for ``old`` (same labels, in
    the same order). Conservative: True may still print the same bytes, False never differs.
    (== treats -0.0 as 0.0, which print differently; no input here is ever -0.0.)"""
    changed = [False] * N_FAMILIES
    n_values = len(VALUE_GAUGES)
    for a, b, va, vb in zip(old, new, old_fresh, new_fresh, strict=True):
        if va is not vb:  # after a poll: new objects, mostly equal
            if va is None or vb is None:
                changed[: _INFO + 1] = [True] * (_INFO + 1)
            else:
                ta, tb = _get_values(va), _get_values(vb)
                if ta != tb:
                    for f in range(n_values):
                        if ta[f] != tb[f]:
                            changed[f] = True
                if (va.cluster_id != vb.cluster_id or va.compute_tier != vb.compute_tier
                        or va.mode != vb.mode or va.namespace_type != vb.namespace_type):
                    changed[_INFO] = True
        if a.up != b.up:
            changed[_UP] = True
            if (a.up is None) != (b.up is None):
                changed[_DURATION] = True
        if a.last_success != b.last_success:
            changed[_LAST] = True
        if a.poll_duration != b.poll_duration:
            changed[_DURATION] = True
        if a.errors != b.errors:
            changed[_ERRORS] = True
    return changed


def _format(f: int, col: Column, labs: list[str]) -> bytes:
    """The lines of family ``f``; ``labs[i]`` is state i's namespace_id/namespace_name pair."""
    if f < len(VALUE_GAUGES):
        prefix = _VALUE_PREFIXES[f]
        lines = [f"{prefix}{labs[i]}}} {_fmt(v)}\n" for i, v in col]
    elif f == _INFO:
        lines = [f'{_PREFIX}info{{cluster_id="{_esc(cluster)}",compute_tier="{_esc(tier)}",'
                 f'mode="{_esc(mode)}",{labs[i]},namespace_type="{_esc(ns_type)}"}} 1.0\n'
                 for i, cluster, tier, mode, ns_type in col]
    elif f == _UP:
        lines = [f"{_PREFIX}up{{{labs[i]}}} {'1.0' if up else '0.0'}\n" for i, up in col]
    elif f == _LAST:
        lines = [f"{_PREFIX}last_success_timestamp_seconds{{{labs[i]}}} {_fmt(v)}\n"
                 for i, v in col]
    elif f == _DURATION:
        lines = [f"{_PREFIX}poll_duration_seconds{{{labs[i]}}} {_fmt(v)}\n" for i, v in col]
    else:
        lines = [f'{_PREFIX}poll_errors_total{{{labs[i]},reason="{_esc(reason)}"}} '
                 f"{_fmt(count)}\n"
                 for i, errors in col for reason, count in errors]
    # "replace": a lone surrogate (JSON allows "\ud800") becomes "?" instead of failing the
    # whole exposition, which is what UTF-8 encoding in generate_latest would do.
    return "".join(lines).encode("utf-8", "replace")


class _Block:
    """Up to BLOCK_SIZE consecutive namespaces, rendered: one compressed piece per family."""

    __slots__ = ("pieces", "rendered_at", "stale_after", "states", "valid_until")

    def __init__(self, states: tuple[NamespaceState, ...], now: float, stale_after: float,
                 previous: _Block | None = None) -> None:
        self.states = states  # keeps the states alive, so their id()s stay unique
        self.rendered_at = now
        self.stale_after = stale_after
        fresh, self.valid_until = _fresh(states, now, stale_after)
        if previous is not None and _same_labels(previous.states, states):
            # After a poll every state is a new object, but most families (counts, metadata)
            # print what they printed before: keep those pieces as they are.
            old_fresh, _ = _fresh(previous.states, previous.rendered_at, previous.stale_after)
            changed = _changed(previous.states, old_fresh, states, fresh)
        else:
            changed = [True] * N_FAMILIES
        labs: list[str] | None = None
        pieces = []
        for f in range(N_FAMILIES):
            if not changed[f] and previous is not None:
                pieces.append(previous.pieces[f])
                continue
            if labs is None:
                labs = [f'namespace_id="{_esc(st.namespace_id)}",'
                        f'namespace_name="{_esc(st.namespace_name)}"' for st in states]
            pieces.append(piece(_format(f, _column(f, states, fresh), labs)))
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
    """Renders snapshots, reusing the blocks of namespaces whose state did not change.

    One instance per ExpositionCache (which serialises renders); a lock guards sharing anyway.
    """

    def __init__(self, block_size: int = BLOCK_SIZE) -> None:
        self.block_size = block_size
        text, om = _family_headers()
        self._headers_text = tuple(piece(h) for h in text)
        self._headers_om = tuple(piece(h) for h in om)
        # (id of each state in the block) -> block. Blocks hold their states, so no id in a
        # key can be reused by another object while the key is in here.
        self._blocks: dict[tuple[int, ...], _Block] = {}
        self._by_position: list[_Block] = []  # the previous render's blocks, in order
        self._tail_key: object = None
        self._tail: tuple[Piece, Piece] = (piece(b""), piece(b""))
        self.blocks_rendered = 0  # for tests and benchmarks: blocks not reused
        self._lock = threading.Lock()

    def __call__(self, snap: Snapshot, now: float) -> Rendered:
        with self._lock:
            return self._render(snap, now)

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
                block = _Block(chunk, now, snap.stale_after,
                               old_at[at] if at < len(old_at) else None)
                self.blocks_rendered += 1
            new[key] = block
            blocks.append(block)
        # Drops the blocks (and states) no longer in the snapshot.
        self._blocks, self._by_position = new, blocks

        tail_text, tail_om = self._render_tail(snap)
        text: list[Piece] = []
        om: list[Piece] = []
        for f in range(N_FAMILIES):
            family = [b.pieces[f] for b in blocks]
            text += (self._headers_text[f], *family)
            om += (self._headers_om[f], *family)
        text.append(tail_text)
        om.append(tail_om)
        expiry = min((b.valid_until for b in blocks), default=float("inf"))
        return Rendered(tuple(text), tuple(om), time.perf_counter() - t0,
                        None if expiry == float("inf") else expiry)

    def _render_tail(self, snap: Snapshot) -> tuple[Piece, Piece]:
        # A few series: formatted by prometheus-client, re-done only when they change.
        key = (snap.api_requests, snap.rate_limit_remaining, snap.version_labels,
               snap.cycle_duration, snap.reload_ok, snap.reload_success_time, snap.exporter)
        if key != self._tail_key:
            text, om = prometheus_client_text(global_families(snap))
            self._tail = (piece(text), piece(om))
            self._tail_key = key
        return self._tail


def render(snap: Snapshot, now: float) -> Rendered:
    """One-off render with the fast renderer (no reuse between calls)."""
    return FastRenderer()(snap, now)
