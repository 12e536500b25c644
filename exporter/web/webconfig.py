"""``--web.config.file``: TLS, client certificates, basic auth and a request rate limit for the
HTTP endpoints, in the Prometheus exporter-toolkit ``web-config.yml`` format.

Supported (same key names and meanings as exporter-toolkit)::

    tls_server_config:
      cert_file: server.crt          # required with tls_server_config
      key_file: server.key           # required with tls_server_config
      client_auth_type: NoClientCert # | VerifyClientCertIfGiven | RequireAndVerifyClientCert
      client_ca_file: ca.crt         # required when client certificates are verified
      client_allowed_sans: [prometheus.monitoring.svc]
      min_version: TLS12             # TLS10 | TLS11 | TLS12 | TLS13
      max_version: TLS13
      prefer_server_cipher_suites: true
    http_server_config:
      http2: true                    # accepted and ignored: the server speaks HTTP/1.1
    basic_auth_users:
      prometheus: $2b$10$...         # bcrypt hashes only
    rate_limit:
      interval: 100ms                # one request per interval on average
      burst: 10

Relative paths are relative to the web config file, as in exporter-toolkit. Keys the toolkit
has but this exporter cannot honour (inline PEM, Go cipher-suite and curve names, the two
client-auth modes that accept unverified certificates, custom response headers) are refused
with a message that says so, never silently ignored: a security setting that looks applied
but is not is worse than a startup error.

The file and the certificate files are checked for changes (size, mtime, inode) on each new
connection and request, so rotated certificates and changed users apply without a restart.
A changed file that is invalid, or that would switch TLS or authentication *off*, is refused
and the running settings stay: a half-written or emptied file must not downgrade security.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import yaml

log = logging.getLogger(__name__)

Denied = tuple[int, dict[str, str], bytes]

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "client_allowed_sans",
            "min_version", "max_version", "prefer_server_cipher_suites")
# exporter-toolkit keys we know but refuse, each with the reason given to the user.
TLS_UNSUPPORTED = {
    "cert": "inline PEM is not supported; put the certificate in a file and use cert_file",
    "key": "inline PEM is not supported; put the key in a file and use key_file",
    "client_ca": "inline PEM is not supported; put the CA in a file and use client_ca_file",
    "cipher_suites": "Go cipher-suite names are not supported; the OpenSSL defaults of the "
                     "Python runtime apply (raise min_version to TLS13 to restrict them)",
    "curve_preferences": "Go curve names are not supported; the OpenSSL defaults apply",
}
HTTP_KEYS = ("http2",)
HTTP_UNSUPPORTED = {
    "headers": "custom response headers are not supported (the exporter always sends "
               "X-Content-Type-Options: nosniff and Cache-Control: no-store)",
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
CLIENT_AUTH_UNSUPPORTED = ("RequestClientCert", "RequireAnyClientCert")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
REALM = 'Basic realm="mixpeek-exporter", charset="UTF-8"'
# bcrypt only reads the first 72 bytes; longer passwords are refused, not truncated, so that
# two different long passwords can never both be accepted.
_BCRYPT_MAX = 72
_CACHE_MAX = 256


class WebConfigError(ValueError):
    """A web config file that cannot be used; the message names the file and the key."""


class _Request(Protocol):
    """The bits of BaseHTTPRequestHandler that ``authorize`` reads."""

    headers: Mapping[str, str]
    client_address: Any
    connection: Any


# -- parsing ------------------------------------------------------------------------------------


def parse_duration(value: object, where: str) -> float:
    """A Prometheus duration (``100ms``, ``1m30s``, ``0``) in seconds."""
    if isinstance(value, bool):
        raise WebConfigError(f"{where}: expected a duration like 100ms or 1s, got {value!r}")
    if isinstance(value, int | float) and value == 0:
        return 0.0
    text = str(value).strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise WebConfigError(f"{where}: expected a duration like 100ms or 1s, got {value!r}")
    return total


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping of keys, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise WebConfigError(f"{where}: keys must be strings, got {k!r}")
    return value


def _check_keys(section: dict[str, Any], where: str, allowed: tuple[str, ...],
                unsupported: Mapping[str, str] | None = None) -> None:
    for k in section:
        if unsupported and k in unsupported:
            if section[k] in (None, "", []):
                continue  # an empty toolkit default is harmless
            raise WebConfigError(f"{where}.{k}: {unsupported[k]}")
        if k not in allowed:
            raise WebConfigError(f"{where}.{k}: unknown key (allowed: {', '.join(allowed)})")


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WebConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _path(value: object, where: str, base: Path) -> Path:
    p = Path(_string(value, where))
    return p if p.is_absolute() else base / p


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_auth_name: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_ciphers: bool = True

    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + (
            (self.client_ca_file,) if self.client_ca_file is not None else ())

    def build_context(self) -> ssl.SSLContext:
        """A fresh server context; raises WebConfigError naming the file at fault."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = self.min_version
            ctx.maximum_version = self.max_version
        except (ValueError, ssl.SSLError) as e:
            raise WebConfigError(f"tls_server_config.min_version/max_version: not available "
                                 f"in this OpenSSL build ({e})") from None
        if self.prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        named = [("cert_file", self.cert_file), ("key_file", self.key_file)]
        if self.client_ca_file is not None:
            named.append(("client_ca_file", self.client_ca_file))
        for which, p in named:
            if not p.is_file():
                raise WebConfigError(f"tls_server_config.{which}: {p} does not exist or is not "
                                     "a file")
        try:
            # No password callback: an encrypted key fails here instead of prompting on a tty.
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file), password=_no_password)
        except (OSError, ssl.SSLError, ValueError, TypeError) as e:
            raise WebConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {self.cert_file} with "
                f"{self.key_file} ({_ssl_reason(e)}); are they PEM, unencrypted, and a "
                "matching pair?") from None
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except (OSError, ssl.SSLError) as e:
                raise WebConfigError(f"tls_server_config.client_ca_file: cannot load "
                                     f"{self.client_ca_file} ({_ssl_reason(e)})") from None
        ctx.verify_mode = self.client_auth
        return ctx


