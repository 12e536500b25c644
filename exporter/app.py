"""Wiring: config -> poller -> client -> store (snapshots) -> exposition -> HTTP server.

``App`` owns the long-lived pieces and the two things that cut across them: reloading the
configuration (SIGHUP, ``POST /-/reload``) and shutting down within a bound.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporter import __version__
from exporter.logs import register_secret
from exporter.mixpeek.client import MixpeekClient
from exporter.polling.poller import Poller
from exporter.polling.targets import DiscoveryError, list_all, select
from exporter.ratelimit import TokenBucket
from exporter.render.cache import ExpositionCache
from exporter.settings.schema import Config, ConfigError, Credentials, load_api_key, load_config
from exporter.state.stats import RequestStats
from exporter.state.store import Store
from exporter.web.server import Endpoints, MetricsServer, parse_listen_address, serve

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], tuple[Config, Credentials]]


def requests_per_cycle(cfg: Config, n: int) -> float:
    """API requests one poll cycle over ``n`` namespaces costs, on average."""
    interval = cfg.poll.interval_seconds
    if cfg.poll.counts_source == "stats_batch":
        per = math.ceil(n / 100) + n * min(1.0, interval / cfg.poll.metadata_interval_seconds)
    else:
        per = float(n)
    if cfg.discovery.enabled:
        pages = max(1, math.ceil(n / cfg.discovery.page_size))
        per += pages * min(1.0, interval / cfg.discovery.refresh_interval_seconds)
    return per


def file_loader(path: str | Path) -> ConfigLoader:
    def load() -> tuple[Config, Credentials]:
        cfg = load_config(path)
        return cfg, load_api_key(cfg.mixpeek)
    return load


class App:
    def __init__(self, loader: ConfigLoader, listen: str = ":10117",
                 web_config_file: str | None = None, shard: int = 0,
                 total_shards: int = 1) -> None:
        self._loader = loader
        self.cfg, self.creds = loader()
        register_secret(self.creds.key)
        self.shard, self.total_shards = shard, total_shards
        self.stop_event = threading.Event()
        self.stats = RequestStats()
        self.store = Store([], self.cfg.poll.stale_after_seconds, self.stats)
        self.client = self._make_client(self.cfg, self.creds)
        self.poller = Poller(self.client, self.store, self.cfg.poll.interval_seconds,
                             self.cfg.mixpeek.max_concurrency, stop=self.stop_event,
                             counts_source=self.cfg.poll.counts_source,
                             metadata_interval=self.cfg.poll.metadata_interval_seconds,
                             before_cycle=self._before_cycle)
        self._discovered: list[tuple[str, str]] | None = None
        self._last_discovery: float | None = None
        self._discovery_ok: bool | None = None
        self._budget_note: tuple[int, float] | None = None
        self._key_stamp: int | None = None
        if total_shards > 1:
            self.store.set_exporter(shard_ordinal=shard, total_shards=total_shards)
        self._apply_targets()
        self.cache = ExpositionCache(self.store)
        self._reload_lock = threading.Lock()
        self.listen = listen
        self.web_config_file = web_config_file
        self.server: MetricsServer | None = None

    def _make_client(self, cfg: Config, creds: Credentials) -> MixpeekClient:
        bucket = TokenBucket(cfg.mixpeek.max_requests_per_minute)
        return MixpeekClient(cfg.mixpeek, creds.key, bucket, self.stats, self.stop_event)

    # -- which namespaces, and can the budget poll them all ----------------------------

    def _before_cycle(self) -> None:
        self._refresh_key()
        self._refresh_targets()

    def _refresh_key(self) -> None:
        """A Kubernetes Secret update rewrites the mounted key file: pick it up without a
        reload, so a rotated key works from the next cycle. One stat() per cycle."""
        path = self.cfg.mixpeek.api_key_file
        if path is None:
            return
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return  # mid-rotation (symlink swap) or gone: keep the key we have
        if self._key_stamp is None:
            self._key_stamp = stamp
            return
        if stamp == self._key_stamp:
            return
        self._key_stamp = stamp
        try:
            creds = load_api_key(self.cfg.mixpeek)
        except ConfigError as e:
            log.error("API key file changed but cannot be used; keeping the previous key",
                      extra={"fields": {"problems": "; ".join(e.problems)}})
            return
        if creds.key != self.creds.key:
            register_secret(creds.key)
            self.client.set_key(creds.key)
            self.creds = creds
            log.info("API key file changed; using the new key",
                     extra={"fields": {"key_source": creds.source}})

    def _refresh_targets(self) -> None:
        """List the organization's namespaces again when that is due."""
        d = self.cfg.discovery
        due = self._last_discovery is None or (
            time.monotonic() - self._last_discovery >= d.refresh_interval_seconds)
        if d.enabled and due:
            try:
                found = list_all(self.client, d.page_size)
            except DiscoveryError as e:
                self.store.set_exporter(discovery_up=False)
                if self._discovery_ok is not False:
                    log.error("namespace discovery failing; polling the last known set",
                              extra={"fields": {"error": str(e)}})
                self._discovery_ok = False
            else:
                self._discovered = found
                self._last_discovery = time.monotonic()
                self.store.set_exporter(discovery_up=True, discovery_last_success=time.time())
                if self._discovery_ok is False:
                    log.info("namespace discovery recovered")
                self._discovery_ok = True
        self._apply_targets()

    def _apply_targets(self) -> tuple[list[str], list[str]]:
        targets = select(self.cfg, self._discovered if self.cfg.discovery.enabled else None,
                         self.shard, self.total_shards)
        added, removed = self.store.set_namespaces(
            [t.identifier for t in targets],
            {t.identifier: (t.namespace_id, t.namespace_name) for t in targets})
        if added or removed:
            log.info("namespaces to poll changed", extra={"fields": {
                "total": len(targets), "added": len(added), "removed": len(removed)}})
        self._check_budget(len(targets))
        return added, removed

    def _check_budget(self, n: int) -> None:
        """Say (log once per change, and in metrics) when the budget stretches the interval."""
        cfg = self.cfg
        interval = cfg.poll.interval_seconds
        per_cycle = requests_per_cycle(cfg, n)
        rpm = cfg.mixpeek.max_requests_per_minute
        effective = max(interval, per_cycle * 60.0 / rpm) if rpm > 0 else interval
        self.store.set_exporter(namespaces=n, poll_interval=effective)
        note = (n, round(effective, 1))
        if effective > interval and note != self._budget_note:
            log.warning(
                "request budget cannot poll every namespace within interval_seconds; polls "
                "are spread evenly at the budget's pace", extra={"fields": {
                    "namespaces": n, "requests_per_cycle": round(per_cycle, 1),
                    "max_requests_per_minute": rpm, "interval_seconds": interval,
                    "effective_interval_seconds": round(effective, 1)}})
        self._budget_note = note if effective > interval else None

    # -- HTTP hooks -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        snap = self.cache.snapshot
        if snap is not None and snap.cycles_completed > 0:
            return True, "ready"
        return False, "not ready: the first poll cycle has not finished"

    def reload(self) -> tuple[bool, str]:
        """Re-read config and key; on any problem keep running the old ones."""
        with self._reload_lock:
            try:
                cfg, creds = self._loader()
            except ConfigError as e:
                self.store.reload_done(False)
                log.error("reload refused; keeping the running configuration",
                          extra={"fields": {"problems": "; ".join(e.problems)}})
                return False, "reload refused: " + "; ".join(e.problems)
            register_secret(creds.key)
            old = self.cfg
            if cfg.mixpeek != old.mixpeek:
                client = self._make_client(cfg, creds)
                self.poller.swap_client(client, cfg.mixpeek.max_concurrency)
                self.client = client
            elif creds.key != self.creds.key:
                self.client.set_key(creds.key)
            self.cfg, self.creds = cfg, creds
            if not cfg.discovery.enabled:
                self._discovered = None
            elif cfg.discovery != old.discovery:
                self._last_discovery = None  # new filters: list again before the next cycle
            added, removed = self._apply_targets()
            self.store.set_stale_after(cfg.poll.stale_after_seconds)
            self.poller.reschedule(cfg.poll.interval_seconds)
            self.poller.counts_source = cfg.poll.counts_source
            self.poller.metadata_interval = cfg.poll.metadata_interval_seconds
            self.store.reload_done(True)
            log.info("configuration reloaded", extra={"fields": {
                "added": len(added), "removed": len(removed), "key_source": creds.source}})
            if added:
                self.poller.trigger_now()
            return True, f"reloaded: {len(added)} namespaces added, {len(removed)} removed"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        host, port, family = parse_listen_address(self.listen)
        endpoints = Endpoints(cache=self.cache, ready=self.ready, reload=self.reload)
        tls = None
        if self.web_config_file is not None:
            from exporter.web.webconfig import WebConfig

            web = WebConfig.load(self.web_config_file)
            endpoints.authorize = web.authorize
            tls = web.tls_context
        self.server = MetricsServer((host, port), family, endpoints, tls=tls)
        self.cache.start()
        serve(self.server)
        self.poller.start()
        log.info("mixpeek-exporter started", extra={"fields": {
            "version": __version__, "listen": f"{host}:{self.server.port}",
            "base_url": self.cfg.mixpeek.base_url, "namespaces": len(self.cfg.namespaces),
            "interval_seconds": self.cfg.poll.interval_seconds,
            "key_source": self.creds.source}})

    def shutdown(self, grace: float | None = None) -> bool:
        grace = min(self.cfg.mixpeek.timeout_seconds + 1.0, 15.0) if grace is None else grace
        started = time.monotonic()
        finished = self.poller.stop(grace)
        if not finished:
            log.warning("in-flight polls did not finish in time; exiting anyway",
                        extra={"fields": {"grace_seconds": grace}})
        self.cache.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self.client.close()
        log.info("mixpeek-exporter stopped", extra={"fields": {
            "seconds": round(time.monotonic() - started, 3)}})
        return finished

    def once(self) -> tuple[bytes, bool]:
        """One poll cycle, rendered as text; True if every namespace answered."""
        self.poller.run_cycle()
        rendered = self.cache.render_now()
        states = self.store.snapshot().namespaces
        return rendered.text, all(st.up for st in states)
