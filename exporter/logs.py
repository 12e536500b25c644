"""logfmt or JSON log lines, Prometheus-style, with secrets scrubbed as the last step.

Code never logs the key on purpose; the scrubber is the second line of defence, applied to the
fully formatted line (traceback included), so no third-party message can carry it out either.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

from exporter.settings.secrets import Secret

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}
REDACTED = "<redacted>"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(secret: Secret) -> None:
    value = secret.reveal()
    if len(value) >= 4:  # scrubbing a 1-3 character "key" would mangle ordinary text
        with _secrets_lock:
            _secrets.add(value)


def scrub(text: str) -> str:
    with _secrets_lock:
        values = sorted(_secrets, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, REDACTED)
    return text


def _logfmt_value(v: Any) -> str:
    s = "" if v is None else str(v)
    if s == "" or any(c in s for c in ' ="\\') or any(ord(c) < 0x20 for c in s):
        return json.dumps(s, ensure_ascii=False)
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
        if self.kind == "json":
            line = json.dumps(fields, ensure_ascii=False, default=str)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
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
