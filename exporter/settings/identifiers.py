"""The one rule for namespace identifiers (names or ids) that go into a URL path segment.

The config loader refuses them at ``--config.check`` time and the client refuses them before a
request: a typo fails loudly instead of as a 404 storm, and nothing can steer the path.
"""

from __future__ import annotations

import re

IDENTIFIER_MAX = 128
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\?#%]")


def identifier_problem(identifier: str) -> str | None:
    """Why ``identifier`` cannot be a namespace name or id, or None when it can.

    Percent-encoding would carry '/', '?', '#' and '%' safely, but no namespace is named so;
    dots alone would be a dot-segment whatever their encoding (requests normalises %2E back to
    '.', and the server would resolve the path upwards).
    """
    if not identifier:
        return "is empty"
    if len(identifier) > IDENTIFIER_MAX:
        return f"is longer than {IDENTIFIER_MAX} characters"
    bad = _FORBIDDEN.search(identifier)
    if bad:
        return (f"{identifier!r} contains {bad.group()!r}: namespace names and ids cannot "
                "contain '/', '\\', '?', '#', '%' or control characters")
    if set(identifier) <= {"."}:
        return f"{identifier!r} is not a namespace identifier"
    return None


def identifier_labels(identifier: str) -> tuple[str, str]:
    """(namespace_id, namespace_name) to show before the API has told us both: Mixpeek ids
    start with ``ns_``, anything else is a name."""
    if identifier.startswith("ns_"):
        return identifier, ""
    return "", identifier
