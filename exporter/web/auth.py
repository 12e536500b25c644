"""Who may use the endpoints: the web config's request rate limit, client-certificate SANs
(mutual TLS) and basic auth against bcrypt hashes.

Basic auth answers in the same time whether or not a user name exists (every failure runs
exactly one bcrypt check), never keeps a plaintext password, and lets an already verified
scraper skip bcrypt's deliberate cost.

A flood of wrong passwords cannot starve Prometheus: a verified scraper neither waits for nor
runs a bcrypt check, and is not charged to the rate limit; a check that finds no free bcrypt
place is answered ``503`` with ``Retry-After`` at once instead of holding a handler while it
waits; one client address runs at most one check at a time, so it never holds every place;
and the rate limit is kept per client address (IPv6 by /64, at most ``CLIENTS_MAX`` remembered),
so one client draining its budget leaves everyone else's intact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
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
CLIENTS_MAX = 1024  # client addresses whose rate-limit budget is remembered
# bcrypt is CPU-bound by design: this many checks at once (at least 2, so that one client,
# allowed one at a time, never holds them all).
BCRYPT_PLACES = max(2, min(4, os.cpu_count() or 1))
BUSY: Denied = (503, {"Retry-After": "1"}, b"busy checking passwords; try again\n")


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
        self._limits = ClientBuckets(60.0 / rate.interval, float(max(rate.burst, 1))) \
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
        self._lock = threading.Lock()
        self._checking: set[str] = set()  # clients running a bcrypt check now

    def authorize(self, request: Request) -> Denied | None:
        """None to let the request through, else 429 (this client's rate limit), 403 (client
        certificate SAN not allowed), 503 (every bcrypt place busy) or 401 (basic auth) to
        answer with."""
        client = client_key(request)
        creds = _basic_credentials(request.headers.get("Authorization")) \
            if self.users else None
        user, password = creds if creds is not None else ("", b"")
        mac, target, known = self._mac(user, password)
        verified = creds is not None and known and mac in self._verified
        if not verified and self._limits is not None and not self._limits.allow(client):
            return 429, {"Retry-After": "1"}, b"too many requests\n"
        if self.allowed_sans:
            denied = _check_sans(request, self.allowed_sans)
            if denied is not None:
                return denied
        if not self.users or verified:
            return None
        ok = self._check(client, password, target)
        if ok is None:
            log.debug("basic auth not checked: every bcrypt place is busy",
                      extra={"fields": {"remote": client}})
            return BUSY
        if ok and known and creds is not None:
            self._remember(mac)
            return None
        log.debug("basic auth failed", extra={"fields": {
            # A name we do not know may be a password typed into the wrong field: not logged.
            "user": user if user in self.users else "<unknown>",
            "remote": client, "credentials_sent": creds is not None}})
        return 401, {"WWW-Authenticate": REALM}, b"unauthorized\n"

    def _mac(self, user: str, password: bytes) -> tuple[bytes, bytes, bool]:
        """(keyed MAC of the attempt, the hash to check it against, whether the user exists)."""
        hashed = self.users.get(user)
        target = hashed if hashed is not None else self.dummy_hash
        mac = hmac.new(self._cache_key, b"\0".join((user.encode(), password, target)),
                       hashlib.sha256).digest()
        return mac, target, hashed is not None

    def _check(self, client: str, password: bytes, target: bytes) -> bool | None:
        """One bcrypt check; None, at once, when no place is free for this client."""
        with self._lock:
            if client in self._checking or len(self._checking) >= BCRYPT_PLACES:
                return None
            self._checking.add(client)
        try:
            # Always one bcrypt check, for known and unknown users and over-long passwords
            # alike, so response time does not tell which names exist.
            return bcrypt.checkpw(password[:_BCRYPT_MAX], target) \
                and len(password) <= _BCRYPT_MAX
        except ValueError:
            return False
        finally:
            with self._lock:
                self._checking.discard(client)

    def _remember(self, mac: bytes) -> None:
        with self._lock:
            if len(self._verified) >= _CACHE_MAX:
                self._verified = set()
            self._verified.add(mac)


class ClientBuckets:
    """A token bucket (``ratelimit.TokenBucket``) per client; the least recently seen client
    is forgotten past CLIENTS_MAX (it starts afresh, with a full bucket, if it comes back)."""

    def __init__(self, per_minute: float, burst: float) -> None:
        self.per_minute, self.burst = per_minute, burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one token from ``client``'s bucket; False, at once, when it is empty."""
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = TokenBucket(self.per_minute, burst=self.burst)
                if len(self._buckets) > CLIENTS_MAX:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(client)
        return bucket.acquire(deadline=time.monotonic() + _NO_WAIT)


def client_key(request: Request) -> str:
    """Whose budget a request spends: the client's IPv4 address, or its IPv6 /64 (one host
    usually holds a whole /64, and could otherwise spend a fresh budget per address)."""
    host = _remote(request)
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client of a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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
