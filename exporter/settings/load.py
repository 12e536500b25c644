"""From text to a validated model: safe YAML, environment overrides, and error lines.

Every problem becomes a ``ConfigError`` holding one line per problem, each naming the key path
(``mixpeek.timeout_seconds: ...``), and for a value from the environment the variable too, so
``--config.check`` output can be acted on directly. The same formatter serves the exporter
config and the ``--web.config.file``.
"""

from __future__ import annotations

import difflib
import logging
import os
import reprlib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from exporter.settings.environ import (
    ENV_PREFIX,
    UnreadableOverrides,
    env_overrides,
    stray_variables,
)
from exporter.settings.files import ca_bundle_problem, read_config_text
from exporter.settings.schema import Config, KeyProblem, looks_like_api_key
from exporter.settings.yamlread import YAMLProblem, read_yaml

log = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = "config.yaml"
NO_FILE = "no config file (defaults and environment overrides)"
MAX_CONFIG_BYTES = 8 * 1_048_576  # 10,000 listed namespaces are about 300 KB

__all__ = ["ENV_PREFIX", "NO_FILE", "ConfigError", "KeyProblem", "Warn", "config_path",
           "describe", "env_overrides", "load_config", "mode", "parse_config",
           "validation_problems", "yaml_document"]

Warn = Callable[[str], None]
"""Receives one line per thing that is accepted but probably not what was meant."""


def _log_warning(line: str) -> None:
    log.warning("configuration warning", extra={"fields": {"warning": line}})


class ConfigError(Exception):
    """A config file or value that cannot be used. ``problems`` holds one line per problem;
    ``source`` names where it came from (a path) and heads the message."""

    head = "invalid configuration"

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        head = f"{self.head} in {source}" if source else self.head
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


def yaml_document(text: str, source: str) -> Any:
    """``text`` parsed as one YAML document of plain values (``settings.yamlread``); empty
    text is None.

    Raises ``ConfigError`` (with ``source``) for anything that cannot be read, naming the line
    and column when known: a syntax error, a value that is not what it looks like
    (``2020-13-45``, an integer of more than 4300 digits), a tag that is not allowed, nesting
    deeper than the parser can recurse. Aliases are not expanded into copies.
    """
    try:
        return read_yaml(text)
    except YAMLProblem as e:
        if not e.where:
            line = e.problem
        elif e.syntax:
            line = f"YAML syntax error at {e.where}: {e.problem}"
        else:
            line = f"{e.where}: {e.problem}"
        raise ConfigError([line], source) from None


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


# Keys whose value is never repeated in a message: it may be an API key pasted in by mistake.
_UNSHOWN = {"mixpeek.api_key_env"}
# Unknown keys that show someone trying to put the API key into the configuration.
_KEY_WORDS = {"api_key", "apikey", "api_token", "key", "token", "mixpeek_api_key",
              "bearer", "authorization", "secret"}
API_KEY_HINT = ("the API key is never read from the configuration: put it in the environment "
                "variable named by mixpeek.api_key_env (MIXPEEK_API_KEY by default), or in a "
                "file named by mixpeek.api_key_file")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m), None)


def _keys_at(model: type[BaseModel] | None, loc: list[str]) -> list[str]:
    """The keys allowed in the mapping at ``loc`` of ``model`` (list indices skipped)."""
    node = model
    for part in loc:
        if part.isdigit():
            continue
        field = node.model_fields.get(part) if node is not None else None
        node = _model_in(field.annotation) if field is not None else None
    if node is None:
        return []
    return [f.alias or name for name, f in node.model_fields.items()]


def _unknown_key(loc: list[str], model: type[BaseModel] | None,
                 variables: list[str]) -> str:
    name = loc[-1] if loc else ""
    if model is Config and name.lower().replace("-", "_") in _KEY_WORDS:
        return f"unknown key: {API_KEY_HINT}"
    match = difflib.get_close_matches(name, _keys_at(model, loc[:-1]), n=1)
    if not match:
        return "unknown key (check the spelling against config.example.yaml)"
    if len(variables) == 1 and variables[0].startswith(ENV_PREFIX):
        parts = variables[0][len(ENV_PREFIX):].split("__")
        if len(parts) >= len(loc):
            parts[len(loc) - 1] = match[0].upper()
            return f"unknown key; did you mean {ENV_PREFIX}{'__'.join(parts)}?"
    return f"unknown key; did you mean `{match[0]}`?"


def _hint(e: Mapping[str, Any], variables: list[str]) -> str:
    if e["type"] == "list_type":
        example = f"{variables[0]}='[a, b]'" if variables else "[a, b]"
        return f"; write it as a YAML list, e.g. {example}"
    return ""


