"""Which ``MIXPEEK_EXPORTER_*`` environment variables are configuration overrides, and which
look like overrides gone wrong.

Only ``<PREFIX><SECTION>__<KEY>`` and ``<PREFIX><TOP_LEVEL_KEY>`` (``MIXPEEK_EXPORTER_NAMESPACES``)
are overrides. Kubernetes injects service-link variables into every pod beside a Service named
``mixpeek-exporter`` (``MIXPEEK_EXPORTER_PORT=tcp://...``, ``..._SERVICE_HOST``,
``..._PORT_10117_TCP_ADDR``): those are someone else's and pass in silence. Anything else with
the prefix (``MIXPEEK_EXPORTER_POLL_INTERVAL_SECONDS``, one underscore) was almost certainly
meant as an override: it is named in a warning, never an error, since refusing to start over a
variable the user may not control would crash-loop the pod.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from exporter.settings.yamlread import YAMLProblem, read_yaml

ENV_PREFIX = "MIXPEEK_EXPORTER_"

# docs: kubernetes.io/docs/concepts/services-networking/service/#environment-variables
# (the Docker-links form); a named port adds SERVICE_PORT_<NAME>.
_SERVICE_LINK = re.compile(
    r"PORT|PORT_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?|SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?")


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    return {name: f.annotation for name, f in model.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


def _is_override(rest: str, model: type[BaseModel]) -> bool:
    return "__" in rest or rest.lower() in set(model.model_fields) - set(_sections(model))


class UnreadableOverrides(ValueError):
    """Overrides whose values YAML reads but cannot build (``2020-13-45``, an integer of 5000
    digits, ``!!float abc``): ``problems`` holds one ``VARIABLE (key.path): why`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def env_overrides(model: type[BaseModel], environ: Mapping[str, str],
                  prefix: str = ENV_PREFIX) -> dict[tuple[str, ...], tuple[str, Any]]:
    """The overrides in ``environ``: key path -> (variable name, value read as YAML).

    A value that is not YAML at all (``keys: [a``) is taken as its text. Raises
    ``UnreadableOverrides`` naming every variable whose value YAML reads as a type it then
    cannot build, rather than quietly using the text of what was meant as a date or number.
    """
    found: dict[tuple[str, ...], tuple[str, Any]] = {}
    problems = []
    for name, value in environ.items():
        if not name.startswith(prefix) or not _is_override(name[len(prefix):], model):
            continue
        path = tuple(p.lower() for p in name[len(prefix):].split("__"))
        try:
            parsed = read_yaml(value) if value.strip() else ""
        except YAMLProblem as e:
            if not e.syntax:
                problems.append(f"{name} ({'.'.join(path)}): {e.problem}")
                continue
            parsed = value
        found[path] = (name, parsed)
    if problems:
        raise UnreadableOverrides(sorted(problems))
    return found


def _meant(rest: str, model: type[BaseModel], prefix: str) -> str | None:
    """The override ``rest`` most likely meant: ``POLL_INTERVAL_SECONDS`` ->
    ``<PREFIX>POLL__INTERVAL_SECONDS`` when ``poll`` has an ``interval_seconds`` key."""
    lower = rest.lower()
    for section, sub in _sections(model).items():
        if lower.startswith(section + "_") and lower[len(section) + 1:] in sub.model_fields:
            return f"{prefix}{rest[:len(section)]}__{rest[len(section) + 1:]}"
    return None


def stray_variables(model: type[BaseModel], environ: Mapping[str, str],
                    prefix: str = ENV_PREFIX) -> list[str]:
    """One warning line per variable with ``prefix`` that is neither an override nor a
    Kubernetes service link, naming it (never its value) and the form it should take."""
    warnings = []
    for name in sorted(environ):
        rest = name[len(prefix):]
        if not name.startswith(prefix) or _is_override(rest, model):
            continue
        if _SERVICE_LINK.fullmatch(rest):
            continue
        meant = _meant(rest, model, prefix)
        fix = (f"did you mean {meant}?" if meant else
               f"overrides are {prefix}<SECTION>__<KEY>, with two underscores (e.g. "
               f"{prefix}POLL__INTERVAL_SECONDS=30), or {prefix}NAMESPACES")
        warnings.append(f"environment variable {name} is not a configuration override and is "
                        f"ignored: {fix}")
    return warnings
