"""The one staleness rule, and the renderer obeying it (values shown exactly while fresh)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.render.fast import FastRenderer
from exporter.state.snapshot import NamespaceState, Snapshot
from tests.golden_snapshot import NOW, values_for

VALUES = values_for("ns_a", 7)


def test_values_are_fresh_up_to_and_including_the_deadline() -> None:
    st_ = NamespaceState("ns_a", "ns_a", "name_ns_a", VALUES, True, NOW)
    assert st_.fresh_until(300) == NOW + 300
    assert st_.fresh_values(NOW + 300, 300) is VALUES
    assert st_.fresh_values(NOW + 300.001, 300) is None
    assert st_.fresh_values(NOW - 5, 300) is VALUES  # a clock behind the poll's


def test_no_values_or_no_success_is_never_fresh() -> None:
    assert NamespaceState("a", "a", "", None, True, NOW).fresh_until(300) is None
    assert NamespaceState("a", "a", "", VALUES, False, None).fresh_until(300) is None
    assert NamespaceState("a", "a", "", VALUES, False, None).fresh_values(NOW, 300) is None


@given(last=st.floats(NOW - 1000, NOW + 10), dt=st.floats(-10, 1000),
       stale_after=st.sampled_from([1.0, 60.0, 300.0]))
def test_the_renderer_shows_values_exactly_while_the_rule_says_fresh(
        last: float, dt: float, stale_after: float) -> None:
    state = NamespaceState("ns_a", "ns_a", "name_ns_a", VALUES, True, last, 0.1)
    snap = Snapshot(version=1, namespaces=(state,), stale_after=stale_after)
    now = NOW + dt
    r = FastRenderer()(snap, now)
    shown = b"mixpeek_namespace_documents{" in r.text
    assert shown == (state.fresh_values(now, stale_after) is not None)
    # And the re-render is scheduled for the moment the rule's answer changes.
    assert r.next_expiry == (state.fresh_until(stale_after) if shown else None)
