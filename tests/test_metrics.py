"""Snapshot -> exposition: golden output, null/404/stale handling, label fallbacks."""

from __future__ import annotations

import gzip
import os
from dataclasses import replace
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from exporter.mixpeek.models import parse_namespace
from exporter.mixpeek.result import PollResult
from exporter.render.cache import ExpositionCache
from exporter.render.families import render
from exporter.state.store import Snapshot, Store
from tests.harness import parse_metrics, sample

GOLDEN = Path(__file__).parent / "golden" / "exposition.txt"
NOW = 1_800_000_000.0

FULL = {
    "namespace_name": "spotify_playlists_dev", "namespace_id": "ns_abc",
    "infrastructure": {"autoscaling_enabled": True, "compute_tier": "shared",
                       "max_concurrent_jobs": 10},
    "cluster_id": "iclstr_1", "namespace_type": "standard",
    "document_count": 123, "bucket_count": 4, "collection_count": 5, "object_count": 6,
    "feature_extractors": [{}, {}], "payload_indexes": [{}],
    "auto_create_indexes": False,
    "created_at": "2023-11-07T05:31:56Z", "updated_at": "2026-11-01T00:00:00Z",
}


def ok(ident: str, doc: dict[str, object], duration: float = 0.25) -> PollResult:
    return PollResult(ident, parse_namespace(doc), None, "", 200, 1, duration)


def fail(ident: str, reason: str, duration: float = 0.5) -> PollResult:
    return PollResult(ident, None, reason, f"HTTP x {reason}", 500, 1, duration)


def build_store() -> Store:
    store = Store(["spotify_playlists_dev", "ns_nullcounts", "gone_namespace", "ns_never",
                   "pending_ns"], stale_after=300)
    store.apply(ok("spotify_playlists_dev", FULL), now=NOW - 10)
    store.apply(ok("ns_nullcounts", {"namespace_name": "nulls", "namespace_id": "ns_nullcounts",
                                     "document_count": None, "bucket_count": 0}), now=NOW - 5)
    store.apply(ok("gone_namespace", {"namespace_name": "gone_namespace", "namespace_id": "ns_g",
                                      "document_count": 9}), now=NOW - 20)
    store.apply(fail("gone_namespace", "not_found"), now=NOW - 1)
    store.apply(fail("ns_never", "timeout"), now=NOW - 1)
    store.apply(fail("ns_never", "timeout"), now=NOW - 1)
    store.stats.record("200")
    store.stats.record("200")
    store.stats.record("404")
    store.stats.record("timeout", remaining=41)
    store.cycle_done(1.5)
    store.reload_done(True, now=NOW - 100)
    return store


def golden_snapshot() -> Snapshot:
    return replace(build_store().snapshot(), version_labels=("1.2.3", "3.11.7"))


def test_golden_exposition() -> None:
    text = render(golden_snapshot(), NOW).text.decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_values_and_absences() -> None:
    m = parse_metrics(render(golden_snapshot(), NOW).text.decode())
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
    snap = golden_snapshot()
    m = parse_metrics(render(snap, NOW + 285).text.decode())
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_abc") == 123
    m = parse_metrics(render(snap, NOW + 291).text.decode())
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_info", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_abc") == 1
    assert sample(m, "mixpeek_namespace_last_success_timestamp_seconds",
                  namespace_id="ns_abc") == NOW - 10


def test_openmetrics_and_gzip_variants_match_text() -> None:
    r = render(golden_snapshot(), NOW)
    assert gzip.decompress(r.text_gz) == r.text
    om = gzip.decompress(r.openmetrics_gz)
    assert om == r.openmetrics
    fams = {f.name: f for f in om_parse((om + b"# EOF\n").decode())}
    assert fams["mixpeek_namespace_poll_errors"].type == "counter"
    assert fams["mixpeek_namespace_documents"].type == "gauge"


def test_no_sample_timestamps_and_help_says_polled() -> None:
    text = render(golden_snapshot(), NOW).text.decode()
    for line in text.splitlines():
        if not line.startswith("#"):
            assert len(line.rsplit(" ", 2)) == 2 or "}" in line.rsplit(" ", 2)[0], line
    assert "# HELP mixpeek_namespace_documents Documents in the namespace (document_count). " \
           "Polled from the Mixpeek API every poll interval, not at scrape time." in text


def test_cache_serves_live_process_metrics_and_multi_member_gzip() -> None:
    cache = ExpositionCache(build_store())
    body = cache.body(openmetrics=False, gz=True)
    text = gzip.decompress(body).decode()
    assert "mixpeek_namespace_documents" in text and "process_cpu_seconds_total" in text
    om = cache.body(openmetrics=True, gz=False).decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1


def test_removed_namespace_disappears() -> None:
    store = build_store()
    store.set_namespaces(["ns_never"])
    m = parse_metrics(render(store.snapshot(), NOW).text.decode())
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_abc") is None
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_never") == 0


def test_same_namespace_by_name_and_id_is_exported_once() -> None:
    store = Store(["spotify_playlists_dev", "ns_abc"], stale_after=300)
    store.apply(ok("spotify_playlists_dev", FULL), now=NOW)
    before = parse_metrics(render(store.snapshot(), NOW).text.decode())
    # Until the id answers, the two are told apart by their labels.
    assert sample(before, "mixpeek_namespace_documents", namespace_id="ns_abc") == 123
    store.apply(ok("ns_abc", FULL), now=NOW)
    text = render(store.snapshot(), NOW).text.decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("mixpeek_namespace_documents{")]
    assert len(lines) == 1, lines
    om = render(store.snapshot(), NOW).openmetrics
    list(om_parse((om + b"# EOF\n").decode() if not om.endswith(b"# EOF\n") else om.decode()))
