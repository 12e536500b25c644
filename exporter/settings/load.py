"""From text to a validated model: safe YAML, environment overrides, and error lines.

Every problem becomes a ``ConfigError`` holding one line per problem, each naming the key path
(``mixpeek.timeout_seconds: ...``), and for a value from the environment the variable too, so
``--config.check`` output can be acted on directly. The same formatter serves the exporter
config and the ``--web.config.file``.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from exporter.settings.files import read_config_text
from exporter.settings.schema import Config, KeyProblem

ENV_PREFIX = "MIXPEEK_EXPORTER_"
DEFAULT_CONFIG_FILE = "config.yaml"
NO_FILE = "no config file: defaults with discovery"
MAX_CONFIG_BYTES = 8 * 1_048_576  # 10,000 listed namespaces are about 300 KB

__all__ = ["ENV_PREFIX", "NO_FILE", "ConfigError", "KeyProblem", "config_path", "describe",
           "env_overrides", "load_config", "parse_config", "validation_problems",
           "yaml_document"]


class ConfigError(Exception):
    """A config file or value that cannot be used. ``problems`` holds one line per problem;
    ``source`` names where it came from (a path) and heads the message."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"invalid configuration in {source}" if source else "invalid configuration"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


def yaml_document(text: str, source: str) -> Any:
    """``text`` parsed as one YAML document with the safe loader; empty text is None.

    Raises ``ConfigError`` (with ``source``) for a syntax error, giving line and column, or for
    nesting deeper than the parser can recurse. Aliases are not expanded into copies, so an
    alias bomb costs memory only for its text.
    """
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "cannot be parsed"
        raise ConfigError([f"YAML syntax error{where}: {problem}"], source) from None
    except RecursionError:  # PyYAML recurses per nesting level: "[[[[..." a few thousand deep
        raise ConfigError(["YAML is nested too deeply to be a configuration"], source) from None


_SHOW = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict = 3, 4, 4
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 60

# pydantic messages that name a Python class get a plain one instead.
_PLAIN = {
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
    "dataclass_type": "must be a mapping of keys",
    "path_type": "must be a file path",
    "is_instance_of": "has the wrong type",
    "is_subclass_of": "has the wrong type",
}


def _shown(value: Any) -> str:
    # reprlib: bounded work even for a YAML alias bomb (exponentially nested lists).
    shown = _SHOW.repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def validation_problems(err: ValidationError,
                        env_sources: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem in ``err``: ``key.path: message``, or, when the key was set by an
    environment variable (``env_sources`` maps a key path to its variable's name),
    ``VARIABLE (key.path): message``. No Python class name appears in a line."""
    sources = env_sources or {}
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        msg = e["msg"]
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, KeyProblem):
            loc.append(cause.key)
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.yaml)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] in _PLAIN:
            msg = f"{_PLAIN[e['type']]} (got {_shown(e.get('input'))})"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {_shown(e['input'])})"
        path = ".".join(loc)
        variables = [v for v in (sources.get(".".join(loc[:n])) for n in range(len(loc), 0, -1))
                     if v][:1]
        if not variables and e["type"] == "extra_forbidden":
            # MIXPEEK_EXPORTER_POL__X made an unknown section "pol": name what made it.
            variables = sorted(v for k, v in sources.items() if k.startswith(path + "."))
        if variables:
            path = f"{', '.join(variables)} ({path})"
        problems.append(f"{path}: {msg}" if path else msg)
    return problems


def env_overrides(model: type[BaseModel], environ: Mapping[str, str],
                  prefix: str = ENV_PREFIX) -> dict[tuple[str, ...], tuple[str, Any]]:
    """The overrides in ``environ``: key path -> (variable name, value parsed as YAML).

    Only ``<PREFIX><SECTION>__<KEY>`` and ``<PREFIX><TOP_LEVEL_KEY>`` for a key of ``model``
    that is not a section are overrides. Anything else with the prefix is someone else's:
    Kubernetes injects ``MIXPEEK_EXPORTER_PORT=tcp://...``, ``..._SERVICE_HOST`` and
    ``..._PORT_10117_TCP_ADDR`` into every pod beside a Service of that name.
    """
    sections = {name for name, f in model.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    top_keys = set(model.model_fields) - sections
    found: dict[tuple[str, ...], tuple[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if "__" not in rest and rest.lower() not in top_keys:
            continue
        path = tuple(p.lower() for p in rest.split("__"))
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except (yaml.YAMLError, RecursionError):
            parsed = value
        found[path] = (name, parsed)
    return found


def _apply(raw: dict[str, Any], overrides: Mapping[tuple[str, ...], tuple[str, Any]]) -> None:
    for path, (_, value) in sorted(overrides.items()):
        node = raw
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = value


def parse_config(text: str, source: str = "<string>",
                 environ: Mapping[str, str] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> Config:
    """``text`` (YAML) with the environment's overrides applied over it, validated.

    ``defaults`` are keys the text starts from (the no-file mode turns discovery on). Raises
    ``ConfigError`` with one line per problem.
    """
    raw = yaml_document(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of keys, got {type(raw).__name__}"],
                          source)
    for section, values in (defaults or {}).items():
        raw.setdefault(section, dict(values) if isinstance(values, Mapping) else values)
    overrides = env_overrides(Config, os.environ if environ is None else environ)
    _apply(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        sources = {".".join(path): name for path, (name, _) in overrides.items()}
        raise ConfigError(validation_problems(e, sources), source) from None


def config_path(flag: str | None, cwd: Path | None = None) -> Path | None:
    """The config file to read: the one named by ``--config.file``, else ``./config.yaml``
    when it exists, else None (run on defaults with discovery, like node_exporter)."""
    if flag is not None:
        return Path(flag)
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG_FILE
    return Path(DEFAULT_CONFIG_FILE) if default.exists() else None


def describe(path: Path | None) -> str:
    """Which mode the exporter is in, for ``--config.check`` and the start-up log line."""
    return str(path) if path is not None else NO_FILE


def load_config(path: str | os.PathLike[str] | None,
                environ: Mapping[str, str] | None = None) -> Config:
    """The config file at ``path`` with environment overrides; None means no file: defaults
    with discovery on. Raises ``ConfigError`` when the file is missing, is not a regular file,
    is larger than 8 MiB, is not UTF-8 or is invalid."""
    if path is None:
        return parse_config("", NO_FILE, environ, defaults={"discovery": {"enabled": True}})
    p = Path(path)
    text = read_config_text(p, MAX_CONFIG_BYTES, f"config file {str(p)!r}", ConfigError)
    return parse_config(text, str(p), environ)