def _no_password() -> bytes:
    raise WebConfigError("tls_server_config.key_file: the key is encrypted; provide it "
                         "unencrypted (protect it with file permissions)")


def _ssl_reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason)
    return f"{type(e).__name__}: {e}"


def _parse_tls(raw: object, base: Path) -> TLSSettings | None:
    if raw is None:
        return None
    sec = _mapping(raw, "tls_server_config")
    if not sec:
        return None
    _check_keys(sec, "tls_server_config", TLS_KEYS, TLS_UNSUPPORTED)
    for k in ("cert_file", "key_file"):
        if sec.get(k) in (None, ""):
            raise WebConfigError(f"tls_server_config.{k}: required when tls_server_config is set")
    cert = _path(sec["cert_file"], "tls_server_config.cert_file", base)
    key = _path(sec["key_file"], "tls_server_config.key_file", base)
    auth_name = _string(sec.get("client_auth_type") or "NoClientCert",
                        "tls_server_config.client_auth_type")
    if auth_name in CLIENT_AUTH_UNSUPPORTED:
        raise WebConfigError(
            f"tls_server_config.client_auth_type: {auth_name} accepts client certificates "
            "without verifying them, which this exporter does not support; use "
            "RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file")
    if auth_name not in CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config.client_auth_type: unknown value {auth_name!r} "
                             f"(one of {', '.join(CLIENT_AUTH)})")
    ca = sec.get("client_ca_file")
    ca_path = _path(ca, "tls_server_config.client_ca_file", base) if ca not in (None, "") \
        else None
    if auth_name != "NoClientCert" and ca_path is None:
        raise WebConfigError(f"tls_server_config.client_ca_file: required with "
                             f"client_auth_type {auth_name}")
    if auth_name == "NoClientCert" and ca_path is not None:
        # exporter-toolkit refuses this too: it looks like mTLS but checks nothing.
        raise WebConfigError("tls_server_config.client_ca_file: set, but client_auth_type is "
                             "NoClientCert, so no client certificate would be checked; set "
                             "client_auth_type: RequireAndVerifyClientCert")
    sans_raw = sec.get("client_allowed_sans") or []
    if not isinstance(sans_raw, list) or not all(isinstance(s, str) and s for s in sans_raw):
        raise WebConfigError("tls_server_config.client_allowed_sans: expected a list of strings")
    if sans_raw and auth_name != "RequireAndVerifyClientCert":
        raise WebConfigError("tls_server_config.client_allowed_sans: needs client_auth_type "
                             "RequireAndVerifyClientCert (otherwise a client can connect "
                             "without a certificate, leaving no SAN to check)")
    versions = {}
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = _string(sec.get(k) or default, f"tls_server_config.{k}")
        if v not in TLS_VERSIONS:
            raise WebConfigError(f"tls_server_config.{k}: unknown value {v!r} "
                                 f"(one of {', '.join(TLS_VERSIONS)})")
        versions[k] = TLS_VERSIONS[v]
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError("tls_server_config.min_version: higher than max_version")
    prefer = sec.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites: expected true or "
                             f"false, got {prefer!r}")
    return TLSSettings(cert, key, CLIENT_AUTH[auth_name], auth_name, ca_path, tuple(sans_raw),
                       versions["min_version"], versions["max_version"], prefer)


