"""Reading one JSON value of an API answer as one published value.

A reader takes what the decoded JSON holds at one field and returns the value to publish, or
raises ``_Unusable`` (wrong type, out of range). Nothing is coerced: ``"123"`` or ``true`` is not
a count, and a bare number is not a date-time, because a silently coerced number is a wrong number
on a dashboard. ``read_published`` applies a table of ``Published`` entries to an answer, one
field at a time, so one bad field loses only the values built from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

# Above 2**53 a float64 sample no longer holds the exact count; no real count gets there.
MAX_COUNT = 2**53
# A label value comes from the API; cap it so a hostile response cannot blow up every scrape.
MAX_LABEL = 256
# The list cursor is sent back in a query string.
MAX_CURSOR = 4096
# A longer JSON integer is no usable value (and Python refuses to parse 4300 digits or more).
MAX_INT_DIGITS = 40


class InvalidResponse(ValueError):
    """The body is not an answer we can trust: not a JSON object, or no usable identity.
    The message names the field and the cause."""


class _Unusable(ValueError):
    """A present value of the wrong type or out of range."""


def _kind(v: Any) -> str:
    return type(v).__name__


def count(v: Any) -> int:
    """A JSON integer in 0..2**53."""
    # type(), not isinstance(): a JSON true is a bool, and a bool is an int to isinstance.
    if type(v) is not int:
        raise _Unusable(f"expected an integer, got {_kind(v)}")
    if not 0 <= v <= MAX_COUNT:
        raise _Unusable(f"{v} is outside 0..2**53")
    return v


def flag(v: Any) -> bool:
    """A JSON boolean."""
    if type(v) is not bool:
        raise _Unusable(f"expected a boolean, got {_kind(v)}")
    return v


def _text(v: Any, limit: int) -> str:
    if type(v) is not str:
        raise _Unusable(f"expected a string, got {_kind(v)}")
    if len(v) > limit:
        raise _Unusable(f"longer than {limit} characters")
    try:
        v.encode()
    except UnicodeEncodeError:
        # A lone surrogate: a JSON escape like \ud800, or bytes that were not UTF-8.
        raise _Unusable("not valid Unicode") from None
    return v


def label(v: Any) -> str:
    """A string of at most MAX_LABEL characters that is valid Unicode (it can be a label)."""
    return _text(v, MAX_LABEL)


def cursor(v: Any) -> str:
    """A string of at most MAX_CURSOR characters that is valid Unicode."""
    return _text(v, MAX_CURSOR)


def length(v: Any) -> int:
    """The number of entries of a JSON array; the entries themselves are not looked at."""
    if type(v) is not list:
        raise _Unusable(f"expected an array, got {_kind(v)}")
    return len(v)


_DATETIME = TypeAdapter(datetime)


def timestamp(v: Any) -> float:
    """An ISO 8601 date-time string -> Unix seconds. Parsed as the SDK parses it (pydantic);
    a naive one is UTC, which the API writes: read as local time it would shift by the offset."""
    if type(v) is not str:
        raise _Unusable(f"expected a date-time string, got {_kind(v)}")
    try:
        float(v)
    except ValueError:
        pass
    else:
        # pydantic reads a bare number as Unix seconds or milliseconds depending on its size.
        raise _Unusable("a bare number is not a date-time")
    try:
        when = _DATETIME.validate_python(v)
    except ValidationError:
        raise _Unusable("not a date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


Reader = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Published:
    """One published value: the attribute it fills, the API fields it is read from (dotted
    paths, tried in order; the first present and usable one wins) and its value when absent."""

    attr: str
    sources: tuple[tuple[str, Reader], ...]
    absent: Any = None


def read_published(obj: dict[str, Any], fields: tuple[Published, ...]
                   ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """{attr: value} for each field, and the API names (dotted paths) of the fields that were
    present but unusable, in table order. A parent that is not an object, like
    ``"infrastructure": 5``, is named once, by itself. Missing and null are not unusable."""
    values: dict[str, Any] = {}
    invalid: dict[str, None] = {}  # an ordered set
    for f in fields:
        values[f.attr] = f.absent
        for path, read in f.sources:
            raw = _lookup(obj, path, invalid)
            if raw is None:
                continue
            try:
                values[f.attr] = read(raw)
                break
            except _Unusable:
                invalid[path] = None
    return values, tuple(invalid)


def _lookup(obj: dict[str, Any], path: str, invalid: dict[str, None]) -> Any:
    *parents, key = path.split(".")
    node: Any = obj
    for depth, part in enumerate(parents, 1):
        node = node.get(part)
        if node is None:
            return None
        if type(node) is not dict:
            invalid[".".join(parents[:depth])] = None
            return None
    return node.get(key)


def required(obj: dict[str, Any], field: str, read: Reader, where: str = "",
             missing_ok: bool = True) -> Any:
    """A field the answer cannot be used without: None if missing or null (InvalidResponse
    unless ``missing_ok``), InvalidResponse if unusable."""
    v = obj.get(field)
    if v is None:
        if not missing_ok:
            raise InvalidResponse(f"{where}{field}: Field required")
        return None
    try:
        return read(v)
    except _Unusable as e:
        raise InvalidResponse(f"{where}{field}: {e}") from None


def json_object(body: Any, where: str = "") -> dict[str, Any]:
    """``body`` if it is a JSON object, else InvalidResponse."""
    if type(body) is not dict:
        raise InvalidResponse(f"{where}expected a JSON object, got {_kind(body)}")
    return body


class _HugeInt:
    """A JSON integer too long to be any count: an unusable value, not a broken body."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<integer of more than {MAX_INT_DIGITS} digits>"


_HUGE = _HugeInt()


def _int(text: str) -> int | _HugeInt:
    return int(text) if len(text) <= MAX_INT_DIGITS else _HUGE


def decode_json(raw: bytes) -> Any:
    """A response body -> Python values for the parsers; ValueError if it is not JSON.

    Bytes that are not UTF-8 become lone surrogates instead of failing the whole body: they
    make only the string that holds them unusable, and an unpublished field (``description``)
    is never looked at. A leading BOM is skipped. An integer of more than MAX_INT_DIGITS digits
    becomes an unusable value. Nesting deeper than the decoder recurses raises RecursionError.
    """
    return json.loads(raw.decode("utf-8-sig", "surrogateescape"), parse_int=_int)
