"""TLS for the HTTP endpoints: a server context from ``tls_server_config``, rebuilt when its
certificate files change (Kubernetes Secret updates, cert-manager renewals) without a restart.

Files are compared by size, mtime and inode (``file_signature``), so a symlink swap counts. A
rotation caught half-way (new certificate, old key) keeps the previous context serving until
the files make a usable pair again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any

from exporter.settings.web import TLSServerConfig, WebConfigError

log = logging.getLogger(__name__)

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

Signature = tuple[Any, ...]


def file_signature(*paths: Path) -> Signature:
    """What changes when a file is rewritten or replaced (k8s swaps a symlink, editors rename)."""
    out: list[Any] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        except OSError as e:
            out.append((str(p), type(e).__name__))
    return tuple(out)


def _no_password() -> bytes:
    raise WebConfigError(["tls_server_config.key_file: the key is encrypted; provide it "
                          "unencrypted (protect it with file permissions)"])


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason)
    return f"{type(e).__name__}: {e}"


def build_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """A fresh server context. Raises ``WebConfigError`` (no source) naming the key and file at
    fault: missing files, a key that does not match the certificate, an encrypted key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = TLS_VERSIONS[tls.min_version]
        ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    except (ValueError, ssl.SSLError) as e:
        raise WebConfigError([f"tls_server_config.min_version/max_version: not available in "
                              f"this OpenSSL build ({e})"]) from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    named = [("cert_file", tls.cert_file), ("key_file", tls.key_file)]
    if tls.client_ca_file is not None:
        named.append(("client_ca_file", tls.client_ca_file))
    for which, p in named:
        if not p.is_file():
            raise WebConfigError([f"tls_server_config.{which}: {p} does not exist or is not a "
                                  "file"])
    try:
        # No password callback: an encrypted key fails here instead of prompting on a tty.
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=_no_password)
    except WebConfigError:
        raise
    except (OSError, ssl.SSLError, ValueError, TypeError) as e:
        raise WebConfigError([
            f"tls_server_config.cert_file/key_file: cannot load {tls.cert_file} with "
            f"{tls.key_file} ({_ssl_reason(e)}); are they PEM, unencrypted, and a matching "
            "pair?"]) from None
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except (OSError, ssl.SSLError) as e:
            raise WebConfigError([f"tls_server_config.client_ca_file: cannot load "
                                  f"{tls.client_ca_file} ({_ssl_reason(e)})"]) from None
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return ctx


class RotatingContext:
    """The TLS context for new connections, following changes of its certificate files."""

    def __init__(self, tls: TLSServerConfig) -> None:
        """Builds the first context; raises ``WebConfigError`` when it cannot."""
        self.tls = tls
        self._lock = threading.Lock()
        self._signature = file_signature(*tls.files())
        self._ctx = build_context(tls)
        self._failed: Signature | None = None

    def current(self) -> ssl.SSLContext:
        """The context to use now; rebuilt when a file changed, the previous one kept (and a
        warning logged once per change) when the new files are not usable yet. Never raises."""
        sig = file_signature(*self.tls.files())
        if sig == self._signature or sig == self._failed:
            return self._ctx
        with self._lock:
            if sig != self._signature and sig != self._failed:
                try:
                    ctx = build_context(self.tls)
                except Exception as e:  # never raise into the accept loop
                    # Often a rotation caught half-way (new cert, old key): the next change of
                    # either file tries again.
                    self._failed = sig
                    why = "; ".join(e.problems) if isinstance(e, WebConfigError) \
                        else f"{type(e).__name__}: {e}"
                    log.warning("new TLS certificate files not usable yet; still serving the "
                                "previous ones", extra={"fields": {"error": why}})
                else:
                    self._ctx, self._signature, self._failed = ctx, sig, None
                    log.info("TLS certificate files reloaded",
                             extra={"fields": {"cert_file": str(self.tls.cert_file)}})
            return self._ctx
