"""The fast renderer against prometheus-client, which stays the definition of the format.

Every test renders the same snapshot both ways and requires the same bytes, and the same
families through both of prometheus-client's parsers: awkward label values (quotes,
backslashes, newlines, unicode, empty), nulls, 404s, staleness, and renders that reuse blocks
from earlier renders.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
from prometheus_client.utils import floatToGoString

from exporter.mixpeek.models import NamespaceValues
from exporter.mixpeek.result import PollResult
from exporter.render.families import (
    FastRenderer,
    Rendered,
    _fmt,
    render,
    render_generic,
    render_reference,
)
from exporter.state.store import ExporterValues, NamespaceState, Snapshot, Store
from tests.test_metrics import NOW, build_store, golden_snapshot

# Label values as the API could send them; lone surrogates are tested apart (prometheus-client
# cannot encode them at all).
LABEL = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", '"', "\\", "\n", '\\"', "a\\nb", "\\\\n", "ünï©ødé ✓", "\u2028", "{}=,", "x" * 40])
COUNT = st.none() | st.integers(0, 10**6 + 5) | st.integers(0, 2**70)
TIMESTAMP = st.none() | st.floats(0, 4e9) | st.sampled_from([0.0, 1e6, 999_999.5, 1.7e9])
DURATION = st.none() | st.floats(0, 1e7, allow_nan=False)
REASONS = ["timeout", "connection", "not_found", "server_error", 'we"ird\\reason\n']


@st.composite
def values(draw: st.DrawFn) -> NamespaceValues:
    return NamespaceValues(
        namespace_id=draw(LABEL), namespace_name=draw(LABEL),
        documents=draw(COUNT), buckets=draw(COUNT), collections=draw(COUNT),
        objects=draw(COUNT), max_concurrent_jobs=draw(COUNT),
        autoscaling_enabled=draw(st.none() | st.booleans()),
        auto_create_indexes_enabled=draw(st.none() | st.booleans()),
        feature_extractors=draw(COUNT), payload_indexes=draw(COUNT),
        created_timestamp=draw(TIMESTAMP), updated_timestamp=draw(TIMESTAMP),
        compute_tier=draw(LABEL), cluster_id=draw(LABEL), namespace_type=draw(LABEL),
        mode=draw(LABEL))


@st.composite
def states(draw: st.DrawFn) -> NamespaceState:
    up = draw(st.none() | st.booleans())
    vals = draw(st.none() | values())
    errors = draw(st.lists(st.tuples(st.sampled_from(REASONS), st.integers(1, 10**7)),
                           max_size=3, unique_by=lambda e: e[0]))
    return NamespaceState(
        identifier=draw(LABEL), namespace_id=draw(LABEL), namespace_name=draw(LABEL),
        values=vals, up=up,
        last_success=draw(st.none() | st.floats(NOW - 1000, NOW + 10)),
        poll_duration=draw(DURATION), errors=tuple(sorted(errors)))


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    return Snapshot(
        version=1, namespaces=tuple(draw(st.lists(states(), max_size=8))),
        stale_after=draw(st.sampled_from([1.0, 300.0, 600.0])),
        api_requests=tuple(sorted(draw(st.dictionaries(
            st.sampled_from(["200", "404", "429", "timeout"]), st.integers(0, 10**6),
            max_size=3)).items())),
        rate_limit_remaining=draw(st.none() | st.floats(0, 1000)),
        cycle_duration=draw(DURATION),
        exporter=ExporterValues(
            namespaces=draw(st.none() | st.integers(0, 10**6)),
            discovery_up=draw(st.none() | st.booleans()),
            poll_interval=draw(st.none() | st.floats(1, 1e6))),
        version_labels=(draw(LABEL), "3.11.7"))


def families(text: str, openmetrics: bool) -> list[tuple[str, str, str, list[object]]]:
    parse = om_parse if openmetrics else text_parse
    return [(f.name, f.type, f.documentation,
             [(s.name, sorted(s.labels.items()), s.value) for s in f.samples])
            for f in parse(text)]


def assert_same(fast: Rendered, snap: Snapshot, now: float) -> None:
    text, om = render_generic(snap, now)
    assert fast.text == text
    assert fast.openmetrics + b"# EOF\n" == om
    # Same bytes implies the same parse; parsing anyway guards the parsers' view of escaping.
    # (The OpenMetrics parser rejects two namespaces with the same labels, whoever renders.)
    labels = [(s.namespace_id, s.namespace_name) for s in snap.namespaces]
    assert families(fast.text.decode(), False) == families(text.decode(), False)
    if len(set(labels)) == len(labels):
        assert families((fast.openmetrics + b"# EOF\n").decode(), True) == families(
            om.decode(), True)


def test_golden_snapshot_is_byte_identical() -> None:
    snap = golden_snapshot()
    for now in (NOW, NOW + 285, NOW + 291, NOW + 10_000):  # fresh, and stale
        assert_same(render(snap, now), snap, now)
    assert render(snap, NOW).text == render_reference(snap, NOW).text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots(), dt=st.sampled_from([0.0, 0.5, 5.0, 299.0, 301.0, 700.0]))
def test_any_snapshot_renders_like_prometheus_client(snap: Snapshot, dt: float) -> None:
    assert_same(FastRenderer(block_size=3)(snap, NOW + dt), snap, NOW + dt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_incremental_renders_match_a_fresh_render(data: st.DataObject) -> None:
    """One renderer through a series of changes, reusing blocks, always equals the reference."""
    renderer = FastRenderer(block_size=2)
    base = list(data.draw(st.lists(states(), min_size=1, max_size=7)))
    snap = Snapshot(version=0, namespaces=tuple(base), stale_after=300.0)
    now = NOW
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["replace", "time", "insert", "remove", "stale_after",
                                        "same_values", "same_values", "same_values"]))
        ns = list(snap.namespaces)
        if op == "replace" and ns:
            ns[data.draw(st.integers(0, len(ns) - 1))] = data.draw(states())
        elif op == "time":
            now += data.draw(st.sampled_from([0.0, 1.0, 200.0, 400.0, -50.0]))
        elif op == "insert":
            ns.insert(data.draw(st.integers(0, len(ns))), data.draw(states()))
        elif op == "remove" and ns:
            ns.pop(data.draw(st.integers(0, len(ns) - 1)))
        elif op == "stale_after":
            snap = replace(snap, stale_after=data.draw(st.sampled_from([10.0, 300.0, 900.0])))
        elif op == "same_values" and ns:
            # A new state object for the same namespace (what a poll result makes): some
            # fields changed, most not; same labels, so the block is diffed, not redone.
            i = data.draw(st.integers(0, len(ns) - 1))
            old = ns[i]
            field = data.draw(st.sampled_from(["poll_duration", "up", "last_success",
                                               "errors", "values", "value", "none"]))
            if field == "poll_duration":
                ns[i] = replace(old, poll_duration=data.draw(DURATION))
            elif field == "up":
                ns[i] = replace(old, up=data.draw(st.none() | st.booleans()))
            elif field == "last_success":
                ns[i] = replace(old, last_success=data.draw(
                    st.none() | st.floats(NOW - 1000, NOW + 10)))
            elif field == "errors":
                ns[i] = replace(old, errors=(*old.errors, ("zzz_new", 1)))
            elif field == "values":
                ns[i] = replace(old, values=data.draw(st.none() | values()))
            elif field == "value" and old.values is not None:
                attr = data.draw(st.sampled_from(
                    ["documents", "objects", "autoscaling_enabled", "created_timestamp",
                     "compute_tier", "mode"]))
                new = data.draw(LABEL if attr in ("compute_tier", "mode") else COUNT)
                ns[i] = replace(old, values=replace(old.values, **{attr: new}))
            else:
                ns[i] = replace(old)  # equal, but another object
        snap = replace(snap, namespaces=tuple(ns))
        assert_same(renderer(snap, now), snap, now)


def test_unchanged_blocks_are_reused_and_changed_ones_rerendered() -> None:
    store = Store([f"ns_{i:04d}" for i in range(10)], stale_after=300)
    renderer = FastRenderer(block_size=4)  # blocks: 4 + 4 + 2 namespaces
    snap = store.snapshot()
    renderer(snap, NOW)
    assert renderer.blocks_rendered == 3
    renderer(snap, NOW + 1)
    assert renderer.blocks_rendered == 3  # nothing changed: nothing rendered
    store.apply(PollResult("ns_0005", None, "timeout", "t", None, 1, 1.0), now=NOW)
    snap2 = store.snapshot()
    r = renderer(snap2, NOW + 2)
    assert renderer.blocks_rendered == 4  # only the block holding ns_0005
    assert_same(r, snap2, NOW + 2)


def test_stale_values_rerender_their_block_at_the_deadline() -> None:
    store = Store(["ns_a", "ns_b"], stale_after=100)
    store.apply(PollResult("ns_a", values_for("ns_a", 7), None, "", 200, 1, 0.1), now=NOW)
    renderer = FastRenderer()
    snap = store.snapshot()
    r = renderer(snap, NOW + 1)
    assert r.next_expiry == NOW + 100
    assert b"mixpeek_namespace_documents{" in r.text
    r = renderer(snap, NOW + 100.5)  # same snapshot, later: the value went stale
    assert b"mixpeek_namespace_documents{" not in r.text
    assert b'mixpeek_namespace_up{namespace_id="ns_a"' in r.text
    assert r.next_expiry is None
    assert_same(r, snap, NOW + 100.5)


def values_for(ns_id: str, documents: int | None) -> NamespaceValues:
    return NamespaceValues(ns_id, "name_" + ns_id, documents, 1, 2, 3, 4, True, False, 5, 6,
                           1.7e9, 1.75e9, "shared", "", "standard", "")


def test_404_and_null_counts_match_reference() -> None:
    store = build_store()
    store.apply(PollResult("ns_nullcounts", values_for("ns_nullcounts", None), None, "", 200,
                           1, 0.1), now=NOW)
    store.apply(PollResult("spotify_playlists_dev", None, "not_found", "gone", 404, 1, 0.1),
                now=NOW)
    snap = store.snapshot()
    r = render(snap, NOW)
    assert_same(r, snap, NOW)
    assert b'documents{namespace_id="ns_nullcounts"' not in r.text
    assert b'documents{namespace_id="ns_abc"' not in r.text


def test_lone_surrogate_does_not_break_the_exposition() -> None:
    # JSON may carry "\ud800"; prometheus-client cannot encode it and would fail the whole
    # render. The fast renderer prints "?" for it and keeps every other series.
    bad = replace(values_for("ns_x", 3), namespace_name="bad\ud800name")
    snap = Snapshot(version=1, stale_after=300, namespaces=(
        NamespaceState("ns_x", "ns_x", "bad\ud800name", bad, True, NOW, 0.1),))
    with pytest.raises(UnicodeEncodeError):
        render_generic(snap, NOW)
    text = render(snap, NOW).text.decode()
    assert 'namespace_name="bad?name"' in text
    families(text, False)


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize("tail", [b"", b"# live\nprocess_x 1.0\n" * 50])
def test_gzip_body_is_one_member_holding_the_plain_body(openmetrics: bool, tail: bytes) -> None:
    renderer = FastRenderer(block_size=2)
    store = build_store()
    r = renderer(store.snapshot(), NOW)
    body = r.body(openmetrics, True, tail)
    d = zlib.decompressobj(wbits=31)  # one gzip member, as a client that ignores more reads
    plain = d.decompress(body) + d.flush()
    assert d.eof and d.unused_data == b""
    assert plain == r.body(openmetrics, False, tail)
    assert gzip.decompress(body) == plain


@given(st.integers(0, 2**64) | st.floats(allow_nan=True) | st.booleans())
def test_value_formatting_is_floattogostring(v: float) -> None:
    assert _fmt(v) == floatToGoString(v)


CHANGES = {
    "documents": lambda s: replace(s, values=replace(s.values, documents=99)),
    "documents to null": lambda s: replace(s, values=replace(s.values, documents=None)),
    "flag": lambda s: replace(s, values=replace(s.values, autoscaling_enabled=False)),
    "compute_tier": lambda s: replace(s, values=replace(s.values, compute_tier="gpu")),
    "cluster_id": lambda s: replace(s, values=replace(s.values, cluster_id="c2")),
    "mode": lambda s: replace(s, values=replace(s.values, mode="live")),
    "namespace_type": lambda s: replace(s, values=replace(s.values, namespace_type="x")),
    "values gone": lambda s: replace(s, values=None),
    "up": lambda s: replace(s, up=False),
    "never polled": lambda s: replace(s, up=None),
    "last_success": lambda s: replace(s, last_success=NOW - 1),
    "stale": lambda s: replace(s, last_success=NOW - 10_000),
    "poll_duration": lambda s: replace(s, poll_duration=9.5),
    "no poll_duration": lambda s: replace(s, poll_duration=None),
    "errors": lambda s: replace(s, errors=(("timeout", 3),)),
    "equal copy": lambda s: replace(s),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_kind_of_change_reaches_the_output(change: str) -> None:
    """A new state object with the same labels is diffed family by family against the
    previous one; every field must invalidate the families that print it."""
    states = tuple(NamespaceState(f"ns_{i}", f"ns_{i}", f"n{i}", values_for(f"ns_{i}", i),
                                  True, NOW - 5, 0.25) for i in range(5))
    renderer = FastRenderer(block_size=4)
    snap = Snapshot(version=1, namespaces=states, stale_after=300)
    renderer(snap, NOW)
    changed = list(states)
    changed[2] = CHANGES[change](states[2])
    snap2 = replace(snap, namespaces=tuple(changed))
    assert_same(renderer(snap2, NOW), snap2, NOW)
