"""Test data of the renderer: the golden snapshot (tests/golden/exposition.txt is its text)
and small builders of namespace values and poll results."""

from __future__ import annotations

from dataclasses import replace

from exporter.mixpeek.models import NamespaceValues, parse_namespace
from exporter.mixpeek.result import PollResult
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store

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


def ok(ident: str, doc: dict[str, object], duration: float = 0.25, **fields: object
       ) -> PollResult:
    """A good answer of ``doc``; ``fields`` override NamespaceValues fields of the parse."""
    return PollResult(ident, replace(parse_namespace(doc), **fields), None, "", 200, 1, duration)


def fail(ident: str, reason: str, duration: float = 0.5) -> PollResult:
    return PollResult(ident, None, reason, f"HTTP x {reason}", 500, 1, duration)


def values_for(ns_id: str, documents: int | None) -> NamespaceValues:
    """Complete values of a namespace named ``name_<ns_id>``."""
    return NamespaceValues(ns_id, "name_" + ns_id, documents, 1, 2, 3, 4, True, False, 5, 6,
                           1.7e9, 1.75e9, "shared", "", "standard", "")


def build_store() -> Store:
    store = Store(["spotify_playlists_dev", "ns_nullcounts", "gone_namespace", "ns_never",
                   "pending_ns"], stale_after=300)
    store.apply(ok("spotify_playlists_dev", FULL, namespace_ready=True,
                   document_count_complete=True, expires_timestamp=1_900_000_000.0,
                   clone_status="completed"), now=NOW - 10)
    # A count the API sent but the exporter could not use: absent, and counted as invalid.
    store.apply(ok("ns_nullcounts", {"namespace_name": "nulls", "namespace_id": "ns_nullcounts",
                                     "document_count": None, "bucket_count": 0},
                   namespace_ready=False, invalid_fields=("object_count",)), now=NOW - 5)
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
    store.set_exporter(discovery_up=True, discovery_limit_reached=True)
    return store


def golden_snapshot() -> Snapshot:
    return replace(build_store().snapshot(), version_labels=("1.2.3", "3.11.7"))
