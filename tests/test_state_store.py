"""The Store: what poll results, batched counts, namespace-set changes and exporter-wide values
do to the snapshot renderers see."""

from __future__ import annotations

import threading

import pytest

from exporter.mixpeek.models import NamespaceCounts
from exporter.mixpeek.result import PollResult
from exporter.state.store import Store
from tests.golden_snapshot import NOW, fail, values_for


def good(ident: str, documents: int = 7) -> PollResult:
    return PollResult(ident, values_for(ident, documents), None, "", 200, 1, 0.2)


def test_a_good_answer_sets_values_health_and_labels() -> None:
    store = Store(["ns_a"], stale_after=300)
    assert store.state("ns_a").namespace_name == ""  # type: ignore[union-attr]
    transition = store.apply(good("ns_a"), now=NOW)
    st = store.state("ns_a")
    assert st is not None and st.up and st.last_success == NOW and st.metadata_at == NOW
    assert st.values is not None and st.values.documents == 7
    assert st.namespace_name == "name_ns_a"  # from the answer
    assert transition is not None and transition.previous.up is None
    assert store.apply(good("ns_a"), now=NOW + 1) is None  # still up: nothing to log


def test_a_failure_keeps_the_last_values_until_they_are_stale_but_a_404_drops_them() -> None:
    store = Store(["ns_a"], stale_after=300)
    store.apply(good("ns_a"), now=NOW)
    store.apply(fail("ns_a", "timeout"), now=NOW + 1)
    st = store.state("ns_a")
    assert st is not None and st.up is False and st.values is not None
    assert st.last_success == NOW and st.reason == "timeout"
    store.apply(fail("ns_a", "not_found"), now=NOW + 2)
    store.apply(fail("ns_a", "timeout"), now=NOW + 3)
    st = store.state("ns_a")
    assert st is not None and st.values is None
    assert st.errors == (("not_found", 1), ("timeout", 2))


def test_batched_counts_replace_the_counts_and_keep_the_metadata() -> None:
    store = Store(["ns_a", "ns_b"], stale_after=300)
    store.apply(good("ns_a"), now=NOW)
    store.apply_counts("ns_a", NamespaceCounts(99, None, 1, 2), 0.05, now=NOW + 60)
    store.apply_counts("ns_b", NamespaceCounts(5, 6, 7, 8), 0.05, now=NOW + 60)
    a, b = store.state("ns_a"), store.state("ns_b")
    assert a is not None and a.values is not None
    assert (a.values.documents, a.values.buckets, a.values.max_concurrent_jobs) == (99, None, 4)
    assert a.last_success == NOW + 60 and a.metadata_at == NOW  # metadata is still the old one
    assert b is not None and b.values is not None and b.up
    assert (b.values.documents, b.values.compute_tier, b.metadata_at) == (5, "", None)


def test_batched_counts_carry_their_completeness_and_their_own_unusable_fields() -> None:
    from dataclasses import replace

    store = Store(["ns_a"], stale_after=300)
    bad_meta = replace(values_for("ns_a", 7), invalid_fields=("bucket_count", "created_at"))
    store.apply(PollResult("ns_a", bad_meta, None, "", 200, 1, 0.2), now=NOW)
    # The batch has a usable bucket_count now, but a degraded document count and a bad object
    # count: bucket_count leaves the list, created_at (not a count) stays, object_count joins.
    store.apply_counts("ns_a", NamespaceCounts(None, 3, 1, None, document_count_complete=False,
                                               invalid_fields=("object_count",)),
                       0.05, now=NOW + 60)
    v = store.state("ns_a").values  # type: ignore[union-attr]
    assert v is not None and v.document_count_complete is False and v.documents is None
    assert v.invalid_fields == ("created_at", "object_count")


def test_results_for_namespaces_no_longer_polled_are_ignored() -> None:
    store = Store(["ns_a"], stale_after=300)
    store.set_namespaces(["ns_b"])
    assert store.apply(good("ns_a")) is None
    assert store.apply_counts("ns_a", NamespaceCounts(1, 1, 1, 1), 0.1) is None
    assert [s.identifier for s in store.snapshot().namespaces] == ["ns_b"]


def test_set_namespaces_keeps_known_states_and_labels_new_ones() -> None:
    store = Store(["ns_a", "name_b"], stale_after=300)
    store.apply(good("ns_a"), now=NOW)
    version = store.version
    assert store.set_namespaces(["ns_a", "name_b"]) == ([], [])
    assert store.version == version  # an unchanged set does not force a re-render
    added, removed = store.set_namespaces(["ns_a", "ns_c"], {"ns_c": ("ns_c", "cee")})
    assert (added, removed) == (["ns_c"], ["name_b"])
    a, c = store.state("ns_a"), store.state("ns_c")
    assert a is not None and a.values is not None
    assert c is not None and (c.namespace_id, c.namespace_name, c.up) == ("ns_c", "cee", None)


def test_snapshots_are_frozen_per_version_and_request_counts() -> None:
    store = Store(["ns_a"], stale_after=300)
    first = store.snapshot()
    assert store.snapshot() is first
    store.stats.record("200")
    second = store.snapshot()
    assert second is not first and second.api_requests == (("200", 1),)
    store.apply(good("ns_a"))
    third = store.snapshot()
    assert third.version > second.version and first.namespaces[0].up is None


def test_exporter_values_by_field_name() -> None:
    store = Store([], stale_after=300)
    store.set_exporter(discovery_up=True, discovery_limit_reached=False, namespaces=3)
    version = store.version
    store.set_exporter(discovery_up=True)  # no change: no new version
    assert store.version == version
    ex = store.snapshot().exporter
    assert (ex.discovery_up, ex.discovery_limit_reached, ex.namespaces) == (True, False, 3)
    with pytest.raises(TypeError):
        store.set_exporter(mixpeek_exporter_namespaces=3)  # a metric name is not a field


def test_every_write_wakes_waiting_readers() -> None:
    store = Store(["ns_a"], stale_after=300)
    woke = threading.Event()

    def wait() -> None:
        with store.changed:
            store.changed.wait_for(lambda: store.version > 0, timeout=30)
        woke.set()

    t = threading.Thread(target=wait)
    t.start()
    store.cycle_done(1.0)
    assert woke.wait(30)
    t.join()
    assert store.snapshot().cycles_completed == 1
