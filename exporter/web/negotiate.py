"""Content negotiation for ``/metrics``: the format (``Accept``) and gzip (``Accept-Encoding``).

As RFC 9110 §12.5 says: each choice carries a weight ``q`` (default 1), ``q=0`` means "not
this", and the most specific range that matches a format gives that format's weight
(``application/openmetrics-text`` before ``application/*`` before ``*/*``). A weight is read
as RFC 9110 §12.4.2 writes it (``q=0``, ``q=0.000``, ``q=1``...). An entry whose weight cannot be
read (``q=0.0000``, ``q=2``, ``q=nan``, or ``q`` given twice) counts as ``q=0``: a client that
names a coding or format and garbles its weight is not sent it on the strength of a wildcard.
A version that is not a number makes the entry not about us. So any header gets a valid
answer: the text format, uncompressed, unless OpenMetrics or gzip is clearly preferred.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
_MAX_ENTRIES = 64  # a header line may be 64 KiB; only this many entries are looked at
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")
# We write OpenMetrics 1.0.0: any 1.x.y is ours; 0.0.1 or 2.0.0 are other formats.
_OPENMETRICS_1 = re.compile(r"1\.\d+\.\d+")
# The text format 0.0.4 we write is also valid 1.0.0 (names need no escaping): any version.
_ANY_VERSION = re.compile(r"\d+\.\d+\.\d+")

Entry = tuple[str, dict[str, str], float]  # (lower-case name, parameters, q)


def _entries(header: str) -> Iterator[Entry]:
    for raw in header.split(",")[:_MAX_ENTRIES]:
        name, *params = raw.split(";")
        name = name.strip().lower()
        if not name:
            continue
        q: float | None = None
        values: dict[str, str] = {}
        for param in params:
            key, _, value = param.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                readable = q is None and _QVALUE.fullmatch(value) is not None
                q = float(value) if readable else 0.0
                if not readable:
                    break
            elif key:
                values[key] = value
        yield name, values, 1.0 if q is None else q


def _weight(entries: list[Entry], media_type: str,
            version_ok: re.Pattern[str] | None = None) -> float:
    """The q of ``media_type`` per the most specific matching entries; 0 if none matches.
    With ``version_ok``, an entry naming a ``version`` it does not match is not about us."""
    kind = media_type.split("/")[0]
    best_rank, best_q = -1, 0.0
    for name, params, q in entries:
        if name == media_type:
            version = params.get("version")
            if version is not None and version_ok is not None \
                    and not version_ok.fullmatch(version):
                continue
            rank = 2
        elif name == f"{kind}/*":
            rank = 1
        elif name == "*/*":
            rank = 0
        else:
            continue
        if rank > best_rank:
            best_rank, best_q = rank, q
        elif rank == best_rank:
            best_q = max(best_q, q)
    return best_q


def choose_format(accept: str | None) -> tuple[bool, str]:
    """(True, OpenMetrics content type) when ``accept`` prefers OpenMetrics 1.x over the text
    format with a weight above 0; else (False, text format 0.0.4 content type)."""
    entries = list(_entries(accept or ""))
    om = _weight(entries, "application/openmetrics-text", _OPENMETRICS_1)
    text = _weight(entries, "text/plain", _ANY_VERSION)
    if om > 0 and om > text:
        return True, OPENMETRICS
    return False, TEXT


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when gzip (or ``*``, when gzip is not named) has a weight above 0."""
    gzip_q: float | None = None
    any_q: float | None = None
    for name, _, q in _entries(accept_encoding or ""):
        if name in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif name == "*":
            any_q = q if any_q is None else max(any_q, q)
    q = gzip_q if gzip_q is not None else any_q
    return q is not None and q > 0
