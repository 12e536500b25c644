"""ExpositionCache: what a scrape gets (the cached render plus live process metrics, streamed
in bounded writes) and when the cache renders again."""

from __future__ import annotations

import gzip
import threading

from exporter.mixpeek.result import PollResult
from exporter.render.cache import ExpositionCache
from exporter.render.fast import FastRenderer
from exporter.render.gzip import CHUNK, Rendered
from exporter.state.snapshot import Snapshot
from tests.golden_snapshot import NOW, build_store, values_for
from tests.harness import wait_until
from tests.reference_render import whole


def test_bodies_carry_live_process_metrics_after_the_cached_ones() -> None:
    cache = ExpositionCache(build_store())
    text = gzip.decompress(bytes(cache.body(openmetrics=False, gz=True))).decode()
    assert "mixpeek_namespace_documents" in text and "process_cpu_seconds_total" in text
    om = bytes(cache.body(openmetrics=True, gz=False)).decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    assert om.index("mixpeek_exporter_build_info") < om.index("process_cpu_seconds")


def test_a_large_body_is_streamed_in_bounded_writes() -> None:
    store = build_store()
    ids = [f"ns_{i:05d}" for i in range(3000)]
    store.set_namespaces(ids)
    for ident in ids:
        store.apply(PollResult(ident, values_for(ident, 7), None, "", 200, 1, 0.1))
    cache = ExpositionCache(store)
    body = cache.body(openmetrics=False, gz=False)
    assert body.size > 20 * CHUNK
    writes = [len(chunk) for chunk in body]
    assert sum(writes) == body.size
    assert max(writes) <= CHUNK


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_value_going_stale_is_rendered_away_without_any_store_change() -> None:
    clock = Clock(NOW)
    store = build_store()  # spotify_playlists_dev answered at NOW - 10, stale_after 300
    renders: list[float] = []
    renderer = FastRenderer()

    def counting(snap: Snapshot, now: float) -> Rendered:
        renders.append(now)
        return renderer(snap, now)

    cache = ExpositionCache(store, counting, clock=clock, min_gap_seconds=0.0,
                            coalesce_seconds=0.0)
    cache.start()
    try:
        assert b'documents{namespace_id="ns_abc"' in whole(cache.current())
        clock.now = NOW + 400  # past NOW - 10 + 300: the renderer thread's deadline passed
        wait_until(lambda: b'documents{namespace_id="ns_abc"' not in whole(cache.current()),
                   what="the stale value to leave the exposition")
        assert b'up{namespace_id="ns_abc"' in whole(cache.current())
    finally:
        cache.stop()


def test_a_failing_render_keeps_serving_the_previous_exposition() -> None:
    store = build_store()
    fail, failed = threading.Event(), threading.Event()
    renderer = FastRenderer()

    def flaky(snap: Snapshot, now: float) -> Rendered:
        if fail.is_set():
            failed.set()
            raise RuntimeError("renderer bug")
        return renderer(snap, now)

    cache = ExpositionCache(store, flaky, min_gap_seconds=0.0, coalesce_seconds=0.0)
    cache.start()
    try:
        before = whole(cache.current())
        fail.set()
        store.cycle_done(2.0)
        assert failed.wait(30), "the change was never rendered"
        assert whole(cache.current()) == before
        assert b"mixpeek_exporter_poll_cycle_duration_seconds 1.5" in before
    finally:
        cache.stop()
