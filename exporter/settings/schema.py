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
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exporter.settings.identifiers import identifier_problem

STALE_AFTER_INTERVALS = 5
"""An unset ``poll.stale_after_seconds`` means this many poll intervals (300 s at 60 s)."""


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
    api_key_env: str = Field(default="MIXPEEK_API_KEY", min_length=1, max_length=256)
    api_key_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    verify_tls: bool = True
    ca_file: Path | None = None
    allow_insecure_http: bool = False
    max_concurrency: int = Field(default=4, ge=1, le=256)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    retry_after_max_seconds: float = Field(default=30.0, ge=0, le=3600)
    max_response_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_requests_per_minute: float = Field(default=60.0, ge=0, le=100_000)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be an environment variable name (letters, digits, _)")
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
    interval_seconds: float = Field(default=60.0, ge=1, le=86_400)
    # Unset (or null) means STALE_AFTER_INTERVALS x interval_seconds, filled in below, so that
    # raising only the interval never trips over a default the user did not write.
    stale_after_seconds: float = Field(default=STALE_AFTER_INTERVALS * 60.0, ge=1,
                                       le=7 * 86_400)
    counts_source: Literal["namespace", "stats_batch"] = "namespace"
    metadata_interval_seconds: float = Field(default=600.0, ge=1, le=7 * 86_400)

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


class DiscoveryConfig(_Strict):
    enabled: bool = False
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    refresh_interval_seconds: float = Field(default=300.0, ge=1, le=7 * 86_400)
    page_size: int = Field(default=100, ge=1, le=1000)
    max_namespaces: int = Field(default=10_000, ge=1)

    @field_validator("include", "exclude")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        problems = []
        for i, pattern in enumerate(v):
            try:
                re.compile(pattern)
            except re.error as e:
                problems.append(f"[{i}] {pattern!r} is not a valid regular expression ({e})")
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
        if not self.namespaces and not self.discovery.enabled:
            raise KeyProblem("namespaces", "list at least one namespace name or id to poll, "
                             "or set discovery.enabled: true")
        return self
