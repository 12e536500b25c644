"""Basic auth and the web rate limit under a flood of wrong passwords, over real loopback
sockets: Prometheus's own scrapes must stay answered (attack probe p17).

The server, its accept loop, handlers and the web config's checks are the real ones. bcrypt is
made to wait on a gate for wrong passwords only, so a flood holds every bcrypt place for as
long as a test needs, without depending on how fast this machine hashes. Clients come from
several loopback addresses (127.0.0.x), as different hosts would.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.web import auth
from exporter.web.server import MetricsServer
from exporter.web.webconfig import WebConfig
from tests.harness import wait_until
from tests.web_harness import Hooks, Servers, answer, closed_by_server, connect, statuses

PASSWORD = b"correct horse battery staple"
WRONG = b"Tr0ub4dor&3-not-it"
PROMETHEUS = "127.0.0.1"

Start = Callable[..., MetricsServer]


def request(user: str, password: bytes) -> bytes:
    token = base64.b64encode(user.encode() + b":" + password)
    return b"GET /readyz HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token + b"\r\n\r\n"


def status(port: int, password: bytes, source: str = PROMETHEUS, user: str = "prometheus"
           ) -> int:
    with connect(port, source) as s:
        s.sendall(request(user, password))
        return statuses(answer(s))[0]


class Gate:
    """bcrypt.checkpw that holds wrong passwords until ``open`` is set."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.held = 0
        self._real = bcrypt.checkpw

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        if password != PASSWORD:
            self.held += 1
            self.open.wait(30)
        return self._real(password, hashed)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate()
    monkeypatch.setattr(auth.bcrypt, "checkpw", g)
    yield g
    g.open.set()


@pytest.fixture
def start() -> Iterator[Start]:
    with Servers(Hooks()) as servers:
        yield servers.make


def web_config(tmp_path: Path, **extra: Any) -> WebConfig:
    users = {"prometheus": bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=4)).decode()}
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": users, **extra}))
    return WebConfig.load(path)


class Flood:
    """Connections sending a wrong password each; ``answered`` collects what came back."""

    def __init__(self, port: int, sources: list[str]) -> None:
        self.socks = [connect(port, src, timeout=30) for src in sources]
        self.replies: dict[int, bytes] = {}
        for s in self.socks:
            s.sendall(request("prometheus", WRONG))

    def answered(self) -> int:
        for i, s in enumerate(self.socks):
            if i not in self.replies:
                got = closed_by_server(s)
                if got is not None:
                    self.replies[i] = got
        return len(self.replies)

    def close(self) -> None:
        for s in self.socks:
            s.close()


def test_a_verified_scraper_is_answered_while_wrong_passwords_hold_every_place(
        start: Start, gate: Gate, tmp_path: Path) -> None:
    """Wrong passwords once queued for a bcrypt place inside their handlers: with every
    handler waiting, an authenticated scrape got 0 answers of 6 in 10 s."""
    port = start(max_connections=4, authorize=web_config(tmp_path).authorize).port
    assert status(port, PASSWORD) == 200  # verified once, remembered from now on
    flood = Flood(port, [f"127.0.0.{2 + i % 4}" for i in range(12)])
    try:
        # Every flooding request is either in a check (held at the gate) or already refused.
        wait_until(lambda: gate.held + flood.answered() == 12, 10,
                   what="each wrong password checked or refused at once")
        busy = list(flood.replies.values())
        assert busy and all(r.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in r
                            for r in busy), busy
        for _ in range(3):
            assert status(port, PASSWORD) == 200
    finally:
        gate.open.set()
        flood.close()


def test_a_first_login_gets_a_place_while_one_address_floods(start: Start, gate: Gate,
                                                             tmp_path: Path) -> None:
    """One address runs one bcrypt check at a time, so it never holds every place: a
    scraper not yet verified still gets its password checked."""
    port = start(max_connections=8, authorize=web_config(tmp_path).authorize).port
    flood = Flood(port, ["127.0.0.2"] * 6)
    try:
        wait_until(lambda: gate.held == 1 and flood.answered() == 5, 10,
                   what="one check from the flooding address, the others refused")
        assert status(port, PASSWORD) == 200
    finally:
        gate.open.set()
        flood.close()


def test_the_rate_limit_is_per_client_and_spares_verified_scrapers(start: Start,
                                                                   tmp_path: Path) -> None:
    """With rate_limit set the bucket was global: one client spending it locked everyone out,
    Prometheus included."""
    web = web_config(tmp_path, rate_limit={"interval": "1h", "burst": 3})
    port = start(authorize=web.authorize).port
    assert status(port, PASSWORD) == 200  # Prometheus logs in: one of its own three
    other = "127.0.0.2"
    assert [status(port, WRONG, other) for _ in range(5)] == [401, 401, 401, 429, 429]
    assert status(port, PASSWORD) == 200
    assert status(port, PASSWORD, other, user="grafana") == 429  # that client's is spent
    # Even a flood from Prometheus's own address spends only unverified requests' budget.
    assert [status(port, WRONG) for _ in range(3)] == [401, 401, 429]
    assert status(port, PASSWORD) == 200
    assert status(port, PASSWORD, user="grafana") == 429
