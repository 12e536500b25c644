"""``--web.config.file``: the Prometheus exporter-toolkit ``web-config.yml`` format as pydantic
models, and the one duration parser.

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
but is not is worse than a startup error. Errors are ``WebConfigError`` (a ``ConfigError``),
one ``key.path: message`` line per problem, formatted like the main config's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from exporter.settings.files import read_config_text
from exporter.settings.load import ConfigError, validation_problems, yaml_document
from exporter.settings.schema import KeyProblem

MAX_WEB_CONFIG_BYTES = 1_048_576
TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
CLIENT_AUTH_TYPES = ("NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
# exporter-toolkit modes that accept a client certificate without verifying it.
CLIENT_AUTH_UNVERIFIED = ("RequestClientCert", "RequireAnyClientCert")
# exporter-toolkit keys we know but refuse, each with the reason given to the user.
TLS_UNSUPPORTED = {
    "cert": "inline PEM is not supported; put the certificate in a file and use cert_file",
    "key": "inline PEM is not supported; put the key in a file and use key_file",
    "client_ca": "inline PEM is not supported; put the CA in a file and use client_ca_file",
    "cipher_suites": "Go cipher-suite names are not supported; the OpenSSL defaults of the "
                     "Python runtime apply (raise min_version to TLS13 to restrict them)",
    "curve_preferences": "Go curve names are not supported; the OpenSSL defaults apply",
}
HTTP_UNSUPPORTED = {
    "headers": "custom response headers are not supported (the exporter always sends "
               "X-Content-Type-Options: nosniff and Cache-Control: no-store)",
}
MAX_BCRYPT_COST = 16
MIN_RATE_INTERVAL = 0.001  # seconds
MAX_RATE_INTERVAL = 86_400.0
MAX_RATE_BURST = 100_000
BCRYPT = re.compile(r"\$2[abxy]?\$(\d\d)\$[./A-Za-z0-9]{53}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


class WebConfigError(ConfigError, ValueError):
    """A web config file that cannot be used: one line per problem, naming the key; the message
    is headed by the file. Also a ValueError, for callers that catch start-up errors as such."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: object) -> float:
    """A Prometheus duration (``100ms``, ``1m30s``, ``0``) in seconds.

    Raises ValueError for anything else (booleans, negative or unit-less numbers but 0)."""
    problem = ValueError(f"expected a duration like 100ms or 1s, got {_shown(value)}")
    if isinstance(value, bool):
        raise problem
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
        raise problem
    return total


def _key_name(key: object) -> str:
    text = str(key)
    return text if text.isprintable() and len(text) <= 40 else _shown(text)


def _chosen(value: object, default: str, allowed: tuple[str, ...]) -> str:
    """A name from ``allowed``; null or empty means ``default``, as in exporter-toolkit."""
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value.strip() not in allowed:
        raise ValueError(f"unknown value {_shown(value)} (one of {', '.join(allowed)})")
    return value.strip()


def _file(value: object, info: ValidationInfo) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("expected a file path")
    p = Path(str(value).strip())
    base = (info.context or {}).get("base") or Path.cwd()
    return p if p.is_absolute() else Path(base) / p


