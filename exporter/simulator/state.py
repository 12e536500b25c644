"""What the simulated API stores: namespace documents, and the counters tests read back.

A namespace is served as stored, shaped like the SDK's ``NamespaceModel`` (mixpeek 1.3.783, API
0.82), except for three rules the SDK documents, applied when the response is built:

- ``document_count`` grows by ``growth`` documents a second (demo mode, tests of change);
- ``document_count_complete: false`` makes Get Namespace and the list say ``document_count:
  null`` ("null rather than a real count") while the stats endpoints send a lower bound ("the
  documents counted before it stopped");
- ``clone_status: "cloning"`` makes ``namespace_ready`` false ("no clone is in flight").

``raw`` overrides and ``omit`` are applied after the rules and bypass them, so a test can send
anything at all (``document_count: 10**400``, a negative ``bucket_count``, ``created_at:
"0000-00-00"``, a string where a number belongs, a missing ``namespace_ready``).
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections import Counter
from typing import Any

from exporter.simulator.limit import MinuteWindow

DEMO_KEY = "sk_demo_simulated_key_0000"

# Dropped by the list endpoint's ``view=summary`` (SDK: "omits heavy per-namespace config").
SUMMARY_OMITS = ("payload_indexes", "feature_extractors", "vector_inference_map", "vector_configs")
# The fields of the SDK's NamespaceStatsResponse, as the stats endpoints send them.
STATS_FIELDS = ("namespace_id", "document_count", "document_count_complete", "bucket_count",
                "collection_count", "object_count")


def make_namespace(ns_id: str, name: str, documents: int | None = 1000,
                   extractors: int = 1, tier: str | None = None) -> dict[str, Any]:
    """A namespace document as API 0.82 returns it; ``documents=None`` is a degraded count.

    ``tier`` adds ``infrastructure.compute_tier``, a key the API removed on 2026-09-10: the SDK
    ignores it, and the exporter still reads it from APIs older than that (API 0.81 sent it).
    """
    infrastructure: dict[str, Any] = {"autoscaling_enabled": True, "max_concurrent_jobs": 10}
    if tier is not None:
        infrastructure["compute_tier"] = tier
    return {
        "object": "namespace",
        "namespace_id": ns_id,
        "namespace_name": name,
        "namespace_type": "standard",
        "scope": "org",
        "description": f"Simulated namespace {name}",
        "infrastructure": infrastructure,
        "cluster_id": None,
        "feature_extractors": [
            {"feature_extractor_name": f"extractor_{i}", "version": "v1",
             "feature_extractor_id": f"fe_{i}", "params": {}} for i in range(extractors)],
        "payload_indexes": [{"field_name": "title", "type": "text", "is_protected": False}],
        "payload_index_count": 1,
        "document_count": documents,
        "document_count_complete": documents is not None,
        "bucket_count": 3,
        "collection_count": 2,
        "object_count": 250,
        "auto_create_indexes": False,
        "adaptive_indexing": False,
        "vector_inference_map": {},
        "mode": None,
        "clone_status": None,
        "clone_error": None,
        "clone_phase": None,
        "source_namespace_id": None,
        "namespace_ready": True,
        "created_at": "2026-01-15T09:30:00Z",
        "updated_at": "2026-11-01T12:00:00Z",
        "expires_at": None,
    }


def default_namespaces(n: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """Three demo namespaces, then ``sim_namespace_NNNNNN`` with counts drawn from ``seed``."""
    demo = [
        make_namespace("ns_demo0001", "demo_catalog", 12_000, extractors=2),
        # Stored before 2026-09-10: still carries compute_tier (see make_namespace).
        make_namespace("ns_demo0002", "demo_media", 480, tier="dedicated_cpu"),
        make_namespace("ns_demo0003", "demo_archive", None),
    ]
    demo[2]["cluster_id"] = "iclstr_demo"
    out = demo[:n]
    rnd = random.Random(seed)
    for i in range(len(out), n):
        out.append(make_namespace(f"ns_{i:08d}", f"sim_namespace_{i:06d}",
                                  rnd.randint(0, 1_000_000)))
    return out


class Namespace:
    """One stored namespace, with its growth, its fault and its raw overrides."""

    __slots__ = ("doc", "fail", "growth", "omit", "raw", "since")

    def __init__(self, doc: dict[str, Any], growth: float = 0.0) -> None:
        self.doc = doc
        self.fail: dict[str, Any] | None = None  # see faults.py; None: answers normally
        self.growth = growth  # documents per second
        self.since = time.monotonic()
        self.raw: dict[str, Any] = {}
        self.omit: set[str] = set()

    @property
    def ns_id(self) -> str:
        return str(self.doc["namespace_id"])

    def take_fault(self) -> dict[str, Any] | None:
        """The fault for this request, if any; a fault with ``count`` clears after that many."""
        fail = self.fail
        if fail is None:
            return None
        if isinstance(fail.get("count"), int):
            left = fail["count"] - 1
            self.fail = dict(fail, count=left) if left > 0 else None
        return dict(fail)

    def count(self) -> Any:
        """The stored document_count plus growth so far (whatever is stored if not an int)."""
        stored = self.doc.get("document_count")
        if self.growth and isinstance(stored, int) and not isinstance(stored, bool):
            return stored + int(self.growth * (time.monotonic() - self.since))
        return stored

    def freeze_growth(self) -> None:
        """Fold growth so far into the stored count, so a change starts from what was served."""
        if "document_count" in self.doc:
            self.doc["document_count"] = self.count()
        self.since = time.monotonic()

    def _overridden(self, out: dict[str, Any], keys: tuple[str, ...] | None) -> dict[str, Any]:
        for k, v in self.raw.items():
            if keys is None or k in keys:
                out[k] = copy.deepcopy(v)
        for k in self.omit:
            out.pop(k, None)
        return out

    def document(self, summary: bool = False) -> dict[str, Any]:
        """The Get Namespace / list item body (SDK ``NamespaceModel``)."""
        doc = copy.deepcopy(self.doc)
        if "document_count" in doc:
            doc["document_count"] = None if doc.get("document_count_complete") is False \
                else self.count()
        if doc.get("clone_status") == "cloning" and "namespace_ready" in doc:
            doc["namespace_ready"] = False
        if summary:
            for k in SUMMARY_OMITS:
                doc.pop(k, None)
        return self._overridden(doc, None)

    def stats(self) -> dict[str, Any]:
        """The stats body (SDK ``NamespaceStatsResponse``)."""
        count = self.count()
        complete = self.doc.get("document_count_complete", True)
        if complete is False:
            # "a lower bound (the documents counted before it stopped, 0 when none were)"
            count = count // 2 if isinstance(count, int) else 0
        out = {"namespace_id": self.ns_id, "document_count": count,
               "document_count_complete": complete,
               **{k: self.doc.get(k) for k in ("bucket_count", "collection_count",
                                               "object_count")}}
        return self._overridden(out, STATS_FIELDS)


class SimState:
    """Everything one simulator serves and counts; handlers hold ``lock`` while they read it."""

    def __init__(self, api_key: str, namespaces: list[dict[str, Any]], rate_limit_rpm: int = 0,
                 latency_ms: float = 0, list_shape: str = "schema",
                 stats_batch: bool = True) -> None:
        self.api_key = api_key
        # Re-entrant: control handlers that hold it also send responses.
        self.lock = threading.RLock()
        self.namespaces: dict[str, Namespace] = {d["namespace_id"]: Namespace(d)
                                                 for d in namespaces}
        self.limiter: MinuteWindow | None = None
        self.set_rate_limit(rate_limit_rpm)
        self.latency = latency_ms / 1000.0  # seconds added to each Get Namespace
        self.list_shape = list_shape  # "schema" (PaginationResponse) or "legacy" (docs example)
        self.stats_batch = stats_batch  # False: 404, as an API older than stats/batch
        self.requests: Counter[str] = Counter()  # by route name and by status code
        self.auth_headers_seen = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._by_name: dict[str, str] | None = None
        self._order: list[str] | None = None

    def set_rate_limit(self, rpm: int) -> None:
        """0: no limit and no ``X-RateLimit-*`` headers. A new limit starts an empty window."""
        self.limiter = MinuteWindow(rpm) if rpm else None

    def changed(self) -> None:
        """Call after adding, removing or renaming a namespace (drops the lookup indexes)."""
        self._by_name = None
        self._order = None

    def lookup(self, ident: str) -> Namespace | None:
        """By namespace_id, else by namespace_name, as the API's ``{namespace_identifier}``."""
        ns = self.namespaces.get(ident)
        if ns is not None:
            return ns
        if self._by_name is None:
            self._by_name = {}
            for ns_id, ns in self.namespaces.items():
                self._by_name.setdefault(str(ns.doc.get("namespace_name")), ns_id)
        found = self._by_name.get(ident)
        return self.namespaces.get(found) if found is not None else None

    def ordered(self) -> list[Namespace]:
        """Every namespace in list order (by namespace_id)."""
        if self._order is None:
            self._order = sorted(self.namespaces)
        return [self.namespaces[i] for i in self._order]

    def count(self, key: str) -> None:
        self.requests[key] += 1

    def counters(self) -> dict[str, Any]:
        """Requests by route and status, rate-limit refusals, auth headers, concurrency."""
        limit = self.limiter
        return {"requests": dict(self.requests),
                "rate_limit": {"limit": limit.limit if limit else 0,
                               "refused": limit.refused if limit else 0,
                               "in_window": limit.in_window() if limit else 0},
                "auth_headers_seen": self.auth_headers_seen,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight}

    def reset_counters(self) -> None:
        self.requests.clear()
        self.auth_headers_seen = 0
        self.max_in_flight = 0  # counts from here, requests already in flight included later
        if self.limiter is not None:
            self.limiter.refused = 0
