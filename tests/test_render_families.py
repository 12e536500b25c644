"""The catalogue, as a user sees it in /metrics: golden output, values, absences (null, 404,
stale), label fallbacks, and the catalogue's own promises (unique names, namespace labels)."""

from __future__ import annotations

import os
import re

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from exporter.mixpeek.models import NamespaceCounts
from exporter.render.families import (
    EXPORTER_FAMILIES,
    FAMILIES,
    NAMESPACE_FAMILIES,
    NAMESPACE_LABELS,
    sample_names,
)
from exporter.render.fast import FastRenderer
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store
from tests.golden_snapshot import FULL, NOW, build_store, golden_snapshot, ok
from tests.harness import ROOT, parse_metrics, sample
from tests.reference_render import whole

GOLDEN = ROOT / "tests" / "golden" / "exposition.txt"


def text_of(snap: Snapshot, now: float = NOW) -> str:
    return FastRenderer()(snap, now).text.decode()


def test_golden_exposition() -> None:
    text = text_of(golden_snapshot())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_values_and_absences() -> None:
    m = parse_metrics(text_of(golden_snapshot()))
    full = {"namespace_id": "ns_abc", "namespace_name": "spotify_playlists_dev"}
    assert sample(m, "mixpeek_namespace_documents", **full) == 123
    assert sample(m, "mixpeek_namespace_autoscaling_enabled", **full) == 1
    assert sample(m, "mixpeek_namespace_auto_create_indexes_enabled", **full) == 0
    assert sample(m, "mixpeek_namespace_feature_extractors", **full) == 2
    assert sample(m, "mixpeek_namespace_created_timestamp_seconds", **full) == 1699335116
    assert sample(m, "mixpeek_namespace_info", compute_tier="shared", cluster_id="iclstr_1",
                  **full) == 1
    # A null count is absent, never 0; a real 0 is 0.
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_nullcounts") is None
    assert sample(m, "mixpeek_namespace_buckets", namespace_id="ns_nullcounts") == 0
    # 404: values gone at once, health stays.
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_g") is None
    assert sample(m, "mixpeek_namespace_info", namespace_id="ns_g") is None
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_g") == 0
    assert sample(m, "mixpeek_namespace_poll_errors_total", namespace_id="ns_g",
                  reason="not_found") == 1
    # Never answered: the configured identifier fills the label it matches.
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_never", namespace_name="") == 0
    assert sample(m, "mixpeek_namespace_poll_errors_total", namespace_id="ns_never",
                  reason="timeout") == 2
    # Not polled yet: no health series at all rather than a made-up 0.
    assert sample(m, "mixpeek_namespace_up", namespace_name="pending_ns") is None
    assert sample(m, "mixpeek_api_requests_total", status="200") == 2
    assert sample(m, "mixpeek_api_rate_limit_remaining") == 41
    assert sample(m, "mixpeek_exporter_build_info", version="1.2.3") == 1


def test_stale_values_are_dropped_but_health_stays() -> None:
    snap = golden_snapshot()  # ns_abc answered at NOW - 10; stale_after is 300
    m = parse_metrics(text_of(snap, NOW + 285))
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_abc") == 123
    m = parse_metrics(text_of(snap, NOW + 291))
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_info", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_abc") == 1
    assert sample(m, "mixpeek_namespace_last_success_timestamp_seconds",
                  namespace_id="ns_abc") == NOW - 10


def timestamped_samples(text: str, openmetrics: bool = False) -> list[str]:
    """Sample lines that carry a timestamp, as prometheus-client's parser of the format reads
    them (a label value may hold spaces or braces, so splitting lines would not do)."""
    if openmetrics:
        families = om_parse(text if text.endswith("# EOF\n") else text + "# EOF\n")
    else:
        families = text_parse(text)
    return [f"{s.name}{s.labels}" for f in families for s in f.samples
            if s.timestamp is not None]


def test_the_timestamp_check_finds_timestamps() -> None:
    # The check below must be able to fail: labelled and bare lines with a timestamp.
    for openmetrics in (False, True):
        assert timestamped_samples('# TYPE a gauge\na{x="} 2"} 1.0 1700000000\n', openmetrics)
        assert timestamped_samples("# TYPE b gauge\nb 2.0 1700000000\n", openmetrics)
        assert not timestamped_samples('# TYPE a gauge\na{x="1 2"} 1.0\n', openmetrics)


def test_no_sample_timestamps_and_help_says_polled() -> None:
    r = FastRenderer()(golden_snapshot(), NOW)
    text = r.text.decode()
    assert timestamped_samples(text) == []
    assert timestamped_samples(whole(r, openmetrics=True).decode(), openmetrics=True) == []
    assert "# HELP mixpeek_namespace_documents Documents in the namespace (document_count). " \
           "Polled from the Mixpeek API every poll interval, not at scrape time." in text


def test_openmetrics_types() -> None:
    om = whole(FastRenderer()(golden_snapshot(), NOW), openmetrics=True)
    fams = {f.name: f for f in om_parse((om + b"# EOF\n").decode())}
    assert fams["mixpeek_namespace_poll_errors"].type == "counter"
    assert fams["mixpeek_namespace_documents"].type == "gauge"


def test_removed_namespace_disappears() -> None:
    store = build_store()
    store.set_namespaces(["ns_never"])
    m = parse_metrics(text_of(store.snapshot()))
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_never") == 0