class _Section(BaseModel):
    """Unknown keys are refused naming the allowed ones; known-unsupported keys with why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    UNSUPPORTED: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # pydantic says "must be a mapping of keys"
        allowed = list(cls.model_fields)
        kept = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise KeyProblem(_key_name(key), "keys must be strings")
            if key in cls.UNSUPPORTED:
                if value in (None, "", [], {}):
                    continue  # an empty toolkit default is harmless
                raise KeyProblem(key, cls.UNSUPPORTED[key])
            if key not in allowed:
                raise KeyProblem(_key_name(key), f"unknown key (allowed: {', '.join(allowed)})")
            kept[key] = value
        return kept


class TLSServerConfig(_Section):
    UNSUPPORTED: ClassVar[dict[str, str]] = TLS_UNSUPPORTED
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: StrictBool = True

    @field_validator("cert_file", "key_file", mode="before")
    @classmethod
    def _required_file(cls, v: Any, info: ValidationInfo) -> Path:
        if v is None or v == "":
            raise ValueError("required when tls_server_config is set")
        return _file(v, info)

    @field_validator("client_ca_file", mode="before")
    @classmethod
    def _optional_file(cls, v: Any, info: ValidationInfo) -> Path | None:
        return None if v is None or v == "" else _file(v, info)

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _client_auth(cls, v: Any) -> str:
        if v in CLIENT_AUTH_UNVERIFIED:
            raise ValueError(f"{v} accepts client certificates without verifying them, which "
                             "this exporter does not support; use RequireAndVerifyClientCert "
                             "(or VerifyClientCertIfGiven) with client_ca_file")
        return _chosen(v, "NoClientCert", CLIENT_AUTH_TYPES)

    @field_validator("min_version", "max_version", mode="before")
    @classmethod
    def _version(cls, v: Any, info: ValidationInfo) -> str:
        return _chosen(v, "TLS12" if info.field_name == "min_version" else "TLS13",
                       TLS_VERSIONS)

    @field_validator("client_allowed_sans", mode="before")
    @classmethod
    def _sans(cls, v: Any) -> tuple[str, ...]:
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            raise ValueError("expected a list of strings")
        return tuple(v)

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        auth = self.client_auth_type
        if auth != "NoClientCert" and self.client_ca_file is None:
            raise KeyProblem("client_ca_file", f"required with client_auth_type {auth}")
        if auth == "NoClientCert" and self.client_ca_file is not None:
            # exporter-toolkit refuses this too: it looks like mTLS but checks nothing.
            raise KeyProblem("client_ca_file", "set, but client_auth_type is NoClientCert, so "
                             "no client certificate would be checked; set client_auth_type: "
                             "RequireAndVerifyClientCert")
        if self.client_allowed_sans and auth != "RequireAndVerifyClientCert":
            raise KeyProblem("client_allowed_sans", "needs client_auth_type "
                             "RequireAndVerifyClientCert (otherwise a client can connect "
                             "without a certificate, leaving no SAN to check)")
        if TLS_VERSIONS.index(self.min_version) > TLS_VERSIONS.index(self.max_version):
            raise KeyProblem("min_version", "higher than max_version")
        return self

    def files(self) -> tuple[Path, ...]:
        """The files a TLS context is built from; a change to any of them means a new one."""
        ca = (self.client_ca_file,) if self.client_ca_file is not None else ()
        return (self.cert_file, self.key_file, *ca)


class HTTPServerConfig(_Section):
    UNSUPPORTED: ClassVar[dict[str, str]] = HTTP_UNSUPPORTED
    http2: StrictBool | None = None


class RateLimitConfig(_Section):
    """exporter-toolkit's request rate limit: one request per ``interval`` on average, bursts
    of ``burst``. An interval of 0 turns it off; otherwise it is from 1 ms to 1 day."""

    interval: float = 0.0  # seconds
    burst: StrictInt = Field(default=0, ge=0, le=MAX_RATE_BURST)

    @field_validator("interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        seconds = parse_duration(v)
        # Past these the limiter's arithmetic stops limiting: an interval of 1e-28 s vanishes
        # when added to the clock, and one of 1e400 s (infinite) reads as a rate of 0, "off".
        if seconds != 0 and not MIN_RATE_INTERVAL <= seconds <= MAX_RATE_INTERVAL:
            raise ValueError(f"must be 0 (off) or from 1ms to 24h, got {_shown(v)}: a shorter "
                             "interval limits nothing the server could answer, a longer one "
                             "holds requests back for more than a day")
        return seconds


class WebSettings(_Section):
    """A whole web config file. An absent or empty section is None."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimitConfig | None = None

    @field_validator("tls_server_config", "http_server_config", "rate_limit", mode="before")
    @classmethod
    def _empty_section(cls, v: Any) -> Any:
        return None if v is None or v == {} else v

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _users(cls, v: Any) -> dict[str, str]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            # Never echo the value: it may hold a plaintext password pasted by mistake.
            raise ValueError(f"must be a mapping of user names to bcrypt hashes, got "
                             f"{type(v).__name__}")
        users = {}
        for user, hashed in v.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise KeyProblem(_key_name(user), "user name must be non-empty and contain "
                                 "no ':'")
            if not isinstance(hashed, str) or not BCRYPT.fullmatch(hashed.strip()):
                raise KeyProblem(_key_name(user), "not a bcrypt hash (expected $2y$10$ "
                                 "followed by 53 characters; create one with `htpasswd -nBC "
                                 "10 \"\" | tr -d ':\\n'`). Plaintext passwords are not accepted")
            cost = int(BCRYPT.fullmatch(hashed.strip()).group(1))  # type: ignore[union-attr]
            if cost > MAX_BCRYPT_COST:
                # Each check costs 2**cost rounds: at 17+ a single scrape (and the decoy hash
                # made at start-up for unknown users) takes many seconds of CPU.
                raise KeyProblem(_key_name(user), f"bcrypt cost {cost} is above "
                                 f"{MAX_BCRYPT_COST}: every check would take seconds of CPU; "
                                 "use a cost of 10 to 12")
            users[user] = hashed.strip()
        return users

    @property
    def tls(self) -> TLSServerConfig | None:
        return self.tls_server_config

    @property
    def rate(self) -> RateLimitConfig | None:
        """The rate limit when it is on (interval above 0), else None."""
        rl = self.rate_limit
        return rl if rl is not None and rl.interval > 0 else None


def parse_web_config(text: str, source: str = "<string>", base: Path | None = None
                     ) -> WebSettings:
    """The text of a web config file, validated; relative paths resolved against ``base``
    (the file's directory). Raises ``WebConfigError`` headed by ``source``."""
    try:
        raw = yaml_document(text, source)
    except ConfigError as e:
        raise WebConfigError(e.problems, source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError([f"the top level must be a mapping of keys, got "
                              f"{type(raw).__name__}"], source)
    try:
        return WebSettings.model_validate(raw, context={"base": base or Path.cwd()})
    except ValidationError as e:
        raise WebConfigError(validation_problems(e), source) from None


def load_web_config(path: str | os.PathLike[str]) -> WebSettings:
    """Read and validate ``--web.config.file``: a regular file of at most 1 MiB, never blocking
    (a FIFO or device is refused). Raises ``WebConfigError`` naming the file."""
    p = Path(path)
    text = read_config_text(p, MAX_WEB_CONFIG_BYTES, f"--web.config.file {str(p)!r}",
                            WebConfigError)
    return parse_web_config(text, str(p), p.parent.resolve())
