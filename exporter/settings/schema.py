"""The exporter's configuration as pydantic models: every key, its type, default and bounds.

Loading (YAML, environment overrides, error lines) lives in ``settings.load``; the API key in
``settings.secrets``. A cross-field check raises ``KeyProblem`` so that its error line names the
key at fault (``mixpeek.base_url: ...``), not the section.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from exporter.settings.identifiers import identifier_problem

STALE_AFTER_INTERVALS = 5
"""An unset ``poll.stale_after_seconds`` means this many poll intervals (300 s at 60 s)."""


ENV_NAME_MAX = 128
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_NOT_NAME = ("must name the environment variable that holds the key (e.g. MIXPEEK_API_KEY), "
                "not the key itself")


def looks_like_api_key(text: str) -> bool:
    """Whether ``text`` has the shape of an API key rather than of a name: Mixpeek keys start
    with ``sk_`` (``sk_live_...``, ``sk_test_...``); a long run of letters and digits without
    an underscore is a token too, never a variable name anyone picked."""
    return (text.startswith("sk_") or text.lower().startswith(("sk_live", "sk_test"))
            or (len(text) >= 32 and "_" not in text and any(c.isdigit() for c in text)
                and any(c.isalpha() for c in text)))


def _whole_if_whole(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _finite_number(value: Any) -> Any:
    # pydantic reads true as 1.0: a boolean where a number goes is a mistake, not a 1.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    # Checked before the bounds: "should be less than or equal to 300 (got nan)" misleads.
    try:
        number = float(value) if isinstance(value, float | str) else None
    except ValueError:
        return value  # not a number at all: pydantic says so
    if number is not None and not math.isfinite(number):
        raise ValueError("must be a finite number")
    return value


Number = Annotated[float, BeforeValidator(_finite_number),
                   PlainSerializer(_whole_if_whole, when_used="json")]
"""A finite float (NaN and infinity are refused: every comparison with them is false, so no
bound would hold), never a boolean; /config shows it as ``0`` or ``60``, not ``0.0`` or
``60.0``, when it is whole."""

MIN_REQUESTS_PER_MINUTE = 1.0
MAX_REQUESTS_PER_MINUTE = 100_000


class KeyProblem(ValueError):
    """A problem a model validator finds with one key of its model: ``key`` is appended to the
    location of the error line, so ``mixpeek: ...`` becomes ``mixpeek.base_url: ...``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MixpeekConfig(_Strict):
    base_url: str = "https://api.mixpeek.com"
    # No length bound here: pydantic's message would echo the value, which may be a key.
    api_key_env: str = "MIXPEEK_API_KEY"
    api_key_file: Path | None = None
    # Under 0.1 s hardly a connection to a remote API completes, so every poll would fail
    # as a timeout; at 1e-300 "now + timeout" is now, and none could succeed.
    timeout_seconds: Number = Field(default=10.0, ge=0.1, le=300)
    verify_tls: bool = True
    ca_file: Path | None = None
    allow_insecure_http: bool = False
    max_concurrency: int = Field(default=4, ge=1, le=256)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_seconds: Number = Field(default=0.5, ge=0, le=60)
    retry_after_max_seconds: Number = Field(default=30.0, ge=0, le=3600)
    max_response_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_requests_per_minute: Number = Field(default=60.0, ge=0, le=MAX_REQUESTS_PER_MINUTE)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        # The value is never repeated in a message: it may be the key, pasted in by mistake.
        if looks_like_api_key(v):
            raise ValueError(f"{KEY_NOT_NAME}: the value looks like an API key (it is not "
                             "repeated here). Put the key in that variable, or in a file "
                             "named by mixpeek.api_key_file")
        if not _ENV_NAME.fullmatch(v) or len(v) > ENV_NAME_MAX:
            raise ValueError(f"{KEY_NOT_NAME}: a variable name is letters, digits and _, not "
                             f"starting with a digit, at most {ENV_NAME_MAX} characters")
        return v

    @field_validator("max_requests_per_minute")
    @classmethod
    def _budget(cls, v: float) -> float:
        # The budget spaces requests (60 + 1) / v seconds apart: below 1 a minute that is
        # over a minute per request, and at 1e-17 the arithmetic of the pace gives up.
        if 0 < v < MIN_REQUESTS_PER_MINUTE:
            raise ValueError(
                f"must be 0 (no limit) or from {MIN_REQUESTS_PER_MINUTE:g} to "
                f"{MAX_REQUESTS_PER_MINUTE} (got {v:g}): it caps requests, it does not pace "
                "them, and below 1 a minute each request would wait more than a minute for "
                "its turn; to poll less often, raise poll.interval_seconds")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"must start with https:// (or http:// for loopback), got {v!r}")
        if not parts.hostname:
            raise ValueError(f"has no host: {v!r}")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; the API key comes from api_key_env "
                             "or api_key_file")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment")
        path = parts.path.rstrip("/")
        if path.lower().endswith("/v1"):
            root = urlunsplit((parts.scheme, parts.netloc, path[:-3], "", ""))
            raise ValueError(f"{v!r} ends in /v1, but the exporter adds /v1/... itself: "
                             f"drop it ({root!r})")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _plain_http(self) -> MixpeekConfig:
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.scheme == "http" and not self.allow_insecure_http and not _is_loopback(host):
            raise KeyProblem("base_url",
                f"{self.base_url!r} is plain http to a non-loopback host: the API key "
                "would cross the network in clear text. Use https, or set "
                "mixpeek.allow_insecure_http: true if you really mean it"
            )
        return self