def test_same_namespace_by_name_and_id_is_exported_once() -> None:
    store = Store(["spotify_playlists_dev", "ns_abc"], stale_after=300)
    store.apply(ok("spotify_playlists_dev", FULL), now=NOW)
    before = parse_metrics(text_of(store.snapshot()))
    # Until the id answers, the two are told apart by their labels.
    assert sample(before, "mixpeek_namespace_documents", namespace_id="ns_abc") == 123
    store.apply(ok("ns_abc", FULL), now=NOW)
    r = FastRenderer()(store.snapshot(), NOW)
    lines = [ln for ln in r.text.decode().splitlines()
             if ln.startswith("mixpeek_namespace_documents{")]
    assert len(lines) == 1, lines
    list(om_parse(whole(r, openmetrics=True).decode() + "# EOF\n"))  # no duplicate series


def test_every_family_is_declared_once_with_a_valid_name() -> None:
    names = sample_names()
    assert len(names) == len(set(names)), names
    assert len(FAMILIES) == len(NAMESPACE_FAMILIES) + len(EXPORTER_FAMILIES)
    for family in FAMILIES:
        assert re.fullmatch(r"mixpeek_[a-z_]+", family.name), family.name
        assert not family.name.endswith("_total"), "counters are named without _total"
        assert family.help and family.type in ("gauge", "counter")
        assert len(set(family.labels)) == len(family.labels)


def test_per_namespace_families_carry_the_namespace_labels() -> None:
    for family in NAMESPACE_FAMILIES:
        assert family.labels[:2] == NAMESPACE_LABELS, family.name
        assert family.source in ("values", "state")
    for family in EXPORTER_FAMILIES:
        assert not set(family.labels) & set(NAMESPACE_LABELS), family.name
        assert family.source == "snapshot"


def test_the_exposition_shows_exactly_the_catalogue() -> None:
    """Every family printed is in the catalogue, and every catalogue family can print."""
    text = text_of(golden_snapshot())
    printed = {f.name + ("_total" if f.type == "counter" else "") for f in text_parse(text)}
    assert printed <= set(sample_names())
    # Per-namespace families always print their HELP/TYPE, even without series.
    assert {f.sample_name for f in NAMESPACE_FAMILIES} <= printed


def test_operator_fields_of_api_0_82() -> None:
    """namespace_ready, document_count_complete, expires_at, clone_status and the count of
    unusable fields, each read from NamespaceValues; None publishes no series."""
    m = parse_metrics(text_of(golden_snapshot()))
    abc = {"namespace_id": "ns_abc"}
    nulls = {"namespace_id": "ns_nullcounts"}
    assert sample(m, "mixpeek_namespace_ready", **abc) == 1
    assert sample(m, "mixpeek_namespace_ready", **nulls) == 0
    assert sample(m, "mixpeek_namespace_document_count_complete", **abc) == 1
    assert sample(m, "mixpeek_namespace_document_count_complete", **nulls) is None
    assert sample(m, "mixpeek_namespace_expiry_timestamp_seconds", **abc) == 1.9e9
    assert sample(m, "mixpeek_namespace_expiry_timestamp_seconds", **nulls) is None
    assert sample(m, "mixpeek_namespace_invalid_fields", **abc) == 0
    assert sample(m, "mixpeek_namespace_invalid_fields", **nulls) == 1
    assert sample(m, "mixpeek_namespace_info", clone_status="completed", **abc) == 1
    assert sample(m, "mixpeek_namespace_info", clone_status="", **nulls) == 1  # None: empty
    # Values families vanish with the values (404) and when stale, like every other.
    assert sample(m, "mixpeek_namespace_invalid_fields", namespace_id="ns_g") is None
    stale = parse_metrics(text_of(golden_snapshot(), NOW + 1000))
    assert sample(stale, "mixpeek_namespace_ready", **abc) is None


def test_an_incomplete_count_shows_as_zero_and_the_count_is_absent() -> None:
    store = Store(["ns_abc"], stale_after=300)
    store.apply(ok("ns_abc", {**FULL, "document_count": None},
                   document_count_complete=False), now=NOW)
    m = parse_metrics(text_of(store.snapshot()))
    assert sample(m, "mixpeek_namespace_document_count_complete", namespace_id="ns_abc") == 0
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_abc") is None


def test_metadata_refresh_time_is_the_last_full_get_namespace() -> None:
    store = Store(["ns_abc", "ns_batched_only"], stale_after=300)
    store.apply(ok("ns_abc", FULL), now=NOW - 100)
    store.apply_counts("ns_abc", NamespaceCounts(5, 1, 1, 1), 0.1, now=NOW - 1)
    store.apply_counts("ns_batched_only", NamespaceCounts(5, 1, 1, 1), 0.1, now=NOW - 1)
    m = parse_metrics(text_of(store.snapshot()))
    name = "mixpeek_namespace_metadata_last_refresh_timestamp_seconds"
    assert sample(m, name, namespace_id="ns_abc") == NOW - 100  # counts do not refresh it
    assert sample(m, "mixpeek_namespace_last_success_timestamp_seconds",
                  namespace_id="ns_abc") == NOW - 1
    assert sample(m, name, namespace_id="ns_batched_only") is None  # never fetched


def test_discovery_limit_reached_is_published_once_set() -> None:
    store = Store([], stale_after=300)
    assert "mixpeek_exporter_discovery_limit_reached" not in text_of(store.snapshot())
    store.set_exporter(discovery_limit_reached=False)
    m = parse_metrics(text_of(store.snapshot()))
    assert sample(m, "mixpeek_exporter_discovery_limit_reached") == 0
    store.set_exporter(discovery_limit_reached=True)
    m = parse_metrics(text_of(store.snapshot()))
    assert sample(m, "mixpeek_exporter_discovery_limit_reached") == 1
