"""Real processes over loopback for end-to-end tests: the simulator and the exporter.

Both run as ``python -m ...`` subprocesses, exactly as a user would start them; tests talk to
them over HTTP only. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(fn: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll ``fn`` until it returns something truthy; fail with the last value/error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # the thing under test may not be up yet
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value), ...]} via prometheus-client's own parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def sample(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str,
           **labels: str) -> float | None:
    for lbls, value in metrics.get(name, []):
        if all(lbls.get(k) == v for k, v in labels.items()):
            return value
    return None


class RawServer:
    """A raw-socket HTTP server on loopback, for answers no real server would send: one thread
    per connection reads the request head, then ``serve(conn, head)`` (a subclass's) writes
    whatever it likes; the connection closes when it returns. Subclasses set their own
    attributes before calling ``__init__``, which starts accepting."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
            except OSError:
                return
            self.serve(conn, data)

    def serve(self, conn: socket.socket, head: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class _Proc:
    proc: subprocess.Popen[bytes]
    log_path: Path
    _final_log: str | None = None

    def log_text(self) -> str:
        """The process's output so far; after the context exits, all of it."""
        if self._final_log is not None:
            return self._final_log
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _finish(self) -> None:
        self.stop()
        self._log.close()
        self._final_log = self.log_text()
        self._tmp.cleanup()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class SimulatorProcess(_Proc):
    def __init__(self, api_key: str = "sk_test_simulator_key_1234", namespaces: int = 3,
                 extra_args: list[str] | None = None) -> None:
        self.api_key = api_key
        self.namespaces = namespaces
        self.extra_args = extra_args or []
        self._tmp = tempfile.TemporaryDirectory(prefix="mixpeek-sim-")
        self.log_path = Path(self._tmp.name) / "simulator.log"
        self.url = ""

    def __enter__(self) -> SimulatorProcess:
        ready = Path(self._tmp.name) / "url"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.simulator", "--api-key", self.api_key,
             "--namespaces", str(self.namespaces), "--ready-file", str(ready),
             *self.extra_args],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = wait_until(lambda: ready.exists() and ready.read_text(), 15,
                              what="simulator to listen")
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = http(method, self.url + "/_sim/" + path.lstrip("/"), body)
        assert status == 200, f"simulator control {method} {path}: {status} {data!r}"
        return json.loads(data)

    def patch(self, ns: str, body: dict[str, Any]) -> Any:
        return self.control("PATCH", f"namespaces/{ns}", body)

    def put(self, ns: str, doc: dict[str, Any]) -> Any:
        return self.control("PUT", f"namespaces/{ns}", doc)

    def delete(self, ns: str) -> Any:
        return self.control("DELETE", f"namespaces/{ns}")

    def configure(self, **settings: Any) -> Any:
        return self.control("POST", "config", settings)

    def state(self) -> Any:
        """Every namespace as served, the faults set, and the counters of ``stats()``."""
        return self.control("GET", "state")

    def stats(self) -> Any:
        """Counters: requests by route and status, rate_limit {limit, refused, in_window},
        auth_headers_seen, in_flight, max_in_flight."""
        return self.control("GET", "stats")

    def namespace(self, ns: str) -> Any:
        """One namespace: stored, document and stats as served, fail, raw, omit."""
        return self.control("GET", f"namespaces/{ns}")


def exporter_config(sim_url: str, namespaces: list[str], interval: float = 1.0,
                    stale_after: float = 30.0, **mixpeek: Any) -> dict[str, Any]:
    return {
        "mixpeek": {"base_url": sim_url, "timeout_seconds": 2, "max_retries": 0,
                    "max_requests_per_minute": 0, **mixpeek},
        "poll": {"interval_seconds": interval, "stale_after_seconds": stale_after},
        "namespaces": namespaces,
    }


class ExporterProcess(_Proc):
    """``python -m exporter`` with a config file it writes, on a free loopback port."""

    def __init__(self, config: dict[str, Any] | None, api_key: str | None = None,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 log_format: str = "logfmt") -> None:
        self.config = config
        self.api_key = api_key
        self.extra_args = extra_args or []
        self.env = env or {}
        self.log_format = log_format
        self._tmp = tempfile.TemporaryDirectory(prefix="mixpeek-exporter-")
        self.dir = Path(self._tmp.name)
        self.config_path = self.dir / "config.yaml"
        self.log_path = self.dir / "exporter.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.replace(self.config_path)

    def __enter__(self) -> ExporterProcess:
        if self.config is not None:
            self.write_config(self.config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIXPEEK")}
        if self.api_key is not None:
            env["MIXPEEK_API_KEY"] = self.api_key
        env.update(self.env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--config.file", str(self.config_path),
             "--web.listen-address", f"127.0.0.1:{self.port}", "--log.level", "debug",
             "--log.format", self.log_format, *self.extra_args],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        wait_until(self._listening, 15, what=f"exporter on {self.url} (log: {self.log_path})")
        return self

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited {self.proc.returncode}:\n{self.log_text()}")
        return http("GET", self.url + "/healthz", timeout=2)[0] == 200

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def wait_ready(self, timeout: float = 15.0) -> None:
        wait_until(lambda: http("GET", self.url + "/readyz", timeout=2)[0] == 200, timeout,
                   what="/readyz 200")

    def scrape(self, headers: dict[str, str] | None = None) -> str:
        status, _, body = http("GET", self.url + "/metrics", headers=headers)
        assert status == 200, status
        return body.decode()

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        return parse_metrics(self.scrape())

    def wait_for_sample(self, name: str, predicate: Callable[[float | None], bool],
                        timeout: float = 10.0, **labels: str) -> float | None:
        def check() -> tuple[bool, float | None] | None:
            v = sample(self.metrics(), name, **labels)
            return (True, v) if predicate(v) else None
        return wait_until(check, timeout, 0.1, what=f"{name}{labels} to match")[1]
