"""Reloading without a restart: re-read the config and key, work out what changed, apply it.

Two triggers: a reload (SIGHUP, or ``POST /-/reload`` with ``--web.enable-lifecycle``) re-reads
both files; and before every poll cycle, a changed key file (a Kubernetes Secret update) is
picked up on its own, so a rotated key works from the next cycle. A config or key that cannot
be used is refused and the running one kept, and the reload metrics say so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.logs import register_secret
from exporter.settings.load import ConfigError
from exporter.settings.schema import Config
from exporter.settings.secrets import Credentials, load_api_key

if TYPE_CHECKING:
    from exporter.app import App
    from exporter.mixpeek.client import MixpeekClient

log = logging.getLogger(__name__)

ConfigLoader = Callable[[], tuple[Config, Credentials]]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a new config and key change in the running exporter."""

    new_client: bool  # connection settings changed: build a client (in-flight polls finish)
    new_key: bool  # only the key changed: the client keeps its connections
    relist: bool  # discovery settings changed: list again before the next cycle
    interval: float | None  # the new poll interval, when it changed
    stale_after: float | None  # the new staleness bound, when it changed


def plan(old: Config, old_creds: Credentials, new: Config, new_creds: Credentials) -> Plan:
    """The difference between two configurations, as the steps that apply it."""
    new_client = new.mixpeek != old.mixpeek
    return Plan(
        new_client=new_client,
        new_key=not new_client and new_creds.key != old_creds.key,
        relist=new.discovery.enabled and new.discovery != old.discovery,
        interval=(new.poll.interval_seconds
                  if new.poll.interval_seconds != old.poll.interval_seconds else None),
        stale_after=(new.poll.stale_after_seconds
                     if new.poll.stale_after_seconds != old.poll.stale_after_seconds else None),
    )


class Reloader:
    def __init__(self, loader: ConfigLoader, app: App) -> None:
        self._loader = loader
        self._app = app
        self._lock = threading.Lock()
        self._key_stamp: int | None = None
        self._key_failed = False  # the key file's last change could not be used

    def reload(self) -> tuple[bool, str]:
        """Re-read config and key; on any problem keep running the old ones. Returns
        (accepted, a one-line summary for the HTTP answer). Never raises."""
        with self._lock:
            try:
                cfg, creds = self._loader()
            except ConfigError as e:
                return self._refused("; ".join(e.problems))
            except Exception as e:  # a reload must never take the exporter down
                log.debug("reading the configuration raised", exc_info=True)
                return self._refused(f"exporter error: {type(e).__name__}")
            app = self._app
            try:
                register_secret(creds.key)
                steps = plan(app.cfg, app.creds, cfg, creds)
                # Built before anything changes: a client that cannot be built (a value the
                # schema let through but the HTTP stack refuses) leaves the old one running.
                client = app.make_client(cfg, creds) if steps.new_client else None
            except Exception as e:
                log.debug("building the client raised", exc_info=True)
                return self._refused(f"the mixpeek settings cannot be used: "
                                     f"{type(e).__name__}")
            try:
                added, removed = self._apply(cfg, creds, steps, client)
            except Exception as e:
                log.error("applying the reloaded configuration failed part way",
                          exc_info=True)
                return self._refused(f"exporter error while applying it: {type(e).__name__}")
            self._key_failed = False
            app.store.reload_done(True)
            log.info("configuration reloaded", extra={"fields": {
                "added": len(added), "removed": len(removed), "key_source": creds.source}})
            if added:
                app.poller.trigger_now()
            return True, f"reloaded: {len(added)} namespaces added, {len(removed)} removed"

    def _apply(self, cfg: Config, creds: Credentials, steps: Plan,
               client: MixpeekClient | None) -> tuple[list[str], list[str]]:
        app = self._app
        if client is not None:
            app.poller.swap_client(client, cfg.mixpeek.max_concurrency)
            app.client = client
        elif steps.new_key:
            app.client.set_key(creds.key)
        app.cfg, app.creds = cfg, creds
        app.targets.configure(cfg, relist=steps.relist)
        added, removed = app.targets.apply()  # the staleness follows (polling.budget)
        if steps.interval is not None:
            app.poller.reschedule(steps.interval)
        app.poller.counts_source = cfg.poll.counts_source
        app.poller.metadata_interval = cfg.poll.metadata_interval_seconds
        return added, removed

    def _refused(self, problems: str) -> tuple[bool, str]:
        self._app.store.reload_done(False)
        log.error("reload refused; keeping the running configuration",
                  extra={"fields": {"problems": problems}})
        return False, "reload refused: " + problems

    def refresh_key(self) -> None:
        """Use a changed key file (one stat() per cycle); keep the key we have when the new one
        cannot be used, and say why."""
        app = self._app
        path = app.cfg.mixpeek.api_key_file
        if path is None:
            return
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return  # mid-rotation (symlink swap) or gone: keep the key we have
        if self._key_stamp is None or stamp == self._key_stamp:
            self._key_stamp = stamp
            return
        self._key_stamp = stamp
        with self._lock:
            try:
                creds = load_api_key(app.cfg.mixpeek)
            except Exception as e:  # ConfigError says why; anything else is ours
                problems = "; ".join(e.problems) if isinstance(e, ConfigError) else \
                    f"exporter error: {type(e).__name__}"
                log.error("API key file changed but cannot be used; keeping the previous key",
                          extra={"fields": {"problems": problems}})
                self._key_failed = True
                app.store.reload_done(False)  # MixpeekConfigReloadFailed says so
                return
            if self._key_failed:
                self._key_failed = False
                app.store.reload_done(True)
            if creds.key != app.creds.key:
                register_secret(creds.key)
                app.client.set_key(creds.key)
                app.creds = creds
                log.info("API key file changed; using the new key",
                         extra={"fields": {"key_source": creds.source}})
