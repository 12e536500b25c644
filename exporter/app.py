"""Wiring: config -> poller -> client -> store (snapshots) -> exposition -> HTTP server.

``App`` owns the long-lived pieces and the two things that cut across them: reloading the
configuration (SIGHUP, ``POST /-/reload``) and shutting down within a bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporter import __version__
from exporter.client import MixpeekClient, RequestStats
from exporter.config import Config, ConfigError, Credentials, load_api_key, load_config
from exporter.exposition import ExpositionCache
from exporter.logs import register_secret
from exporter.poller import Poller
from exporter.ratelimit import TokenBucket
from exporter.server import Endpoints, MetricsServer, parse_listen_address, serve
from exporter.snapshot import Store

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], tuple[Config, Credentials]]


def file_loader(path: str | Path) -> ConfigLoader:
    def load() -> tuple[Config, Credentials]:
        cfg = load_config(path)
        return cfg, load_api_key(cfg.mixpeek)
    return load


class App:
    def __init__(self, loader: ConfigLoader, listen: str = ":10117",
                 web_config_file: str | None = None) -> None:
        self._loader = loader
        self.cfg, self.creds = loader()
        register_secret(self.creds.key)
        self.stop_event = threading.Event()
        self.stats = RequestStats()
        self.store = Store(self.cfg.namespaces, self.cfg.poll.stale_after_seconds, self.stats)
        self.client = self._make_client(self.cfg, self.creds)
        self.poller = Poller(self.client, self.store, self.cfg.poll.interval_seconds,
                             self.cfg.mixpeek.max_concurrency, stop=self.stop_event)
        self.cache = ExpositionCache(self.store)
        self._reload_lock = threading.Lock()
        self.listen = listen
        self.web_config_file = web_config_file
        self.server: MetricsServer | None = None

    def _make_client(self, cfg: Config, creds: Credentials) -> MixpeekClient:
        bucket = TokenBucket(cfg.mixpeek.max_requests_per_minute)
        return MixpeekClient(cfg.mixpeek, creds.key, bucket, self.stats, self.stop_event)

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
            added, removed = self.store.set_namespaces(cfg.namespaces)
            self.store.set_stale_after(cfg.poll.stale_after_seconds)
            self.poller.reschedule(cfg.poll.interval_seconds)
            self.cfg, self.creds = cfg, creds
            self.store.reload_done(True)
            log.info("configuration reloaded", extra={"fields": {
                "added": ",".join(added), "removed": ",".join(removed),
                "key_source": creds.source}})
            if added:
                self.poller.trigger_now()
            return True, f"reloaded: {len(added)} namespaces added, {len(removed)} removed"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        host, port, family = parse_listen_address(self.listen)
        endpoints = Endpoints(cache=self.cache, ready=self.ready, reload=self.reload)
        tls = None
        if self.web_config_file is not None:
            from exporter.webconfig import WebConfig

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
        results = self.poller.run_cycle()
        rendered = self.cache.render_now()
        return rendered.text, all(r.ok for r in results) and len(results) == len(
            self.cfg.namespaces)
