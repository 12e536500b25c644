"""Keeps the rendered exposition current, off the scrape path.

A background thread re-renders when the store changes (coalescing bursts of poll results) or
when a value is about to go stale; scrapes only pick up the latest ``Rendered`` and append the
small, live process metrics. So a scrape costs O(bytes), however many namespaces there are, and
many concurrent scrapes never render the same snapshot twice.

The renderer is incremental (see exporter.render.fast.FastRenderer), and renders are kept
apart by at least ``max(min_gap, 2 x the last render's wall time)``: during a long poll cycle
over tens of thousands of namespaces, results arrive continuously, and rendering on every one
of them would take the GIL away from scrapes and from the poller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.render.fast import FastRenderer
from exporter.render.gzip import Body, Rendered, deflate_final
from exporter.state.snapshot import Snapshot
from exporter.state.store import Store

log = logging.getLogger(__name__)

Renderer = Callable[[Snapshot, float], Rendered]


def live_registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class ExpositionCache:
    """The latest ``Rendered`` of ``store``, kept current by a background thread (``start``);
    ``body`` serves it with live process metrics appended."""

    def __init__(self, store: Store, renderer: Renderer | None = None,
                 clock: Callable[[], float] = time.time,
                 min_gap_seconds: float = 0.2, coalesce_seconds: float = 0.05,
                 live_max_age: float = 0.5) -> None:
        self.store = store
        self._renderer: Renderer = renderer if renderer is not None else FastRenderer()
        self._clock = clock
        self._min_gap = min_gap_seconds
        self._coalesce = coalesce_seconds
        self._live = live_registry()
        self._live_max_age = live_max_age
        self._live_cache: dict[bool, tuple[float, bytes, bytes]] = {}
        self._snap: Snapshot | None = None
        self._rendered: Rendered | None = None
        self._rendered_at = 0.0
        self._last_render_end = float("-inf")  # time.monotonic()
        # Variants (True: OpenMetrics) served gzipped so far: their gzip trailer checksum is
        # computed by the renderer thread, not by the first scrape after each render.
        self._gzip_variants: set[bool] = set()
        self._lock = threading.Lock()  # serialises renders, not reads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renders = 0

    # -- rendering ------------------------------------------------------------------------

    def render_now(self, force: bool = False) -> Rendered:
        with self._lock:
            snap = self.store.snapshot()
            if not force and self._snap is snap and self._rendered is not None:
                return self._rendered
            now = self._clock()
            rendered = self._renderer(snap, now)
            for openmetrics in tuple(self._gzip_variants):
                rendered.prepare(openmetrics)
            self._snap, self._rendered, self._rendered_at = snap, rendered, now
            self._last_render_end = time.monotonic()
            self.renders += 1
            return rendered

    def _run(self) -> None:
        while not self._stop.is_set():
            snap, rendered = self._snap, self._rendered
            expiry = rendered.next_expiry if rendered is not None else None
            with self.store.changed:
                while (not self._stop.is_set() and snap is not None
                       and self.store.version == snap.version):
                    timeout = 5.0 if expiry is None else expiry - self._clock() + 0.01
                    if timeout <= 0:
                        break
                    self.store.changed.wait(min(timeout, 5.0))
            if self._stop.is_set():
                return
            # Let a burst of poll results land before paying for a render, and keep renders
            # apart so that rendering takes at most about a third of a core.
            gap = max(self._min_gap, 2.0 * (rendered.seconds if rendered is not None else 0.0))
            delay = max(self._coalesce, self._last_render_end + gap - time.monotonic())
            if self._stop.wait(delay):
                return
            try:
                self.render_now(force=True)
            except Exception:
                log.exception("rendering the exposition failed; serving the previous one")
                self._stop.wait(1.0)

    def start(self) -> None:
        self.render_now()
        self._thread = threading.Thread(target=self._run, name="renderer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- serving --------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snap

    def current(self) -> Rendered:
        r = self._rendered
        return r if r is not None else self.render_now()

    def body(self, openmetrics: bool, gz: bool) -> Body:
        """The cached exposition plus live process metrics, to be streamed in bounded chunks;
        never walks the namespaces, never holds the whole body.

        A gzip body is one gzip member: the cached deflate pieces, then the live metrics
        compressed now, then a trailer whose CRC extends the cached one. A plain body is the
        cached pieces inflated one after the other as they are sent.
        """
        r = self.current()
        if gz:
            self._gzip_variants.add(openmetrics)
        live, live_z = self._live_tail(openmetrics)
        return r.body(openmetrics, gz, live, live_z)

    def _live_tail(self, openmetrics: bool) -> tuple[bytes, bytes]:
        """Process metrics, at most ``live_max_age`` old; for OpenMetrics the tail carries
        the one final "# EOF". Reading them costs a handful of /proc reads, each of which
        gives up the GIL; under a busy poller every re-acquisition can wait a switch
        interval, so many scrapes a second share one reading."""
        now = time.monotonic()
        got = self._live_cache.get(openmetrics)
        if got is not None and now - got[0] < self._live_max_age:
            return got[1], got[2]
        live = om_generate_latest(self._live) if openmetrics else generate_latest(self._live)
        self._live_cache[openmetrics] = (now, live, deflate_final(live))
        return live, self._live_cache[openmetrics][2]