class PollConfig(_Strict):
    interval_seconds: Number = Field(default=60.0, ge=1, le=86_400)
    # Unset (or null) means STALE_AFTER_INTERVALS x interval_seconds, filled in below, so that
    # raising only the interval never trips over a default the user did not write.
    stale_after_seconds: Number = Field(default=STALE_AFTER_INTERVALS * 60.0, ge=1,
                                       le=7 * 86_400)
    counts_source: Literal["namespace", "stats_batch"] = "namespace"
    metadata_interval_seconds: Number = Field(default=600.0, ge=1, le=7 * 86_400)

    @model_validator(mode="before")
    @classmethod
    def _default_stale_after(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("stale_after_seconds") is not None:
            return data
        interval = data.get("interval_seconds", 60.0)
        rest = {k: v for k, v in data.items() if k != "stale_after_seconds"}
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            return rest  # the interval's own error line says what is wrong
        try:
            stale = STALE_AFTER_INTERVALS * float(interval)
        except OverflowError:
            return rest
        if not math.isfinite(stale):
            return rest
        # An interval out of bounds is reported on its own key; keep this one in bounds.
        return {**rest, "stale_after_seconds": min(max(stale, 1.0), 7 * 86_400.0)}

    @model_validator(mode="after")
    def _stale_vs_interval(self) -> PollConfig:
        if self.stale_after_seconds < self.interval_seconds:
            raise KeyProblem("stale_after_seconds",
                f"stale_after_seconds ({self.stale_after_seconds:g}) is shorter than "
                f"interval_seconds ({self.interval_seconds:g}): every value would go stale "
                "between two polls (leave it unset for "
                f"{STALE_AFTER_INTERVALS} x interval_seconds)")
        return self


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used as a regular expression, or None when it can. Compiling
    a user's pattern fails in more ways than ``re.error``: ``a{4294967295}`` raises
    OverflowError, a few thousand nested groups RecursionError."""
    shown = repr(pattern) if len(pattern) <= 40 else f"{pattern[:30]!r}... ({len(pattern)} " \
        "characters)"
    try:
        re.compile(pattern)
    except RecursionError:
        why = "nested too deeply"
    except (re.error, OverflowError, ValueError, TypeError) as e:
        why = str(e)[:100]
    else:
        return None
    return f"{shown} is not a valid regular expression ({why})"


class DiscoveryConfig(_Strict):
    # Unset (absent or null) inside a Config: on when no namespace is listed, off otherwise
    # (Config fills it in). False here keeps a DiscoveryConfig built on its own a plain bool.
    enabled: bool = False
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    refresh_interval_seconds: Number = Field(default=300.0, ge=1, le=7 * 86_400)
    page_size: int = Field(default=100, ge=1, le=1000)
    max_namespaces: int = Field(default=10_000, ge=1, le=1_000_000)

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        problems = [f"[{i}] {problem}" for i, pattern in enumerate(v)
                    if (problem := regex_problem(pattern))]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    def matches(self, namespace_id: str, namespace_name: str) -> bool:
        """Include (any pattern, or all when empty) minus exclude; tried on name and id."""
        def hit(patterns: list[str]) -> bool:
            return any(re.search(p, namespace_name) or re.search(p, namespace_id)
                       for p in patterns)
        return (not self.include or hit(self.include)) and not hit(self.exclude)


class Config(_Strict):
    mixpeek: MixpeekConfig = MixpeekConfig()
    poll: PollConfig = PollConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    namespaces: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _discovery_default(cls, data: Any) -> Any:
        """An unset discovery.enabled means: on when no namespace is listed. One rule with or
        without a config file, environment overrides included, as in the Helm chart."""
        if not isinstance(data, dict):
            return data
        listed = bool(data.get("namespaces"))
        disc = data.get("discovery", {})
        if isinstance(disc, dict) and disc.get("enabled") is None:
            return {**data, "discovery": {**disc, "enabled": not listed}}
        if isinstance(disc, DiscoveryConfig) and "enabled" not in disc.model_fields_set:
            return {**data, "discovery": disc.model_copy(update={"enabled": not listed})}
        return data

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespaces_list(cls, v: Any) -> Any:
        if v is None:
            return []
        return v

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        problems = []
        for i, ident in enumerate(v):
            problem = identifier_problem(ident)
            if problem:
                problems.append(f"[{i}] {problem}")
                continue
            if ident in seen:
                problems.append(f"[{i}] {ident!r} is listed twice")
            seen.add(ident)
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _something_to_poll(self) -> Config:
        # Unset, discovery.enabled is on without namespaces: only an explicit false gets here.
        if not self.namespaces and not self.discovery.enabled:
            raise KeyProblem("discovery.enabled",
                             "is false and no namespaces are listed, so there is nothing to "
                             "poll: list namespace names or ids under namespaces, or remove "
                             "discovery.enabled (unset, discovery is on when no namespace is "
                             "listed)")
        return self
