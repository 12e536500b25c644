"""The composition root: settings -> polling -> mixpeek client -> state -> render -> web.

``App`` builds the long-lived pieces, wires them together, and runs their lifecycle: start,
one-shot (``--once``), and shutting down within a bound. What to poll is
``polling.targets``; reloading is ``exporter.reload``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

from exporter import __version__
from exporter.logs import register_secret
from exporter.mixpeek.client import MixpeekClient
from exporter.polling.poller import Poller
from exporter.polling.targets import Targets
from exporter.ratelimit import TokenBucket
from exporter.reload import ConfigLoader, Reloader
from exporter.render.cache import ExpositionCache
from exporter.settings.listen import parse_listen_address
from exporter.settings.load import load_config
from exporter.settings.schema import Config
from exporter.settings.secrets import Credentials, load_api_key
from exporter.state.stats import RequestStats
from exporter.state.store import Store
from exporter.web.page import PageSource, Running
from exporter.web.server import Endpoints, MetricsServer, serve

log = logging.getLogger(__name__)

__all__ = ["App", "ConfigLoader", "file_loader"]


def file_loader(path: str | Path | None) -> ConfigLoader:
    """Reads the config file (None: no file, the defaults) and then the key it names."""
    def load() -> tuple[Config, Credentials]:
        cfg = load_config(path)
        return cfg, load_api_key(cfg.mixpeek)
    return load


def bound_address(sock: socket.socket) -> str:
    """host:port a listening socket really has, saying when it takes IPv4 too."""
    host, port = sock.getsockname()[:2]
    if sock.family != socket.AF_INET6:
        return f"{host}:{port}"
    dual = host == "::" and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    return f"[{host}]:{port}" + (" (IPv6 and IPv4)" if dual else "")


class App:
    def __init__(self, loader: ConfigLoader, listen: str = ":10117",
                 web_config_file: str | None = None, shard: int = 0,
                 total_shards: int = 1, enable_lifecycle: bool = False) -> None:
        self.cfg, self.creds = loader()
        register_secret(self.creds.key)
        self.stop_event = threading.Event()
        self.stats = RequestStats()
        self.store = Store([], self.cfg.poll.stale_after_seconds, self.stats)
        self.client = self.make_client(self.cfg, self.creds)
        self.targets = Targets(self.cfg, self.store, shard, total_shards, self.stop_event)
        self.reloader = Reloader(loader, self)
        self.poller = Poller(self.client, self.store, self.cfg.poll.interval_seconds,
                             self.cfg.mixpeek.max_concurrency, stop=self.stop_event,
                             counts_source=self.cfg.poll.counts_source,
                             metadata_interval=self.cfg.poll.metadata_interval_seconds,
                             before_cycle=self._before_cycle)
        self.targets.on_found = self.poller.trigger_now  # a listing came in beside a cycle
        self.targets.apply()
        self.cache = ExpositionCache(self.store)
        self.listen = listen
        self.web_config_file = web_config_file
        self.enable_lifecycle = enable_lifecycle
        self.server: MetricsServer | None = None
        self._ready = False

    def make_client(self, cfg: Config, creds: Credentials) -> MixpeekClient:
        bucket = TokenBucket(cfg.mixpeek.max_requests_per_minute, strict=True)
        return MixpeekClient(cfg.mixpeek, creds.key, bucket, self.stats, self.stop_event,
                             poll_interval=cfg.poll.interval_seconds)

    def _before_cycle(self) -> None:
        self.reloader.refresh_key()
        self.targets.refresh(self.client)

    # -- HTTP hooks -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Ready once every namespace has a count or a verdict (with counts first, long
        before every metadata refresh), or the first cycle found none to poll; it stays so."""
        if self._ready:
            return True, "ready"
        snap = self.cache.snapshot  # what /metrics shows, not what is still being rendered
        if snap is None:
            return False, "not ready: the first poll cycle has not finished"
        waiting = sum(1 for st in snap.namespaces if st.up is None)
        if waiting == 0 and (snap.namespaces or snap.cycles_completed > 0):
            self._ready = True
            return True, "ready"
        if not snap.namespaces:
            return False, "not ready: the first poll cycle has not finished"
        return False, (f"not ready: the first poll cycle has not finished ({waiting} of "
                       f"{len(snap.namespaces)} namespaces have no count or verdict yet)")

    def running(self) -> Running:
        """What /status and /config show of the configuration (a reload replaces it)."""
        return Running(self.cfg, self.creds.source, self.web_config_file)

    def reload(self) -> tuple[bool, str]:
        """Re-read config and key (SIGHUP, POST /-/reload); see exporter.reload."""
        return self.reloader.reload()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        host, port, family = parse_listen_address(self.listen)
        endpoints = Endpoints(cache=self.cache, ready=self.ready,
                              reload=self.reload if self.enable_lifecycle else None,
                              pages=PageSource(self.store.snapshot, self.running))
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
            "version": __version__, "listen": bound_address(self.server.socket),
            "base_url": self.cfg.mixpeek.base_url, "namespaces": len(self.cfg.namespaces),
            "interval_seconds": self.cfg.poll.interval_seconds,
            "key_source": self.creds.source}})

    def shutdown(self, grace: float | None = None) -> bool:
        grace = min(self.cfg.mixpeek.timeout_seconds + 1.0, 15.0) if grace is None else grace
        started = time.monotonic()
        finished = self.poller.stop(grace)
        self.targets.join(max(0.0, grace - (time.monotonic() - started)))
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
        """Discovery (when on), then one poll cycle with a full Get Namespace for every
        namespace (counts and metadata), rendered as text; True if discovery worked and every
        namespace answered. A failed discovery is said on the log (stderr)."""
        try:
            self.targets.refresh(self.client, wait=True)
        except Exception:
            log.exception("preparing the poll failed")
        self.poller.run_cycle(full=True)
        rendered = self.cache.render_now()
        snap = self.store.snapshot()
        listed = snap.exporter.discovery_up is not False
        if not listed:
            log.error("namespace discovery failed; the namespaces it would list were not "
                      "polled", extra={"fields": {"error": snap.exporter.discovery_error}})
        return rendered.text, listed and all(st.up for st in snap.namespaces)
