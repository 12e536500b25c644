"""Log lines: the key never leaves in any form, and one event is always exactly one line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter import logs
from exporter.mixpeek.client import clean
from exporter.settings.secrets import Secret

KEY = "sk_live_LOGS_0123456789abcdef"  # 29 characters, as in the report


@pytest.fixture(params=["logfmt", "json"])
def stream(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.setup("debug", request.param, out)
    yield out
    logs.setup("info", "logfmt")


def _fragments(key: str, n: int = 8) -> list[str]:
    return [key[i:i + n] for i in range(len(key) - n + 1)]


def test_key_echoed_after_padding_is_scrubbed_before_it_is_cut(stream: io.StringIO) -> None:
    logs.register_secret(Secret(KEY))
    # What an API error message reaches the log as: echoed key, then cut to 200 characters.
    message = clean("invalid token " + "x" * 154 + " " + KEY + " was rejected")
    assert KEY not in message and KEY[:25] in message  # the cut leaves most of the key
    logging.getLogger("t").error("namespace poll failing",
                                 extra={"fields": {"error": message}})
    logging.getLogger("t").warning("suffix %s then more", KEY[-12:])
    out = stream.getvalue()
    assert "namespace poll failing" in out and logs.REDACTED in out
    leaked = [f for f in _fragments(KEY) if f in out]
    assert not leaked, (leaked, out)


def test_key_with_characters_json_escapes_is_still_scrubbed(stream: io.StringIO) -> None:
    key = 'sk_live_q"uo\\te_0123456789'  # visible ASCII, but JSON writes " and \ escaped
    logs.register_secret(Secret(key))
    logging.getLogger("t").error("auth failed for %s", key,
                                 extra={"fields": {"header": f"Bearer {key}"}})
    out = stream.getvalue()
    assert out.count(logs.REDACTED) == 2, out
    for escaped in (key, json.dumps(key)[1:-1]):
        assert not [f for f in _fragments(escaped) if f in out], out


HOSTILE = {
    "newline": "a\nlevel=error msg=forged",
    "carriage return": "a\rb",
    "escape": "a\x1b[2Jb",
    "nul": "a\x00b",
    "delete": "a\x7fb",
    "next line (C1)": "a\x85level=error msg=forged",
    "C1 CSI": "a\x9bb",
    "line separator": "a\u2028level=error msg=forged",
    "paragraph separator": "a\u2029b",
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_control_characters_never_break_a_line(stream: io.StringIO, value: str) -> None:
    log = logging.getLogger("t")
    log.error("api said %s", value, extra={"fields": {"error": value, f"k{value}": 1}})
    try:
        raise ValueError(value)
    except ValueError:
        log.exception("boom")
    out = stream.getvalue()
    lines = out.splitlines()  # splits on \r, \x85, \u2028, \u2029 and more, as shippers may
    assert len(lines) == 2, lines
    assert out.endswith("\n") and out.count("\n") == 2
    assert not any(c in out.replace("\n", "") for c in "\x00\x1b\x7f\x85\x9b\u2028\u2029\r")
    if logging.getLogger().handlers[0].formatter.kind == "json":
        first = json.loads(lines[0])
        assert first["error"] == value and first["msg"] == f"api said {value}"
        assert json.loads(lines[1])["exc"].endswith(f"ValueError: {value}")


def test_plain_values_stay_unquoted_in_logfmt() -> None:
    out = io.StringIO()
    logs.setup("info", "logfmt", out)
    try:
        logging.getLogger("t").info("started", extra={"fields": {
            "namespaces": 3, "ok": True, "name": "naïve_名前", "empty": ""}})
    finally:
        logs.setup("info", "logfmt")
    line = out.getvalue()
    assert " namespaces=3 ok=True name=naïve_名前 empty=\"\"" in line, line


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=40))
def test_any_value_is_one_line_and_reads_back(value: str) -> None:
    for fmt in ("logfmt", "json"):
        out = io.StringIO()
        logs.setup("info", fmt, out)
        try:
            logging.getLogger("t").info("v", extra={"fields": {"value": value}})
        finally:
            logs.setup("info", "logfmt")
        line = out.getvalue()
        assert line.endswith("\n") and len(line.splitlines()) == 1, repr(line)
        if fmt == "json":
            assert json.loads(line)["value"] == value
        else:
            shown = line.rstrip("\n").split(" value=", 1)[1]
            assert (json.loads(shown) if shown.startswith('"') else shown) == value
