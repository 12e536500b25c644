"""What the human-readable pages (``/status``, ``/config``) share: where their data comes from,
the HTML around them, the one way untrusted text becomes HTML, and query-string validation.

Every string that came from the API or a config file goes through ``text()``: secrets are
scrubbed, control characters replaced, length bounded, and HTML escaped, so a namespace named
``<script>...</script>`` renders as text. The pages run no script at all, and their
Content-Security-Policy says so: only the one stylesheet below (by its hash) is allowed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from exporter import __version__
from exporter.logs import scrub
from exporter.settings.schema import Config
from exporter.state.snapshot import Snapshot

QUERY_MAX = 1024  # characters of a raw query string
_PARAMS_MAX = 8

STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}"
    "nav a{margin-right:1em}table{border-collapse:collapse;margin-top:.5em}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
    "th{background:#eee}tr.failing td{background:#fde8e8}tr.pending td{background:#f4f4f4}"
    "td.message{max-width:40em;overflow-wrap:anywhere}.stale{color:#b00}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dd{margin:0}"
    "pre{background:#f6f6f6;padding:1em;border:1px solid #ddd}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "Referrer-Policy": "no-referrer"}
HTML = "text/html; charset=utf-8"

# C0/C1 controls (but tab and line breaks) are shown as U+FFFD instead of being passed on.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Running:
    """The running configuration as the pages show it."""

    config: Config  # after environment overrides
    key_source: str  # Credentials.source, e.g. "env MIXPEEK_API_KEY": never the key itself
    web_config_file: str | None  # --web.config.file, if any


@dataclass(frozen=True)
class PageSource:
    """What the pages read, each call giving the current value (a reload replaces both)."""

    snapshot: Callable[[], Snapshot]
    running: Callable[[], Running]
    clock: Callable[[], float] = time.time  # Unix seconds


@dataclass(frozen=True)
class Page:
    """One answer: status, body, and the headers every page carries."""

    status: int
    body: bytes
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))


class QueryError(ValueError):
    """A query string a page cannot use; answered 400 with this message."""


def bad_request(message: str) -> Page:
    return Page(400, (message + "\n").encode(), "text/plain; charset=utf-8")


def text(value: str, limit: int = 200) -> str:
    """``value`` as HTML text: secrets scrubbed, control characters as U+FFFD, at most
    ``limit`` characters (an ellipsis marks a cut), then escaped (quotes too, so the result
    is also safe inside an attribute)."""
    value = scrub(value[:4 * limit])
    if len(value) > limit:
        value = value[:limit - 1] + "\u2026"
    return html.escape(_CONTROL.sub("\ufffd", value), quote=True)


def age(seconds: float) -> str:
    """A duration for people: ``42s``, ``5m 3s``, ``2h 10m``, ``3d 4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(ts: float | None, now: float, never: str = "never") -> str:
    """``ts`` (Unix seconds) as an HTML ``<time>`` saying how long ago, the UTC time in its
    title; ``never`` when None."""
    if ts is None:
        return html.escape(never)
    iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{iso}" title="{iso}">{age(now - ts)} ago</time>'


def query_params(raw: str, allowed: Collection[str]) -> dict[str, str]:
    """The parameters of a raw query string (``a=1&b=x``), each at most once and each one of
    ``allowed``. Raises ``QueryError`` naming the parameter or the cause."""
    if len(raw) > QUERY_MAX:
        raise QueryError(f"the query string is longer than {QUERY_MAX} characters")
    pieces = [p for p in raw.split("&") if p]
    if len(pieces) > _PARAMS_MAX:
        raise QueryError(f"at most {_PARAMS_MAX} query parameters are accepted")
    out: dict[str, str] = {}
    for piece in pieces:
        name, _, value = piece.partition("=")
        try:
            name = unquote_plus(name, errors="strict")
            value = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise QueryError("the query string is not UTF-8 (after %-decoding)") from None
        shown = name if name.isprintable() and len(name) <= 40 else repr(name[:40])
        if name not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise QueryError(f"unknown query parameter {shown!r} (accepted: {known})")
        if name in out:
            raise QueryError(f"query parameter {shown!r} is given more than once")
        out[name] = value
    return out


def document(title: str, body: str) -> bytes:
    """A whole page: ``title`` (plain text, escaped here) and ``body`` (HTML, escaped by the
    caller), with navigation."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n"
        "<body><nav><a href=\"./\">home</a><a href=\"status\">status</a>"
        "<a href=\"config\">config</a><a href=\"metrics\">metrics</a></nav>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}\n"
        f"<footer><p>mixpeek-exporter {html.escape(__version__)}</p></footer>"
        "</body></html>\n"
    ).encode()
