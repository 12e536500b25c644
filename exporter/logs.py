"""logfmt or JSON log lines, Prometheus-style: one event is one line, and no secret leaves.

Both guarantees are kept here, at the formatter, for every value of every line (message,
fields, traceback), whoever logged it: callers pass raw values and need not think about either.
- Secrets: every run of 8 or more characters of a registered key is replaced, before any
  quoting or escaping (which could split the key) and before anything is cut, and once more on
  the finished line. Code never logs the key on purpose; this is the second line of defence.
- One line: control characters (C0, DEL, C1, U+2028, U+2029) are written as escapes, so a
  value from the API cannot start a forged log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any, TextIO

from exporter.settings.secrets import Secret, redact

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}
REDACTED = "<redacted>"

_secrets: dict[str, Secret] = {}
_secrets_lock = threading.Lock()

# Everything a terminal, a log shipper or str.splitlines() may take for a line break or a
# control sequence. json.dumps escapes C0 itself; the rest is escaped after it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LOGFMT_QUOTE = re.compile('[ ="\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]')


def register_secret(secret: Secret) -> None:
    """Scrub ``secret`` from every later log line (keys of 1-3 characters excepted: scrubbing
    them would mangle ordinary text)."""
    value = secret.reveal()
    if len(value) >= 4:
        with _secrets_lock:
            _secrets[value] = secret


def scrub(text: str) -> str:
    """``text`` with every registered secret, and every fragment of 8+ characters of one,
    replaced by ``REDACTED``."""
    with _secrets_lock:
        secrets = list(_secrets.values())
    return redact(text, secrets, REDACTED)


def _escape_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _plain(v: Any) -> Any:
    """A field value as JSON will carry it: numbers, booleans and None as they are,
    everything else as scrubbed text."""
    if v is None or isinstance(v, bool | int | float):
        return v
    return scrub(str(v))


def _logfmt_value(v: Any) -> str:
    s = "" if v is None else str(v)
    if s == "" or _LOGFMT_QUOTE.search(s):
        return _escape_controls(json.dumps(s, ensure_ascii=False))
    return s


def _ts(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.kind = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": _ts(record), "level": _NAMES.get(record.levelno, "info"),
            "logger": record.name, "msg": record.getMessage()}
        fields.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        clean = {scrub(str(k)): _plain(v) for k, v in fields.items()}
        if self.kind == "json":
            line = _escape_controls(json.dumps(clean, ensure_ascii=False, default=str))
        else:
            line = " ".join(f"{_logfmt_value(k)}={_logfmt_value(v)}" for k, v in clean.items())
        return scrub(line)


def setup(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # The scheduler and urllib3 are chatty at info/debug about things we report ourselves.
    # apscheduler warns on every skipped run of an overrunning cycle; the poller reports
    # overruns itself, once per change.
    logging.getLogger("apscheduler").setLevel(max(LEVELS[level], logging.ERROR))
    logging.getLogger("urllib3").setLevel(max(LEVELS[level], logging.WARNING))
