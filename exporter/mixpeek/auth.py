"""The API key on the wire: one ``Authorization: Bearer`` header per request, and nowhere else."""

from __future__ import annotations

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

    def __repr__(self) -> str:
        return "Bearer(***)"
