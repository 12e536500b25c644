"""Who may use the endpoints: the web config's request rate limit, client-certificate SANs
(mutual TLS) and basic auth against bcrypt hashes.

Basic auth answers in the same time whether or not a user name exists (every failure runs
exactly one bcrypt check), never keeps a plaintext password, and lets an already verified
scraper skip bcrypt's deliberate cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import bcrypt

from exporter.ratelimit import TokenBucket
from exporter.settings.web import BCRYPT, WebSettings

log = logging.getLogger(__name__)

# (status, headers, body) to answer with instead of the request's own answer.
Denied = tuple[int, dict[str, str], bytes]

REALM = 'Basic realm="mixpeek-exporter", charset="UTF-8"'
# bcrypt only reads the first 72 bytes; longer passwords are refused, not truncated, so that
# two different long passwords can never both be accepted.
_BCRYPT_MAX = 72
_CACHE_MAX = 256
# A rate-limited request is refused, not queued; this is the bucket's rounding allowance.
_NO_WAIT = 0.001


class Request(Protocol):
    """The bits of BaseHTTPRequestHandler that ``authorize`` reads."""

    headers: Mapping[str, str]
    client_address: Any
    connection: Any


class Authenticator:
    """The checks of one version of the web config; a changed file gets a new one (so the
    verified-scraper cache and the rate limit start afresh)."""

    def __init__(self, settings: WebSettings) -> None:
        self.users = {u: h.encode() for u, h in settings.basic_auth_users.items()}
        tls = settings.tls
        self.allowed_sans = tls.client_allowed_sans if tls is not None else ()
        rate = settings.rate
        self._bucket = TokenBucket(60.0 / rate.interval, burst=float(max(rate.burst, 1))) \
            if rate is not None else None
        self.dummy_hash = b""
        if self.users:
            # Unknown users are checked against this hash, at the highest configured cost, so
            # the answer takes as long whether or not the user name exists.
            cost = max(_bcrypt_cost(h) for h in self.users.values())
            self.dummy_hash = bcrypt.hashpw(secrets.token_bytes(16),
                                            bcrypt.gensalt(rounds=max(4, min(cost, 31))))
        # Verified (user, password, hash) triples, as keyed MACs: the plaintext is never kept,
        # and repeated scrapes do not pay bcrypt's deliberate cost every time.
        self._cache_key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        # bcrypt is CPU-bound by design; a flood of bad passwords gets these slots only, and
        # already-verified scrapers skip the queue.
        self._bcrypt_slots = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))

    def authorize(self, request: Request) -> Denied | None:
        """None to let the request through, else 429 (rate limit), 403 (client certificate
        SAN not allowed) or 401 (basic auth) to answer with."""
        if self._bucket is not None and not self._bucket.acquire(
                deadline=time.monotonic() + _NO_WAIT):
            return 429, {"Retry-After": "1"}, b"too many requests\n"
        if self.allowed_sans:
            denied = _check_sans(request, self.allowed_sans)
            if denied is not None:
                return denied
        if not self.users:
            return None
        creds = _basic_credentials(request.headers.get("Authorization"))
        user, password = creds if creds is not None else ("", b"")
        if creds is not None and self._verify(user, password):
            return None
        log.debug("basic auth failed", extra={"fields": {
            # A name we do not know may be a password typed into the wrong field: not logged.
            "user": user if user in self.users else "<unknown>",
            "remote": _remote(request), "credentials_sent": creds is not None}})
        return 401, {"WWW-Authenticate": REALM}, b"unauthorized\n"

    def _verify(self, user: str, password: bytes) -> bool:
        hashed = self.users.get(user)
        known = hashed is not None
        target = hashed if hashed is not None else self.dummy_hash
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


def _bcrypt_cost(hashed: bytes) -> int:
    m = BCRYPT.fullmatch(hashed.decode())
    return int(m.group(1)) if m else 10


def _check_sans(request: Request, allowed: tuple[str, ...]) -> Denied | None:
    getpeercert = getattr(request.connection, "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    sans = [v for _, v in (cert or {}).get("subjectAltName", ())]
    if any(s in allowed for s in sans):
        return None
    log.debug("client certificate SAN not allowed",
              extra={"fields": {"remote": _remote(request), "sans": ",".join(sans)}})
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


def _remote(request: Request) -> str:
    addr = getattr(request, "client_address", None)
    return str(addr[0]) if isinstance(addr, tuple) and addr else ""
