"""The API key: a ``Secret`` that never shows its value, and reading it from the environment
or a mounted file.

A key is visible ASCII only (it goes into an HTTP header). A leading UTF-8 byte-order mark and
surrounding whitespace are what editors, PowerShell and ``kubectl create secret --from-file``
add, so they are removed; any other character is refused with its position, never the key.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from exporter.settings.files import FileMissing, FileProblem, read_small_file
from exporter.settings.load import ConfigError
from exporter.settings.schema import MixpeekConfig

MAX_KEY_FILE_BYTES = 4096
FRAGMENT = 8
"""Runs of this many characters of a secret are scrubbed wherever they appear."""

_BOM = "\ufeff"
_ASCII_SPACE = " \t\r\n\v\f"


class Secret:
    """A string wrapper that never shows its value in reprs, str(), logs or tracebacks."""

    __slots__ = ("_fragments", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        n = min(FRAGMENT, len(value))
        self._fragments = frozenset(value[i:i + n] for i in range(len(value) - n + 1))

    def reveal(self) -> str:
        return self._value

    def spans(self, text: str) -> list[tuple[int, int]]:
        """[start, end) spans of ``text`` made of runs of ``FRAGMENT`` (8) or more characters
        that also occur in the secret (of the whole secret when it is shorter)."""
        n = min(FRAGMENT, len(self._value))
        covered: list[tuple[int, int]] = []
        if n == 0:
            return covered
        for i in range(len(text) - n + 1):
            if text[i:i + n] in self._fragments:
                if covered and i <= covered[-1][1]:
                    covered[-1] = (covered[-1][0], i + n)
                else:
                    covered.append((i, i + n))
        return covered

    def occurs_in(self, text: str) -> bool:
        """True if ``text`` holds the secret or any run of ``FRAGMENT`` characters of it: a
        fast substring search per fragment, for screening before ``spans``."""
        return any(f in text for f in self._fragments)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret cannot be pickled")


def redact(text: str, secrets: Iterable[Secret], replacement: str) -> str:
    """``text`` with every secret, and every run of 8+ characters of one, replaced: a message
    cut in the middle of a key loses the fragment too. All secrets are matched against the
    original text, so one replacement cannot hide a fragment of another."""
    spans = sorted(span for secret in secrets for span in secret.spans(text))
    if not spans:
        return text
    out, pos = [], 0
    for start, end in spans:
        if end <= pos:
            continue
        if start > pos or not out:
            out += [text[pos:start], replacement]
        pos = end
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class Credentials:
    key: Secret
    source: str  # "env MIXPEEK_API_KEY" or "file /path": safe to log


class KeyMissing(ConfigError):
    """No key at all (variable unset or empty, file absent): start-up and ``--config.check``
    both refuse it (exit 1) with this message; a reload keeps the previous key."""

    head = "no API key"


def _char_name(c: str) -> str:
    name = unicodedata.name(c, "")
    return f"U+{ord(c):04X}" + (f" {name}" if name else "")


def first_invisible(value: str) -> int | None:
    """Index of the first character of ``value`` outside visible ASCII (``!`` to ``~``),
    or None: THE rule for an API key, which travels in an HTTP header."""
    return next((i for i, c in enumerate(value) if not "!" <= c <= "~"), None)


def clean_key(raw: str, key: str, where: str) -> str:
    """``raw`` without a leading byte-order mark and surrounding ASCII whitespace.

    Raises ``ConfigError`` (its line starts with ``key``, the config key at fault) when
    anything left is outside visible ASCII, naming the character and its position (1-based)
    but never the key itself.
    """
    value = raw.strip(_ASCII_SPACE)
    if value.startswith(_BOM):
        value = value[1:].strip(_ASCII_SPACE)
    bad = first_invisible(value)
    if bad is not None:
        c = value[bad]
        kind = "a space" if c == " " else (
            "a control character" if unicodedata.category(c) == "Cc"
            else "a non-ASCII character")
        raise ConfigError([
            f"{key}: the API key from {where} contains {kind} ({_char_name(c)}) at "
            f"position {bad + 1} of {len(value)}; a key is visible ASCII only (check the file "
            "or variable for a pasted space, a line break or a smart quote)"])
    return value


def load_api_key(cfg: MixpeekConfig, environ: Mapping[str, str] | None = None) -> Credentials:
    """Read the API key from the file (when configured) or the environment variable.

    Raises ``KeyMissing`` when there is none, ``ConfigError`` when it cannot be used: a file
    that is not a regular file, is over 4 KiB or is not UTF-8, or a key with characters outside
    visible ASCII. Never blocks (a FIFO or device is refused, not read).
    """
    env = os.environ if environ is None else environ
    if cfg.api_key_file is not None:
        key, where = "mixpeek.api_key_file", f"file {cfg.api_key_file}"
        try:
            data = read_small_file(cfg.api_key_file, MAX_KEY_FILE_BYTES)
        except FileProblem as e:
            cls = KeyMissing if isinstance(e, FileMissing) else ConfigError
            raise cls([f"{key}: {cfg.api_key_file} {e}"]) from None
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError([f"{key}: {cfg.api_key_file} is not UTF-8 text (byte "
                               f"{e.start + 1})"]) from None
        value = clean_key(raw, key, where)
        if not value:
            raise ConfigError([f"{key}: {cfg.api_key_file} is empty"])
    else:
        key, where = "mixpeek.api_key_env", f"env {cfg.api_key_env}"
        value = clean_key(env.get(cfg.api_key_env, ""), key, where)
        if not value:
            raise KeyMissing([f"{key}: environment variable {cfg.api_key_env} is not set or "
                              "empty (or set mixpeek.api_key_file)"])
    return Credentials(Secret(value), where)
