"""The composition root in-process, against a small loopback API: ``--once`` output, a key that
cannot be sent, a rotated key file picked up before the next cycle, and POST /-/reload wired
only with --web.enable-lifecycle."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from exporter.app import App, file_loader
from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig
from exporter.settings.secrets import Credentials, Secret
from tests.harness import http, parse_metrics, sample, wait_until

K1 = "sk_live_app_one_1111111111"
K2 = "sk_live_app_two_2222222222"


class API:
    """Get Namespace for any ``ns_...`` id, if the Authorization header carries a key in
    ``keys``; records the Authorization header of every request."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.auth.append(auth)
                ident = unquote(self.path.rsplit("/", 1)[-1])
                if auth.removeprefix("Bearer ") in outer.keys:
                    status, body = 200, {"namespace_id": ident, "namespace_name": ident[3:],
                                         "document_count": 3}
                else:
                    status, body = 401, {"error": {"type": "UnauthorizedError",
                                                   "message": "Invalid API key"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # the list endpoint: no namespaces
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Authorization", "").removeprefix("Bearer ") in outer.keys:
                    status, body = 200, {"results": [], "pagination": {}}
                else:
                    status, body = 401, {"error": {"type": "UnauthorizedError",
                                                   "message": "Invalid API key"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api() -> Iterator[API]:
    a = API({K1})
    yield a
    a.server.shutdown()
    a.server.server_close()


def fixed(url: str, key: str) -> Any:
    cfg = Config(mixpeek=MixpeekConfig(base_url=url, max_requests_per_minute=0, max_retries=0),
                 namespaces=["ns_a", "ns_b"])
    return lambda: (cfg, Credentials(Secret(key), "test"))


def test_once_prints_the_exposition_and_says_whether_all_answered(api: API) -> None:
    app = App(fixed(api.url, K1))
    try:
        text, ok = app.once()
    finally:
        app.client.close()
    m = parse_metrics(text.decode())
    assert ok is True
    assert sample(m, "mixpeek_namespace_up", namespace_id="ns_a") == 1
    assert sample(m, "mixpeek_namespace_documents", namespace_id="ns_b") == 3


def test_a_key_that_cannot_be_sent_is_up_0_with_a_reason_not_a_crash(api: API) -> None:
    app = App(fixed(api.url, "\ufeff" + K1))
    try:
        text, ok = app.once()
    finally:
        app.client.close()
    m = parse_metrics(text.decode())
    assert ok is False
    for ns in ("ns_a", "ns_b"):
        assert sample(m, "mixpeek_namespace_up", namespace_id=ns) == 0
        assert sample(m, "mixpeek_namespace_poll_errors_total", namespace_id=ns,
                      reason="exporter_error") == 1
    assert api.auth == [], "no request goes out with a key that cannot be sent"


def test_a_rotated_key_file_is_used_from_the_next_cycle(api: API, tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(K1 + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "mixpeek": {"base_url": api.url, "api_key_file": str(keyfile),
                    "max_requests_per_minute": 0, "max_retries": 0},
        "namespaces": ["ns_a"]}))
    app = App(file_loader(config))
    try:
        app.poller.run_cycle()
        api.keys = {K2}  # rotated on the API side first: the old key is refused
        keyfile.write_text(K2 + "\n")
        st = os.stat(keyfile)
        os.utime(keyfile, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        app.poller.run_cycle()
    finally:
        app.client.close()
    assert api.auth == [f"Bearer {K1}", f"Bearer {K2}"]
    assert app.store.state("ns_a").up is True  # type: ignore[union-attr]


@pytest.mark.parametrize("lifecycle", [False, True])
def test_reload_endpoint_only_with_enable_lifecycle(api: API, lifecycle: bool) -> None:
    app = App(fixed(api.url, K1), listen="127.0.0.1:0", enable_lifecycle=lifecycle)
    app.start()
    try:
        assert app.server is not None
        status, _, body = http("POST", f"http://127.0.0.1:{app.server.port}/-/reload")
    finally:
        app.shutdown(grace=5)
    if lifecycle:
        assert status == 200 and body.startswith(b"reloaded"), body
    else:
        assert status in (404, 405), status


def test_ready_once_every_namespace_shows_a_count_or_a_verdict(api: API) -> None:
    app = App(fixed(api.url, K1))
    try:
        assert app.ready()[0] is False  # nothing rendered yet
        app.poller.poll_one("ns_a")
        app.cache.render_now(force=True)
        ready, why = app.ready()
        assert ready is False and "1 of 2 namespaces" in why
        api.keys = set()  # ns_b's verdict is a failure: a verdict all the same
        app.poller.poll_one("ns_b")
        app.cache.render_now(force=True)
        assert app.ready() == (True, "ready")
        app.store.set_namespaces(["ns_a", "ns_b", "ns_c"])  # a reload adds one: stays ready
        app.cache.render_now(force=True)
        assert app.ready() == (True, "ready")
    finally:
        app.client.close()


def discovering(url: str, key: str) -> Any:
    cfg = Config(mixpeek=MixpeekConfig(base_url=url, max_requests_per_minute=0, max_retries=0),
                 namespaces=["ns_a"], discovery=DiscoveryConfig(enabled=True))
    return lambda: (cfg, Credentials(Secret(key), "test"))


def test_once_fails_and_says_why_when_discovery_fails(
        api: API, caplog: pytest.LogCaptureFixture) -> None:
    app = App(discovering(api.url, K2))  # a key the API refuses
    try:
        with caplog.at_level(logging.ERROR):
            _, ok = app.once()
    finally:
        app.client.close()
    assert ok is False
    said = next(r for r in caplog.records if r.getMessage().startswith(
        "namespace discovery failed"))
    assert "Invalid API key" in said.fields["error"]  # type: ignore[attr-defined]
    assert K2 not in said.fields["error"]  # type: ignore[attr-defined]


def test_status_says_why_discovery_fails_and_the_start_log_where_it_listens(
        api: API, caplog: pytest.LogCaptureFixture) -> None:
    app = App(discovering(api.url, K2), listen=":0")
    with caplog.at_level(logging.INFO, logger="exporter.app"):
        app.start()
    try:
        assert app.server is not None
        url = f"http://127.0.0.1:{app.server.port}/status"
        wait_until(lambda: b"Invalid API key" in http("GET", url)[2], 20,
                   what="the discovery error on /status")
    finally:
        app.shutdown(grace=5)
    started = next(r for r in caplog.records if r.getMessage() == "mixpeek-exporter started")
    listen = started.fields["listen"]  # type: ignore[attr-defined]
    if socket.has_dualstack_ipv6():
        assert listen == f"[::]:{app.server.port} (IPv6 and IPv4)"
    else:
        assert listen == f"0.0.0.0:{app.server.port}"
