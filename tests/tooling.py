"""Tools the suite drives for real (promtool, prometheus, dockerd, tsc).

In CI (``CI`` set) a missing tool fails the test: a skip would let a broken setup look green.
Elsewhere it skips, naming the install step.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_tool(name: str, hint: str = "run `make tools` as root") -> str:
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} is not installed ({hint})"
    if in_ci():
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError("unreachable")
