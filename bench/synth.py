"""Synthetic organisations for the benchmarks: a Store filled with realistic poll results.

Identifiers look like the API's (``ns_`` + 12 hex digits, names such as
``org07_catalog_search_prod_00042``); counts, timestamps and metadata vary per namespace the
way they do in a real organisation; the same ~2% of namespaces fail every cycle (1.5% time
out, 0.5% answer 404) and 1% report a null document count; 97% are ready, 10% expire, 5% are
clones. Each cycle, 10% of the namespaces gained documents. Everything is derived from (seed,
namespace number, cycle), so nothing has to be kept in memory between cycles (which would
distort the memory benchmark).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from exporter.mixpeek.models import parse_namespace
from exporter.mixpeek.result import PollResult
from exporter.state.store import Store

WORDS = ("catalog", "search", "media", "archive", "docs", "images", "video", "support",
         "legal", "ads", "music", "podcasts", "reviews", "products", "tickets", "faces")
ENVS = ("prod", "staging", "dev", "test")
TIERS = ("shared", "dedicated_cpu", "dedicated_gpu")


def identifier(i: int, seed: int = 1) -> str:
    return f"ns_{random.Random(seed * 1_000_003 + i).getrandbits(48):012x}"


def identifiers(n: int, seed: int = 1) -> list[str]:
    return [identifier(i, seed) for i in range(n)]


def document(i: int, cycle: int = 0, seed: int = 1) -> dict[str, Any]:
    """The Get Namespace response body of namespace number ``i`` at poll cycle ``cycle``."""
    rnd = random.Random(seed * 1_000_003 + i)
    ident = f"ns_{rnd.getrandbits(48):012x}"
    created = 1_700_000_000 + rnd.randrange(60_000_000)
    documents = None if rnd.random() < 0.01 else rnd.randrange(5_000_000)
    if documents is not None and cycle and random.Random(f"{seed}/{i}/{cycle}").random() < 0.1:
        documents += cycle * 17  # grew since the last cycle
    doc = {
        "namespace_id": ident,
        "namespace_name": (f"org{i % 37:02d}_{rnd.choice(WORDS)}_{rnd.choice(WORDS)}_"
                           f"{rnd.choice(ENVS)}_{i:05d}"),
        "namespace_type": "standard",
        "mode": rnd.choice(("", "live", "batch")),
        "cluster_id": rnd.choice(("", f"iclstr_{rnd.getrandbits(32):08x}")),
        "infrastructure": {"autoscaling_enabled": rnd.random() < 0.5,
                           "compute_tier": rnd.choice(TIERS),
                           "max_concurrent_jobs": rnd.choice((4, 10, 20, 50))},
        "feature_extractors": [{}] * rnd.randrange(4),
        "payload_indexes": [{}] * rnd.randrange(6),
        "document_count": documents,
        "document_count_complete": documents is not None,
        "bucket_count": rnd.randrange(20),
        "collection_count": rnd.randrange(40),
        "object_count": rnd.randrange(2_000_000),
        "auto_create_indexes": rnd.random() < 0.3,
        "created_at": datetime.fromtimestamp(created, UTC).isoformat(),
        "updated_at": datetime.fromtimestamp(created + rnd.randrange(5_000_000),
                                             UTC).isoformat(),
    }
    # API 0.82 fields, drawn last so the fields above stay what they were in earlier runs.
    doc["namespace_ready"] = rnd.random() < 0.97
    expires = rnd.random() < 0.1
    doc["expires_at"] = (datetime.fromtimestamp(created + 90_000_000, UTC).isoformat()
                         if expires else None)
    doc["clone_status"] = "completed" if rnd.random() < 0.05 else None
    return doc


def result(i: int, cycle: int = 0, seed: int = 1) -> PollResult:
    """What the client makes of namespace ``i``'s response: JSON decoding and validation
    included, as in the real poller (about 40 us of CPU)."""
    ident = identifier(i, seed)
    bad = random.Random(ident).random()  # the same namespaces fail every cycle
    if bad < 0.015:
        return PollResult(ident, None, "timeout", "read timed out", None, 3, 10.0)
    if bad < 0.02:
        return PollResult(ident, None, "not_found", "HTTP 404", 404, 1, 0.05)
    body = json.dumps(document(i, cycle, seed)).encode()
    duration = 0.04 + random.Random(f"d/{i}/{cycle}").random() / 20
    return PollResult(ident, parse_namespace(json.loads(body)), None, "", 200, 1, duration)


def results(n: int, cycle: int = 0, seed: int = 1) -> Iterator[PollResult]:
    return (result(i, cycle, seed) for i in range(n))


def filled_store(n: int, seed: int = 1, stale_after: float = 3600.0) -> Store:
    """A store after one complete poll cycle over ``n`` namespaces."""
    store = Store(identifiers(n, seed), stale_after=stale_after)
    poll_cycle(store, n, 0, seed)
    return store


def poll_cycle(store: Store, n: int, cycle: int, seed: int = 1) -> None:
    """Apply one full cycle of results (a new state object for every namespace)."""
    for r in results(n, cycle, seed):
        store.apply(r)
        store.stats.record("200" if r.ok else "timeout")
    store.cycle_done(1.0)
