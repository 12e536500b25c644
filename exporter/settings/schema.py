"""Configuration: pydantic models, YAML loading, environment overrides, API key loading.

Every problem is reported as ``ConfigError`` with one line per problem, each naming the key path
(``mixpeek.timeout_seconds: ...``) so that ``--config.check`` output can be acted on directly.
"""

from __future__ import annotations

import ipaddress
import os
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.settings.secrets import Secret

ENV_PREFIX = "MIXPEEK_EXPORTER_"

# Identifiers go into a URL path segment. We percent-encode them anyway, but reject what can
# never be a namespace name or id so that a typo fails loudly at --config.check time rather
# than as a 404 storm at runtime.
_IDENTIFIER_MAX = 128
_FORBIDDEN_IDENTIFIER = re.compile(r"[\x00-\x1f\x7f/\\?#%]")


class ConfigError(Exception):
    """A config file or value that cannot be used. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"invalid configuration in {source}" if source else "invalid configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


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
            raise ValueError(
                f"base_url {self.base_url!r} is plain http to a non-loopback host: the API key "
                "would cross the network in clear text. Use https, or set "
                "mixpeek.allow_insecure_http: true if you really mean it"
            )
        return self


class PollConfig(_Strict):
    interval_seconds: float = Field(default=60.0, ge=1, le=86_400)
    stale_after_seconds: float = Field(default=300.0, ge=1, le=7 * 86_400)
    counts_source: Literal["namespace", "stats_batch"] = "namespace"
    metadata_interval_seconds: float = Field(default=600.0, ge=1, le=7 * 86_400)

    @model_validator(mode="after")
    def _stale_vs_interval(self) -> PollConfig:
        if self.stale_after_seconds < self.interval_seconds:
            raise ValueError(
                f"stale_after_seconds ({self.stale_after_seconds:g}) is shorter than "
                f"interval_seconds ({self.interval_seconds:g}): every value would go stale "
                "between two polls"
            )
        return self


class DiscoveryConfig(_Strict):
    enabled: bool = False
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    refresh_interval_seconds: float = Field(default=300.0, ge=1, le=7 * 86_400)
    page_size: int = Field(default=100, ge=1, le=1000)

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


def _check_identifier(v: str) -> str:
    if not v:
        raise ValueError("is empty")
    if len(v) > _IDENTIFIER_MAX:
        raise ValueError(f"is longer than {_IDENTIFIER_MAX} characters")
    bad = _FORBIDDEN_IDENTIFIER.search(v)
    if bad:
        raise ValueError(
            f"{v!r} contains {bad.group()!r}: namespace names and ids cannot contain "
            "'/', '\\', '?', '#', '%' or control characters"
        )
    if set(v) <= {"."}:  # as client.namespace_path refuses: dots only could be a dot-segment
        raise ValueError(f"{v!r} is not a namespace identifier")
    return v


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
            try:
                _check_identifier(ident)
            except ValueError as e:
                problems.append(f"[{i}] {e}")
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
            raise ValueError("namespaces: list at least one namespace name or id to poll, "
                             "or set discovery.enabled: true")
        return self


_SHOW = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict = 3, 4, 4
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 60


def _format_validation_error(err: ValidationError) -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.yaml)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            # reprlib: bounded work even for a YAML alias bomb (exponentially nested lists).
            shown = _SHOW.repr(e["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg = f"{msg} (got {shown})"
        problems.append(f"{loc}: {msg}" if loc else msg)
    return problems


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``MIXPEEK_EXPORTER_POLL__INTERVAL_SECONDS=30`` sets ``poll.interval_seconds``.

    Values are parsed as YAML scalars so that numbers and booleans keep their types; a list
    (``MIXPEEK_EXPORTER_NAMESPACES='[a, b]'``) works the same way.
    """
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        node = raw
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = parsed
    return raw


def parse_config(text: str, source: str = "<string>",
                 environ: Mapping[str, str] | None = None) -> Config:
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "cannot be parsed"
        raise ConfigError([f"YAML syntax error{where}: {problem}"], source) from None
    except RecursionError:  # PyYAML recurses per nesting level: "[[[[..." a few thousand deep
        raise ConfigError(["YAML is nested too deeply to be a configuration"], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of keys, got {type(raw).__name__}"],
                          source)
    raw = _apply_env_overrides(raw, os.environ if environ is None else environ)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e), source) from None


def load_config(path: str | os.PathLike[str],
                environ: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file {str(p)!r} does not exist"], str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"config file {str(p)!r} cannot be read: {e.__class__.__name__}"],
                          str(p)) from None
    return parse_config(text, str(p), environ)


@dataclass(frozen=True)
class Credentials:
    key: Secret
    source: str  # "env MIXPEEK_API_KEY" or "file /path": safe to log


def load_api_key(cfg: MixpeekConfig, environ: Mapping[str, str] | None = None) -> Credentials:
    """Read the API key from the file (when configured) or the environment variable."""
    env = os.environ if environ is None else environ
    if cfg.api_key_file is not None:
        where = f"file {cfg.api_key_file}"
        try:
            value = cfg.api_key_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError([f"mixpeek.api_key_file: {cfg.api_key_file} does not exist"]
                              ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError([f"mixpeek.api_key_file: {cfg.api_key_file} cannot be read "
                               f"({e.__class__.__name__})"]) from None
    else:
        where = f"env {cfg.api_key_env}"
        value = env.get(cfg.api_key_env, "").strip()
        if not value:
            raise ConfigError([f"mixpeek.api_key_env: environment variable {cfg.api_key_env} "
                               "is not set or empty (or set mixpeek.api_key_file)"])
    if not value:
        raise ConfigError([f"mixpeek.api_key_file: {cfg.api_key_file} is empty"])
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError([f"the API key from {where} contains whitespace or control characters"])
    return Credentials(Secret(value), where)


def identifier_labels(identifier: str) -> tuple[str, str]:
    """(namespace_id, namespace_name) to show before the API has told us both."""
    if identifier.startswith("ns_"):
        return identifier, ""
    return "", identifier


LogFormat = Literal["logfmt", "json"]
