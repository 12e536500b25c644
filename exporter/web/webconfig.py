"""The running ``--web.config.file``: loaded once at start, then following changes to it.

The file is checked for changes (size, mtime, inode) on each new connection and request, so
changed users, limits and TLS settings apply without a restart. A changed file that is
invalid, or that would switch TLS or authentication *off*, is refused and the running settings
stay: a half-written or emptied file must not downgrade security. The keys are described in
``exporter.settings.web``; TLS in ``web.tls``, the checks in ``web.auth``.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any

from exporter.settings.web import WebConfigError, WebSettings, load_web_config
from exporter.web.auth import Authenticator, Denied, Request
from exporter.web.tls import RotatingContext, Signature, file_signature

log = logging.getLogger(__name__)

__all__ = ["WebConfig", "WebConfigError"]


class WebConfig:
    """TLS contexts and request authorization as the web config file currently says."""

    def __init__(self, path: Path, settings: WebSettings, signature: Signature) -> None:
        """Raises ``WebConfigError`` when the TLS files cannot be used."""
        self.path = path
        self._settings = settings
        self._signature = signature
        self._rejected: Signature | None = None
        self._lock = threading.Lock()
        self._tls = RotatingContext(settings.tls) if settings.tls is not None else None
        self._auth = Authenticator(settings)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WebConfig:
        """Read, validate and apply the file; raises ``WebConfigError`` naming it and the key."""
        p = Path(path)
        signature = file_signature(p)
        settings = load_web_config(p)
        try:
            web = cls(p, settings, signature)
        except WebConfigError as e:
            raise WebConfigError(e.problems, str(p)) from None
        log.info("web config loaded", extra={"fields": web._describe()})
        if settings.basic_auth_users and settings.tls is None:
            log.warning("basic auth without tls_server_config: passwords cross the network in "
                        "clear text; add TLS unless a proxy in front terminates it")
        return web

    def _describe(self) -> dict[str, Any]:
        s = self._settings
        rate = s.rate
        return {"file": str(self.path), "tls": s.tls is not None,
                "client_auth": s.tls.client_auth_type if s.tls else "",
                "basic_auth_users": len(s.basic_auth_users),
                "rate_limit": f"{rate.interval:g}s/{max(rate.burst, 1)}" if rate else ""}

    @property
    def tls_enabled(self) -> bool:
        return self._settings.tls is not None

    def _refresh(self) -> None:
        sig = file_signature(self.path)
        if sig == self._signature or sig == self._rejected:
            return
        with self._lock:
            if sig == self._signature or sig == self._rejected:
                return
            try:
                new = load_web_config(self.path)
                old = self._settings
                if old.tls is not None and new.tls is None:
                    raise WebConfigError(["it would turn TLS off; restart the exporter to do "
                                          "that"])
                if old.basic_auth_users and not new.basic_auth_users:
                    raise WebConfigError(["it would turn basic auth off; restart the exporter "
                                          "to do that"])
                tls = RotatingContext(new.tls) if new.tls is not None else None
                auth = Authenticator(new)
            except Exception as e:  # never let a bad file take the server down
                self._rejected = sig
                why = "; ".join(e.problems) if isinstance(e, WebConfigError) \
                    else f"{type(e).__name__}: {e}"
                log.error("web config change refused; keeping the running settings",
                          extra={"fields": {"error": why}})
                return
            self._settings, self._signature, self._rejected = new, sig, None
            self._tls, self._auth = tls, auth
            log.info("web config reloaded", extra={"fields": self._describe()})

    def tls_context(self) -> ssl.SSLContext | None:
        """The context for a new connection, None for plain HTTP. Called by the accept loop
        for every connection, so it never raises: on any problem the last good context keeps
        serving."""
        try:
            self._refresh()
        except Exception:
            log.exception("web config check failed; keeping the running settings")
        tls = self._tls
        return tls.current() if tls is not None else None

    def authorize(self, request: Request) -> Denied | None:
        """None to let the request through, else (status, headers, body) to answer with."""
        self._refresh()
        return self._auth.authorize(request)
