"""Where a request ends: the request head read strictly (RFC 9112 §2-§6), and its framing.

A proxy in front of the exporter and the exporter must agree on where each request ends, or
a body can be read as a second request (smuggling). So anything two parsers could read
differently is refused, never guessed at: whitespace before a field's colon, a line starting
with whitespace (obsolete line folding), a field name that is not a token, a CR, LF, NUL or
other control character inside a name or value, ``Transfer-Encoding`` in any form, and a
``Content-Length`` that is not exactly one number. A request that declares a body gets it
read and dropped by the accept loop (no endpoint takes one), at most ``BODY_MAX`` bytes.

Each refusal is a ``HeadError``: the status, and the cause in words, answered by the accept
loop before it closes the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD_MAX = 64 * 1024  # bytes: request line and header fields together
BODY_MAX = 64 * 1024  # bytes of a request body that are read (and dropped)
FIELDS_MAX = 100  # header field lines in one head
END_OF_HEAD = re.compile(rb"\n\r?\n")

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII and obs-text: no whitespace or control character in a request target.
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")
# Inside a field value: anything but control characters (HTAB aside) and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION = re.compile(rb"HTTP/(\d+)(?:\.(\d+))?")
_DIGITS = re.compile(rb"[0-9]{1,10}")


def is_tchar(byte: int) -> bool:
    """True for a byte that may appear in a token (a method, a field name)."""
    return _TOKEN.fullmatch(bytes((byte,))) is not None


class HeadError(Exception):
    """A request head that is refused: ``status`` and ``reason`` for the status line, and
    ``why`` (the cause, naming the field) for the body."""

    def __init__(self, status: int, reason: str, why: str) -> None:
        super().__init__(f"{status} {reason}: {why}")
        self.status, self.reason, self.why = status, reason, why


def _bad(why: str) -> HeadError:
    return HeadError(400, "Bad Request", why)


@dataclass(frozen=True)
class Request:
    """One request head: ``fields`` are (name as sent, value) in order, values decoded as
    ISO-8859-1 with surrounding whitespace removed; ``body_length`` in bytes (0 without
    ``Content-Length``)."""

    method: str
    target: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    fields: tuple[tuple[str, str], ...]
    body_length: int
    keep_alive: bool
    expect_continue: bool

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def _shown(name: bytes) -> str:
    """A field name for an error message: printable, short."""
    return repr(name[:40].decode("latin-1"))


def parse_head(head: bytes) -> Request:
    """``head``: a request line and field lines, each ended by CRLF (or LF alone, which RFC
    9112 §2.2 allows a server to accept), and the empty line ending the head. Raises
    ``HeadError`` (400, 411, 413, 431 or 505)."""
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    lines = lines[:-2]  # the empty line and what follows its LF (nothing)
    if not lines:
        raise _bad("no request line")
    method, target, version = _request_line(lines[0])
    fields = [_field(line) for line in lines[1:]]
    if len(fields) > FIELDS_MAX:
        raise HeadError(431, "Request Header Fields Too Large",
                        f"more than {FIELDS_MAX} header fields")

    def values(name: str) -> list[str]:
        return [v for n, v in fields if n.lower() == name]

    if values("transfer-encoding"):
        raise HeadError(411, "Length Required", "request bodies are accepted with "
                        "Content-Length only; Transfer-Encoding is refused")
    if len(values("host")) > 1:
        raise _bad("more than one Host field")
    connection = {t.strip().lower() for v in values("connection") for t in v.split(",")}
    http11 = version == "HTTP/1.1"
    keep_alive = "close" not in connection and (http11 or "keep-alive" in connection)
    expect = values("expect")
    return Request(method, target, version, tuple(fields),
                   _body_length(values("content-length")), keep_alive,
                   http11 and [e.lower() for e in expect] == ["100-continue"])


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) == 3:
        m = _VERSION.fullmatch(parts[2])
        if m is not None and (m.group(1) != b"1" or m.group(2) is None
                              or len(m.group(2)) != 1):
            raise HeadError(505, "HTTP Version Not Supported",
                            f"{parts[2].decode('latin-1')!r}: this server speaks HTTP/1.1 "
                            "(and 1.0)")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _bad("the request line is not 'METHOD target HTTP/1.1' with single spaces")
    method, target, version = parts
    if _VERSION.fullmatch(version) is None:
        raise _bad(f"{version[:20].decode('latin-1')!r} is not an HTTP version")
    if not _TOKEN.fullmatch(method):
        raise _bad("the method is not a token")
    if not _TARGET.fullmatch(target):
        raise _bad("the request target holds a control character")
    minor = version[-1:]
    return (method.decode("ascii"), target.decode("latin-1"),
            "HTTP/1.0" if minor == b"0" else "HTTP/1.1")


def _field(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise _bad("a header line starts with whitespace (obsolete line folding is refused)")
    name, colon, value = line.partition(b":")
    if not colon:
        raise _bad(f"header line {_shown(name)} has no colon")
    if not _TOKEN.fullmatch(name):
        if name.rstrip(b" \t") != name and _TOKEN.fullmatch(name.rstrip(b" \t")):
            raise _bad(f"whitespace between header field {_shown(name.rstrip())} and its "
                       "colon")
        raise _bad(f"header field name {_shown(name)} is not a token")
    value = value.strip(b" \t")
    if _CONTROL.search(value):
        raise _bad(f"a control character (CR, LF, NUL, ...) in header field {_shown(name)}")
    return name.decode("ascii"), value.decode("latin-1")


def _body_length(values: list[str]) -> int:
    if not values:
        return 0
    if len(values) > 1 or "," in values[0]:
        raise _bad("more than one Content-Length")
    raw = values[0].encode("latin-1")
    if not raw.isdigit():
        raise _bad("Content-Length is not a number")
    if not _DIGITS.fullmatch(raw) or int(raw) > BODY_MAX:
        raise HeadError(413, "Content Too Large",
                        f"request bodies are limited to {BODY_MAX} bytes")
    return int(raw)


def canned(status: int, reason: str, why: str = "",
           headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole short answer that closes the connection: ``status reason: why`` as text."""
    body = f"{status} {reason}{': ' + why if why else ''}\n".encode("utf-8", "replace")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            f"X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n"
            ).encode("latin-1") + body
