"""The one YAML reader: safe types only, and every failure one line that names where.

PyYAML's safe constructors raise plain Python exceptions for a value that scans as a type but
is not one: ``2020-13-45`` (a date with month 13: ValueError), an integer of more than 4300
digits (Python's limit on converting text to int: ValueError), ``!!float abc``,
``!!timestamp soon`` (AttributeError). Here they become a ``YAMLProblem`` naming the line and
column of the value, like a syntax error; no other exception leaves ``read_yaml``. Aliases are
not expanded into copies, so an alias bomb costs memory only for its text.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from exporter.settings.schema import looks_like_api_key

__all__ = ["YAMLProblem", "read_yaml"]

# What a tag's value was expected to be, in the words of an error line.
_KINDS = {"timestamp": "date", "int": "integer", "float": "number"}


class YAMLProblem(ValueError):
    """Why a text cannot be read as YAML: ``problem`` (one line), and the 1-based ``line`` and
    ``column`` where known. ``syntax`` is True when the text is not YAML at all, False when it
    is but a value cannot be built (a date that is no date, a tag that is not allowed)."""

    def __init__(self, problem: str, syntax: bool, line: int | None = None,
                 column: int | None = None) -> None:
        self.problem = problem
        self.syntax = syntax
        self.line = line
        self.column = column
        super().__init__(f"{self.where}: {problem}" if self.where else problem)

    @property
    def where(self) -> str:
        """``line 3, column 20``, or empty when not known."""
        return f"line {self.line}, column {self.column}" if self.line is not None else ""


def _shown(text: str) -> str:
    if looks_like_api_key(text):  # a key pasted where a value goes is never repeated
        return "a value that looks like an API key"
    return repr(text) if len(text) <= 40 else f"{text[:16]!r}... ({len(text)} characters)"


def _value_problem(node: yaml.Node, error: Exception) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1]
    what = _KINDS.get(kind, f"{kind} value")
    if not isinstance(node, yaml.ScalarNode):
        return f"a {kind} cannot be built from it"
    value = str(node.value)
    limit = sys.get_int_max_str_digits()
    digits = sum(c.isdigit() for c in value)
    if kind == "int" and limit and digits > limit:
        return f"{_shown(value)} is not a valid integer ({digits} digits: at most {limit})"
    # A ValueError from the standard library says what is wrong with a date ("month must be
    # in 1..12"); anything else would only name Python internals.
    reason = str(error).split(";")[0].strip() if isinstance(error, ValueError) else ""
    if reason and kind == "timestamp":
        return f"{_shown(value)} is not a valid {what} ({reason[:80]})"
    return f"{_shown(value)} is not a valid {what}"


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructors fail only with a ConstructorError marked at the value."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as e:
            raise ConstructorError(None, None, _value_problem(node, e),
                                   node.start_mark) from None


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _problem(e: yaml.YAMLError, text: str) -> YAMLProblem:
    syntax = not isinstance(e, ConstructorError)
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML does not allow
        char = e.character if isinstance(e.character, int) else ord(e.character)
        line, column = _position(text, e.position)
        return YAMLProblem(f"the character U+{char:04X} is not allowed in YAML", True,
                           line, column)
    mark = getattr(e, "problem_mark", None)
    problem = str(getattr(e, "problem", None) or "cannot be parsed")
    if problem.startswith("could not determine a constructor for the tag"):
        tag = problem.rsplit(" ", 1)[-1].replace("tag:yaml.org,2002:", "!!")
        problem = (f"the tag {tag} is not allowed: only plain YAML values (mappings, lists, "
                   "text, numbers, booleans, dates) are read")
    if mark is None:
        return YAMLProblem(f"YAML syntax error: {problem}" if syntax else problem, syntax)
    return YAMLProblem(problem, syntax, mark.line + 1, mark.column + 1)


def read_yaml(text: str) -> Any:
    """``text`` as one YAML document of plain values (mappings, lists, text, numbers,
    booleans, dates); None for empty text. Raises ``YAMLProblem`` and nothing else."""
    if not text.strip():
        return None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise _problem(e, text) from None
    except RecursionError:  # PyYAML recurses per nesting level: "[[[[..." a few thousand deep
        raise YAMLProblem("YAML is nested too deeply to be a configuration", True) from None
    except Exception as e:  # whatever else PyYAML lets escape: still a text it cannot read
        raise YAMLProblem(f"cannot be read as YAML ({type(e).__name__})", False) from None