def validation_problems(err: ValidationError,
                        env_sources: Mapping[str, str] | None = None,
                        model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem in ``err``: ``key.path: message``, or, when the key was set by an
    environment variable (``env_sources`` maps a key path to its variable's name),
    ``VARIABLE (key.path): message``. No Python class name appears in a line. With the
    ``model`` that was validated, an unknown key gets the closest known one as a suggestion."""
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
        path = ".".join(loc)
        variables = [v for v in (sources.get(".".join(loc[:n])) for n in range(len(loc), 0, -1))
                     if v][:1]
        if not variables and e["type"] == "extra_forbidden":
            # MIXPEEK_EXPORTER_POL__X made an unknown section "pol": name what made it.
            variables = sorted(v for k, v in sources.items() if k.startswith(path + "."))
        if e["type"] == "extra_forbidden":
            msg = _unknown_key(loc, model, variables)
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif path in _UNSHOWN:
            pass
        elif e["type"] in _PLAIN:
            msg = f"{_PLAIN[e['type']]} (got {_shown(e.get('input'))})"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {_shown(e['input'])}){_hint(e, variables)}"
        # A key pasted where a key name goes (`sk_live_...: x`) is not repeated either.
        path = ".".join("<a name that looks like an API key>" if looks_like_api_key(p) else p
                        for p in loc)
        if variables:
            path = f"{', '.join(variables)} ({path})"
        problems.append(f"{path}: {msg}" if path else msg)
    return problems


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


_PATH_KEYS = ("api_key_file", "ca_file")


def _resolve_paths(cfg: Config, overrides: Mapping[tuple[str, ...], tuple[str, Any]],
                   base_dir: Path | None) -> Config:
    """Relative ``mixpeek.api_key_file`` and ``mixpeek.ca_file`` made absolute: against
    ``base_dir`` (the config file's directory) when the file set them, against the working
    directory when an environment variable did (or there is no file)."""
    update = {}
    for key in _PATH_KEYS:
        value: Path | None = getattr(cfg.mixpeek, key)
        if value is None or value.is_absolute():
            continue
        from_env = ("mixpeek", key) in overrides or base_dir is None
        update[key] = Path(os.path.abspath((Path.cwd() if from_env else base_dir) / value))
    if not update:
        return cfg
    return cfg.model_copy(update={"mixpeek": cfg.mixpeek.model_copy(update=update)})


def _file_problems(cfg: Config, sources: Mapping[str, str]) -> list[str]:
    """Files the configuration names that every poll would fail on; the key file is read
    (and judged) with the key, in ``settings.secrets``."""
    ca = cfg.mixpeek.ca_file
    problem = ca_bundle_problem(ca) if ca is not None else None
    if problem is None:
        return []
    var = sources.get("mixpeek.ca_file")
    where = f"{var} (mixpeek.ca_file)" if var else "mixpeek.ca_file"
    return [f"{where}: {ca} {problem}"]


def parse_config(text: str, source: str = "<string>",
                 environ: Mapping[str, str] | None = None,
                 base_dir: Path | None = None, warn: Warn | None = None) -> Config:
    """``text`` (YAML) with the environment's overrides applied over it, validated.

    Relative paths in the text are relative to ``base_dir`` (the working directory when
    None). ``warn`` (default: a log line) gets one line per ``MIXPEEK_EXPORTER_*`` variable
    that is ignored, whether or not the configuration is valid. Raises ``ConfigError`` with
    one line per problem, including a ``mixpeek.ca_file`` that is not a readable PEM bundle.
    """
    env = os.environ if environ is None else environ
    for line in stray_variables(Config, env):
        (warn or _log_warning)(line)
    raw = yaml_document(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of keys, got {type(raw).__name__}"],
                          source)
    try:
        overrides = env_overrides(Config, env)
    except UnreadableOverrides as e:
        raise ConfigError(e.problems, source) from None
    _apply(raw, overrides)
    sources = {".".join(path): name for path, (name, _) in overrides.items()}
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(validation_problems(e, sources, Config), source) from None
    cfg = _resolve_paths(cfg, overrides, base_dir)
    problems = _file_problems(cfg, sources)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def config_path(flag: str | None, cwd: Path | None = None) -> Path | None:
    """The config file to read: the one named by ``--config.file``, else ``./config.yaml``
    when it exists (looked for at start only), else None (the defaults, like node_exporter)."""
    if flag is not None:
        return Path(flag)
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG_FILE
    return Path(DEFAULT_CONFIG_FILE) if default.exists() else None


def describe(path: Path | None) -> str:
    """Where the configuration comes from, for ``--config.check`` and the start-up log."""
    return str(path) if path is not None else NO_FILE


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def mode(cfg: Config) -> str:
    """What is polled, in words: "no namespaces listed, discovery on", "1 namespace,
    discovery off", "3 namespaces, discovery on"."""
    if not cfg.namespaces:  # valid only with discovery on
        return "no namespaces listed, discovery on"
    on = "on" if cfg.discovery.enabled else "off"
    return f"{_plural(len(cfg.namespaces), 'namespace')}, discovery {on}"


NOT_READ = (f"./{DEFAULT_CONFIG_FILE} now exists but is not read: the config file is chosen "
            f"at start only; restart to use it (or start with --config.file)")


def load_config(path: str | os.PathLike[str] | None,
                environ: Mapping[str, str] | None = None, warn: Warn | None = None) -> Config:
    """The config file at ``path`` with environment overrides; None means no file: the
    defaults and the overrides. Relative paths in the file are relative to its directory.
    Raises ``ConfigError`` when the file is missing, is not a regular file, is larger than
    8 MiB, is not UTF-8 or is invalid. ``warn`` as for ``parse_config``; with no file, a
    ``./config.yaml`` that has appeared since start (a reload) is warned about too."""
    if path is None:
        if (Path.cwd() / DEFAULT_CONFIG_FILE).exists():
            (warn or _log_warning)(NOT_READ)
        return parse_config("", NO_FILE, environ, warn=warn)
    p = Path(path)
    text = read_config_text(p, MAX_CONFIG_BYTES, f"config file {str(p)!r}", ConfigError)
    return parse_config(text, str(p), environ, base_dir=p.parent.resolve(), warn=warn)
