"""Keeps the rendered exposition current, off the scrape path.

A background thread re-renders when the store changes (coalescing bursts of poll results) or
when a value is about to go stale; scrapes only pick up the latest bytes and append the small,
live process metrics. So a scrape costs O(bytes), however many namespaces there are, and many
concurrent scrapes never render the same snapshot twice.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.metrics import Rendered, render
from exporter.snapshot import Snapshot, Store

log = logging.getLogger(__name__)

Renderer = Callable[[Snapshot, float], Rendered]


def live_registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


class ExpositionCache:
    def __init__(self, store: Store, renderer: Renderer = render,
                 clock: Callable[[], float] = time.time,
                 min_gap_seconds: float = 0.05) -> None:
        self.store = store
        self._renderer = renderer
        self._clock = clock
        self._min_gap = min_gap_seconds
        self._live = live_registry()
        self._snap: Snapshot | None = None
        self._rendered: Rendered | None = None
        self._rendered_at = 0.0
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
            self._snap, self._rendered, self._rendered_at = snap, rendered, now
            self.renders += 1
            return rendered

    def _next_expiry(self, snap: Snapshot, after: float) -> float | None:
        """When the next value in ``snap`` goes stale, after the render at ``after``."""
        soonest = None
        for st in snap.namespaces:
            if st.values is not None and st.last_success is not None:
                t = st.last_success + snap.stale_after
                if t > after and (soonest is None or t < soonest):
                    soonest = t
        return soonest

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = self._snap
            expiry = self._next_expiry(snap, self._rendered_at) if snap is not None else None
            with self.store.changed:
                while (not self._stop.is_set() and snap is not None
                       and self.store.version == snap.version):
                    timeout = 5.0 if expiry is None else expiry - self._clock() + 0.01
                    if timeout <= 0:
                        break
                    self.store.changed.wait(min(timeout, 5.0))
            if self._stop.is_set():
                return
            # Let a burst of poll results land before paying for a render.
            gap = max(self._min_gap, (self._rendered.seconds if self._rendered else 0.0))
            if self._stop.wait(gap):
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

    def body(self, openmetrics: bool, gz: bool) -> bytes:
        r = self.current()
        if openmetrics:
            live = om_generate_latest(self._live)
            return r.openmetrics_gz + gzip.compress(live, 1) if gz else r.openmetrics + live
        live = generate_latest(self._live)
        # Two gzip members back to back form one valid gzip stream (RFC 1952 section 2.2).
        return r.text_gz + gzip.compress(live, 1) if gz else r.text + live