def _parse_users(raw: object) -> dict[str, bytes]:
    sec = _mapping(raw, "basic_auth_users")
    users: dict[str, bytes] = {}
    for user, hashed in sec.items():
        if not user or ":" in user:
            raise WebConfigError(f"basic_auth_users: user name {user!r} must be non-empty and "
                                 "contain no ':'")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed.strip()):
            # Never echo the value: it may be a plaintext password pasted by mistake.
            raise WebConfigError(
                f"basic_auth_users.{user}: not a bcrypt hash (expected $2y$10$ followed by 53 "
                "characters; create one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`). "
                "Plaintext passwords are not accepted")
        users[user] = hashed.strip().encode()
    return users


def _parse_http(raw: object) -> None:
    sec = _mapping(raw, "http_server_config")
    _check_keys(sec, "http_server_config", HTTP_KEYS, HTTP_UNSUPPORTED)
    if "http2" in sec and not isinstance(sec["http2"], bool):
        raise WebConfigError(f"http_server_config.http2: expected true or false, got "
                             f"{sec['http2']!r}")


@dataclass(frozen=True)
class RateLimit:
    interval: float
    burst: int


def _parse_rate_limit(raw: object) -> RateLimit | None:
    sec = _mapping(raw, "rate_limit")
    if not sec:
        return None
    _check_keys(sec, "rate_limit", ("interval", "burst"))
    interval = parse_duration(sec.get("interval", 0), "rate_limit.interval")
    burst = sec.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise WebConfigError(f"rate_limit.burst: expected a non-negative integer, got {burst!r}")
    if interval <= 0:
        return None  # exporter-toolkit: an interval of 0 disables the limiter
    return RateLimit(interval, max(burst, 1))


@dataclass(frozen=True)
class _Settings:
    tls: TLSSettings | None
    users: dict[str, bytes]
    rate_limit: RateLimit | None
    dummy_hash: bytes = b""
    signature: tuple[Any, ...] = field(default=())


def _file_signature(*paths: Path) -> tuple[Any, ...]:
    """What changes when a file is rewritten or replaced (k8s swaps a symlink, editors rename)."""
    out: list[Any] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
        except OSError as e:
            out.append((str(p), type(e).__name__))
    return tuple(out)


def parse(text: str, source: str = "<string>", base: Path | None = None) -> _Settings:
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise WebConfigError(f"{source}: YAML syntax error{where}") from None
    try:
        top = _mapping(raw, "top level")
        _check_keys(top, "web config", TOP_KEYS)
        base = base or Path.cwd()
        tls = _parse_tls(top.get("tls_server_config"), base)
        _parse_http(top.get("http_server_config"))
        users = _parse_users(top.get("basic_auth_users"))
        rate = _parse_rate_limit(top.get("rate_limit"))
    except WebConfigError as e:
        raise WebConfigError(f"{source}: {e}") from None
    dummy = b""
    if users:
        # Unknown users are checked against this hash, at the highest configured cost, so the
        # answer takes as long whether or not the user name exists.
        cost = max(_bcrypt_cost(h) for h in users.values())
        dummy = bcrypt.hashpw(secrets.token_bytes(16),
                              bcrypt.gensalt(rounds=max(4, min(cost, 31))))
    return _Settings(tls, users, rate, dummy)


