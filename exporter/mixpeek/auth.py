"""The API key on the wire: one ``Authorization: Bearer`` header per request, and nowhere else."""

from __future__ import annotations

from typing import Any

import requests
from requests.auth import AuthBase

from exporter.settings.secrets import Secret, first_invisible, redact


class UnsendableKey(ValueError):
    """The API key has a character an HTTP header cannot carry; says which, never the key."""


class Bearer(AuthBase):
    """Sets the header per request; as ``session.auth`` it also stops requests from looking
    for ~/.netrc credentials, which would replace the header."""

    def __init__(self, key: Secret) -> None:
        self._key = key
        value = key.reveal()
        bad = first_invisible(value)
        # Found here, not by http.client at send time: its errors quote the header value.
        self._problem = None if bad is None else (
            f"the API key cannot be sent in an HTTP header: character {bad + 1} is "
            f"U+{ord(value[bad]):04X}; only visible ASCII is allowed")

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._problem is not None:
            raise UnsendableKey(self._problem)
        r.headers["Authorization"] = "Bearer " + self._key.reveal()
        return r

    def redact(self, text: str) -> str:
        """``text`` without the key or any 8-character run of it."""
        return redact(text, [self._key], "<redacted>")

    def scrub_json(self, body: Any, raw: bytes | None = None) -> Any:
        """A decoded JSON body with the key (and any 8-character run of it) replaced in every
        string, object keys included: an API that echoes the key in a namespace name or a
        label value must not put it on /metrics.

        ``raw``, the bytes ``body`` was decoded from, lets the common case skip the walk: with
        no escape in it, every decoded string is a slice of it, so a key fragment in any of
        them is in the bytes too (the key is ASCII, and ASCII bytes only ever stand for
        themselves in UTF-8; latin-1 maps each byte to one character)."""
        key = self._key
        if raw is not None and b"\\" not in raw and not key.occurs_in(raw.decode("latin-1")):
            return body
        if isinstance(body, str):
            return self.redact(body) if key.occurs_in(body) else body
        # Iterative: the decoder already bounded the nesting, but recursion here would be a
        # second, lower limit.
        root: list[Any] = [body]
        stack: list[tuple[Any, Any]] = [(root, 0)]
        while stack:
            parent, slot = stack.pop()
            v = parent[slot]
            if isinstance(v, str):
                if key.occurs_in(v):
                    parent[slot] = self.redact(v)
            elif isinstance(v, list):
                stack.extend((v, i) for i in range(len(v)))
            elif isinstance(v, dict):
                if any(isinstance(k, str) and key.occurs_in(k) for k in v):
                    fixed = {(self.redact(k) if isinstance(k, str) else k): x
                             for k, x in v.items()}
                    v.clear()
                    v.update(fixed)
                stack.extend((v, k) for k in v)
        return root[0]

    def __repr__(self) -> str:
        return "Bearer(***)"
