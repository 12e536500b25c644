"""The fast renderer against prometheus-client, which stays the definition of the format.

Every test renders the same snapshot both ways and requires the same bytes, and the same
families through both of prometheus-client's parsers: awkward label values (quotes,
backslashes, newlines, unicode, empty), nulls, 404s, staleness, and renders that reuse blocks
from earlier renders.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse
from prometheus_client.utils import floatToGoString

from exporter.mixpeek.models import NamespaceValues
from exporter.mixpeek.result import PollResult
from exporter.render.fast import FastRenderer
from exporter.render.gzip import Rendered
from exporter.render.lines import Unrenderable, format_value
from exporter.state.snapshot import ExporterValues, NamespaceState, Snapshot
from exporter.state.store import Store
from tests.golden_snapshot import NOW, build_store, golden_snapshot, values_for
from tests.reference_render import render_generic, render_reference, whole

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
        mode=draw(LABEL), namespace_ready=draw(st.none() | st.booleans()),
        document_count_complete=draw(st.none() | st.booleans()),
        expires_timestamp=draw(TIMESTAMP), clone_status=draw(st.none() | LABEL),
        invalid_fields=tuple(draw(st.lists(st.sampled_from(["document_count", "expires_at"]),
                                           max_size=2, unique=True))))


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
        poll_duration=draw(DURATION), errors=tuple(sorted(errors)),
        metadata_at=draw(st.none() | st.floats(NOW - 5000, NOW + 10)))


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
            discovery_limit_reached=draw(st.none() | st.booleans()),
            poll_interval=draw(st.none() | st.floats(1, 1e6))),
        version_labels=(draw(LABEL), "3.11.7"))


def families(text: str, openmetrics: bool) -> list[tuple[str, str, str, list[object]]]:
    parse = om_parse if openmetrics else text_parse
    return [(f.name, f.type, f.documentation,
             [(s.name, sorted(s.labels.items()), s.value) for s in f.samples])
            for f in parse(text)]


def render(snap: Snapshot, now: float) -> Rendered:
    return FastRenderer()(snap, now)


def assert_same(fast: Rendered, snap: Snapshot, now: float) -> None:
    text, om = render_generic(snap, now)
    assert fast.text == text
    fast_om = whole(fast, openmetrics=True)
    assert fast_om + b"# EOF\n" == om
    # Same bytes implies the same parse; parsing anyway guards the parsers' view of escaping.
    # (The OpenMetrics parser rejects two namespaces with the same labels, whoever renders.)
    labels = [(s.namespace_id, s.namespace_name) for s in snap.namespaces]
    assert families(fast.text.decode(), False) == families(text.decode(), False)
    if len(set(labels)) == len(labels):
        assert families((fast_om + b"# EOF\n").decode(), True) == families(om.decode(), True)


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
                                               "metadata_at", "errors", "values", "value",
                                               "none"]))
            if field == "poll_duration":
                ns[i] = replace(old, poll_duration=data.draw(DURATION))
            elif field == "up":
                ns[i] = replace(old, up=data.draw(st.none() | st.booleans()))
            elif field == "last_success":
                ns[i] = replace(old, last_success=data.draw(
                    st.none() | st.floats(NOW - 1000, NOW + 10)))
            elif field == "metadata_at":
                ns[i] = replace(old, metadata_at=data.draw(st.none() | st.floats(0, 2e9)))
            elif field == "errors":
                ns[i] = replace(old, errors=(*old.errors, ("zzz_new", 1)))
            elif field == "values":
                ns[i] = replace(old, values=data.draw(st.none() | values()))
            elif field == "value" and old.values is not None:
                attr = data.draw(st.sampled_from(
                    ["documents", "objects", "autoscaling_enabled", "created_timestamp",
                     "compute_tier", "mode", "clone_status", "namespace_ready",
                     "expires_timestamp", "invalid_fields"]))
                if attr in ("compute_tier", "mode", "clone_status"):
                    new = data.draw(LABEL)
                elif attr == "invalid_fields":
                    new = data.draw(st.sampled_from([(), ("objects",), ("a", "b")]))
                else:
                    new = data.draw(COUNT)
                ns[i] = replace(old, values=replace(old.values, **{attr: new}))
            else:
                ns[i] = replace(old)  # equal, but another object
        snap = replace(snap, namespaces=tuple(ns))
        assert_same(renderer(snap, now), snap, now)


def reused(before: Rendered, after: Rendered) -> int:
    """Pieces of ``after`` that are the very objects of ``before`` (a block reused)."""
    old = {id(p) for p in before.text_pieces}
    return sum(id(p) in old for p in after.text_pieces)


def test_unchanged_blocks_are_reused_and_changed_ones_rerendered() -> None:
    store = Store([f"ns_{i:04d}" for i in range(10)], stale_after=300)
    renderer = FastRenderer(block_size=4)  # blocks: 4 + 4 + 2 namespaces
    snap = store.snapshot()
    first = renderer(snap, NOW)
    again = renderer(snap, NOW + 1)
    assert again.text_pieces == first.text_pieces
    assert reused(first, again) == len(first.text_pieces)  # nothing changed: nothing rendered
    store.apply(PollResult("ns_0005", None, "timeout", "t", None, 1, 1.0), now=NOW)
    snap2 = store.snapshot()
    r = renderer(snap2, NOW + 2)
    assert_same(r, snap2, NOW + 2)
    # Per family: a header piece and one piece per block; the tail last. Only the middle
    # block's pieces of the families printing what changed (up, poll duration, errors) are new.
    old = {id(p) for p in first.text_pieces}
    new = [i for i, p in enumerate(r.text_pieces[:-1]) if id(p) not in old]
    assert len(new) == 3 and all(i % 4 == 2 for i in new), new


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


@given(st.integers(-(2**64), 2**64) | st.integers(10**300, 10**320) | st.floats(allow_nan=True)
       | st.booleans())
def test_value_formatting_is_floattogostring_for_finite_numbers(v: float) -> None:
    try:
        finite = math.isfinite(float(v))
    except OverflowError:
        finite = False
    if finite:
        assert format_value(v) == floatToGoString(v)
    else:  # NaN, infinities, integers past float range: no exposition form
        with pytest.raises(Unrenderable):
            format_value(v)


CHANGES = {
    "documents": lambda s: replace(s, values=replace(s.values, documents=99)),
    "documents to null": lambda s: replace(s, values=replace(s.values, documents=None)),
    "flag": lambda s: replace(s, values=replace(s.values, autoscaling_enabled=False)),
    "compute_tier": lambda s: replace(s, values=replace(s.values, compute_tier="gpu")),
    "cluster_id": lambda s: replace(s, values=replace(s.values, cluster_id="c2")),
    "mode": lambda s: replace(s, values=replace(s.values, mode="live")),
    "namespace_type": lambda s: replace(s, values=replace(s.values, namespace_type="x")),
    "clone_status": lambda s: replace(s, values=replace(s.values, clone_status="cloning")),
    "ready": lambda s: replace(s, values=replace(s.values, namespace_ready=False)),
    "complete": lambda s: replace(s, values=replace(s.values, document_count_complete=True)),
    "expiry": lambda s: replace(s, values=replace(s.values, expires_timestamp=2e9)),
    "invalid_fields": lambda s: replace(s, values=replace(s.values, invalid_fields=("x",))),
    "metadata_at": lambda s: replace(s, metadata_at=NOW - 3),
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