def _bcrypt_cost(hashed: bytes) -> int:
    m = _BCRYPT.fullmatch(hashed.decode())
    return int(m.group(1)) if m else 10


class _Bucket:
    def __init__(self, rl: RateLimit) -> None:
        self.rl = rl
        self._tokens = float(rl.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.rl.burst),
                               self._tokens + (now - self._stamp) / self.rl.interval)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


# -- the object the server uses -------------------------------------------------------------------


class WebConfig:
    """Loaded once at start; afterwards it follows changes of its files on its own."""

    def __init__(self, path: Path, settings: _Settings, signature: tuple[Any, ...]) -> None:
        self.path = path
        self._settings = settings
        self._signature = signature
        self._rejected_signature: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._ctx_signature: tuple[Any, ...] | None = None
        self._ctx_failed_signature: tuple[Any, ...] | None = None
        self._bucket = _Bucket(settings.rate_limit) if settings.rate_limit else None
        # Verified (user, password, hash) triples, as keyed MACs: the plaintext is never kept,
        # and repeated scrapes do not pay bcrypt's deliberate cost every time.
        self._cache_key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        # bcrypt is CPU-bound by design; a flood of bad passwords gets these slots only, and
        # already-verified scrapers skip the queue.
        self._bcrypt_slots = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
        if settings.tls is not None:
            self._ctx = settings.tls.build_context()
            self._ctx_signature = _file_signature(*settings.tls.files())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WebConfig:
        p = Path(path)
        signature = _file_signature(p)
        settings = cls._read(p)
        try:
            web = cls(p, settings, signature)
        except WebConfigError as e:
            raise WebConfigError(f"{p}: {e}") from None
        log.info("web config loaded", extra={"fields": web._describe()})
        if settings.users and settings.tls is None:
            log.warning("basic auth without tls_server_config: passwords cross the network in "
                        "clear text; add TLS unless a proxy in front terminates it")
        return web

    @staticmethod
    def _read(p: Path) -> _Settings:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise WebConfigError(f"--web.config.file {str(p)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise WebConfigError(f"--web.config.file {str(p)!r} cannot be read "
                                 f"({type(e).__name__})") from None
        return parse(text, str(p), p.parent.resolve())

    def _describe(self) -> dict[str, Any]:
        s = self._settings
        return {"file": str(self.path), "tls": s.tls is not None,
                "client_auth": s.tls.client_auth_name if s.tls else "",
                "basic_auth_users": len(s.users),
                "rate_limit": f"{s.rate_limit.interval:g}s/{s.rate_limit.burst}"
                if s.rate_limit else ""}

    @property
    def tls_enabled(self) -> bool:
        return self._settings.tls is not None

    # -- following file changes -------------------------------------------------------------

    def _refresh(self) -> _Settings:
        sig = _file_signature(self.path)
        if sig == self._signature or sig == self._rejected_signature:
            return self._settings
        with self._lock:
            if sig == self._signature or sig == self._rejected_signature:
                return self._settings
            try:
                new = self._read(self.path)
                old = self._settings
                if old.tls is not None and new.tls is None:
                    raise WebConfigError("it would turn TLS off; restart the exporter to do that")
                if old.users and not new.users:
                    raise WebConfigError("it would turn basic auth off; restart the exporter "
                                         "to do that")
                ctx = new.tls.build_context() if new.tls is not None else None
            except WebConfigError as e:
                self._rejected_signature = sig
                log.error("web config change refused; keeping the running settings",
                          extra={"fields": {"error": str(e)}})
                return self._settings
            except Exception as e:  # never let a bad file take the server down
                self._rejected_signature = sig
                log.error("web config change refused; keeping the running settings",
                          extra={"fields": {"error": f"{type(e).__name__}: {e}"}})
                return self._settings
            self._settings, self._signature = new, sig
            self._rejected_signature = None
            self._ctx = ctx
            self._ctx_signature = _file_signature(*new.tls.files()) if new.tls else None
            self._bucket = _Bucket(new.rate_limit) if new.rate_limit else None
            self._verified = set()
            log.info("web config reloaded", extra={"fields": self._describe()})
            return new

    # -- TLS --------------------------------------------------------------------------------

    def tls_context(self) -> ssl.SSLContext | None:
        """The context for a new connection; rebuilt when a certificate file changes.

        Called by the accept loop for every connection, so it never raises: on any problem
        the last good context keeps serving.
        """
        try:
            settings = self._refresh()
            tls = settings.tls
            if tls is None:
                return None
            sig = _file_signature(*tls.files())
            if sig == self._ctx_signature or sig == self._ctx_failed_signature:
                return self._ctx
            with self._lock:
                if sig != self._ctx_signature and sig != self._ctx_failed_signature:
                    try:
                        ctx = tls.build_context()
                    except WebConfigError as e:
                        # Often a rotation caught half-way (new cert, old key): the next
                        # change of either file tries again.
                        self._ctx_failed_signature = sig
                        log.warning("new TLS certificate files not usable yet; still serving "
                                    "the previous ones", extra={"fields": {"error": str(e)}})
                    else:
                        self._ctx, self._ctx_signature = ctx, sig
                        self._ctx_failed_signature = None
                        log.info("TLS certificate files reloaded",
                                 extra={"fields": {"cert_file": str(tls.cert_file)}})
            return self._ctx
        except Exception:
            log.exception("TLS context check failed; serving the previous context")
            return self._ctx

    # -- authorization ------------------------------------------------------------------------

    def authorize(self, handler: _Request) -> Denied | None:
        """None to let the request through, else (status, headers, body) to answer with."""
        settings = self._refresh()
        bucket = self._bucket
        if bucket is not None and not bucket.take():
            return 429, {"Retry-After": "1"}, b"too many requests\n"
        if settings.tls is not None and settings.tls.client_allowed_sans:
            denied = self._check_sans(handler, settings.tls.client_allowed_sans)
            if denied is not None:
                return denied
        if not settings.users:
            return None
        creds = _basic_credentials(handler.headers.get("Authorization"))
        user, password = creds if creds is not None else ("", b"")
        if creds is not None and self._verify(settings, user, password):
            return None
        log.debug("basic auth failed", extra={"fields": {
            # A name we do not know may be a password typed into the wrong field: not logged.
            "user": user if user in settings.users else "<unknown>",
            "remote": _remote(handler), "credentials_sent": creds is not None}})
        return 401, {"WWW-Authenticate": REALM}, b"unauthorized\n"

    def _verify(self, settings: _Settings, user: str, password: bytes) -> bool:
        hashed = settings.users.get(user)
        known = hashed is not None
        target = hashed if hashed is not None else settings.dummy_hash
        mac = hmac.new(self._cache_key, b"\0".join((user.encode(), password, target)),
                       hashlib.sha256).digest()
        if known and mac in self._verified:
            return True
        too_long = len(password) > _BCRYPT_MAX
        with self._bcrypt_slots:
            try:
                # Always one bcrypt check, for known and unknown users and over-long
                # passwords alike, so response time does not tell which names exist.
                ok = bcrypt.checkpw(password[:_BCRYPT_MAX], target)
            except ValueError:
                ok = False
        ok = ok and known and not too_long
        if ok:
            if len(self._verified) >= _CACHE_MAX:
                self._verified = set()
            self._verified.add(mac)
        return ok

    @staticmethod
    def _check_sans(handler: _Request, allowed: tuple[str, ...]) -> Denied | None:
        getpeercert = getattr(handler.connection, "getpeercert", None)
        cert = getpeercert() if getpeercert is not None else None
        sans = [v for _, v in (cert or {}).get("subjectAltName", ())]
        if any(s in allowed for s in sans):
            return None
        log.debug("client certificate SAN not allowed",
                  extra={"fields": {"remote": _remote(handler), "sans": ",".join(sans)}})
        return 403, {}, b"client certificate not allowed\n"


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user_b, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        user = user_b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return user, password


def _remote(handler: _Request) -> str:
    addr = getattr(handler, "client_address", None)
    return str(addr[0]) if isinstance(addr, tuple) and addr else ""
