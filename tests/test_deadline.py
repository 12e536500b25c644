"""The total deadline against real sockets (requests-mock would replace the adapter that
enforces it): a server that drips bytes, in the head or in the body, is cut off at
``timeout_seconds`` however steadily it drips, and the reaper keeps nothing behind.

No wall-clock assertions: the server counts the bytes it got out before the client hung up.
Were the deadline not enforced, the drip would finish (each byte arrives well within the
per-read timeout) and the request would succeed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from exporter.mixpeek.client import MixpeekClient
from exporter.mixpeek.deadline import REAPER, Reaper
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret
from tests.harness import RawServer, wait_until

DOC = b'{"namespace_id": "ns_drip", "namespace_name": "drip", "pad": "' + b"x" * 600 + b'"}'
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"y" * 600
        + b"\r\nContent-Length: " + str(len(DOC)).encode() + b"\r\n\r\n")
PER_BYTE = 0.02  # seconds: 50 bytes a second, so either part takes 12 s or more to drip


class DripServer(RawServer):
    """Per connection, after the request head, writes ``head`` and ``body``, each byte on its
    own every PER_BYTE seconds when that part drips, and notes how far it got when the client
    hung up."""

    def __init__(self, drip_head: bool, drip_body: bool) -> None:
        self.drip_head, self.drip_body = drip_head, drip_body
        self.sent: list[int] = []  # bytes written on each connection before it ended
        self.finished: list[bool] = []  # whether it wrote everything
        self.ended = threading.Event()
        self._stop = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket, head: bytes) -> None:
        sent, complete = 0, False
        try:
            for part, drip in ((HEAD, self.drip_head), (DOC, self.drip_body)):
                step = 1 if drip else len(part)
                for i in range(0, len(part), step):
                    conn.sendall(part[i:i + step])
                    sent += step
                    if drip and self._stop.wait(PER_BYTE):
                        return
            complete = True
        except OSError:
            pass  # the client hung up (the reaper shut its socket)
        finally:
            self.sent.append(sent)
            self.finished.append(complete)
            self.ended.set()

    def close(self) -> None:
        self._stop.set()
        super().close()


@pytest.fixture(params=[(True, False), (False, True)], ids=["drip-head", "drip-body"])
def drip(request: pytest.FixtureRequest) -> Iterator[DripServer]:
    s = DripServer(*request.param)
    yield s
    s.close()


def client(url: str, timeout: float = 1.0) -> MixpeekClient:
    cfg = MixpeekConfig(base_url=url, timeout_seconds=timeout, max_retries=0,
                        max_requests_per_minute=0)
    return MixpeekClient(cfg, Secret("sk_test_deadline_0000"), TokenBucket(0))


def test_a_dripping_server_is_cut_off_at_the_total_deadline(drip: DripServer) -> None:
    c = client(drip.url)
    try:
        r = c.get_namespace("ns_drip")
    finally:
        c.close()
    assert r.reason == "timeout", r
    assert "(total deadline)" in r.message, r.message
    assert drip.ended.wait(30), "the connection was never closed"
    assert drip.finished == [False], "the whole answer was sent: no deadline"
    assert drip.sent[0] < len(HEAD) + len(DOC)
    # Nothing is left in the reaper for a request that is over, timed out or not.
    wait_until(lambda: REAPER.pending() == 0, 10, what="the reaper to drop the entry")


def test_the_same_server_without_a_drip_answers() -> None:
    """Counterpart of the above: what the deadline cut short is a good answer."""
    server = DripServer(False, False)
    c = client(server.url)
    try:
        r = c.get_namespace("ns_drip")
    finally:
        c.close()
        server.close()
    assert r.ok, r
    assert server.ended.wait(30) and server.finished == [True]


def test_fired_and_cancelled_entries_leave_nothing_behind() -> None:
    reaper = Reaper()
    fired = threading.Event()
    # A request that timed out: its deadline fires, then the request's cleanup cancels it.
    handle = reaper.schedule(time.monotonic() - 1, fired.set)
    assert fired.wait(10)
    reaper.cancel(handle)
    assert reaper.pending() == 0
    # Requests that finished in time: each is cancelled long before its deadline.
    far = time.monotonic() + 3600
    handles = [reaper.schedule(far, fired.clear) for _ in range(10_000)]
    for h in handles:
        reaper.cancel(h)
    assert reaper.pending() <= 64
    assert fired.is_set(), "a cancelled action never runs"


def test_an_entry_not_cancelled_still_fires_among_cancelled_ones() -> None:
    reaper = Reaper()
    fired = threading.Event()
    soon = time.monotonic() + 0.2
    keep = reaper.schedule(soon, fired.set)
    for h in [reaper.schedule(soon - 0.1, fired.clear) for _ in range(500)]:
        reaper.cancel(h)
    assert fired.wait(10)
    reaper.cancel(keep)
    assert reaper.pending() == 0
