from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import SimulatorProcess

API_KEY = "sk_live_TESTKEY_9f8e7d6c5b4a"


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(api_key=API_KEY) as s:
        yield s
