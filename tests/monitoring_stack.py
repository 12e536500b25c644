"""Real Prometheus and Alertmanager servers, and a webhook receiver, for the monitoring tests.

Each server runs as the Debian binary on a free loopback port with a throw-away data directory
(``prometheus``, ``prometheus-alertmanager`` with gossip off); tests talk to them over their HTTP
APIs only. The webhook receiver is a loopback HTTP server in the test process that records every
notification Alertmanager delivers. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.harness import free_port, http, wait_until
from tests.tooling import require_tool

ROOT = Path(__file__).resolve().parent.parent
MON = ROOT / "monitoring"
JOB = "mixpeek-exporter"


class _Server:
    """A binary started with a config it writes into its own temporary directory."""

    name = ""
    proc: subprocess.Popen[bytes]

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"mixpeek-{self.name}-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / f"{self.name}.log"

    def _start(self, argv: list[str]) -> None:
        self._log = open(self.log_path, "wb")  # closed in __exit__
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 20, 0.1, what=f"{self.name} ready on {self.url}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.log_text()}")
        return http("GET", self.url + "/-/ready", timeout=2)[0] == 200

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        self._tmp.cleanup()

    def get_json(self, path: str, **params: str) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        status, _, body = http("GET", url, timeout=10)
        assert status == 200, f"{self.name} GET {path} {params}: {status} {body!r}"
        return json.loads(body)


class PrometheusProcess(_Server):
    """``prometheus`` with the given configuration and one rule file."""

    name = "prometheus"

    def __init__(self, config: dict[str, Any], rules_text: str) -> None:
        super().__init__()
        (self.dir / "alerts.yaml").write_text(rules_text)
        config["rule_files"] = [str(self.dir / "alerts.yaml")]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def __enter__(self) -> PrometheusProcess:
        self._start([require_tool("prometheus"), f"--config.file={self.dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={self.dir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"])
        return self

    def api(self, path: str, **params: str) -> Any:
        data = self.get_json(f"/api/v1/{path}", **params)
        assert data["status"] == "success", f"{path} {params}: {data!r}"
        return data["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def alerts(self, name: str, state: str | None = None, **labels: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"]
                if a["labels"]["alertname"] == name and (state is None or a["state"] == state)
                and all(a["labels"].get(k) == v for k, v in labels.items())]


def prometheus_config(targets: list[str], alertmanager: str | None = None) -> dict[str, Any]:
    """monitoring/prometheus.yml, sped up (1 s scrapes and evaluations), pointed at the test's
    exporters and, when given (``host:port``), at the test's Alertmanager."""
    cfg = yaml.safe_load((MON / "prometheus.yml").read_text())
    cfg["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == JOB)
    job.update({"scrape_interval": "1s", "scrape_timeout": "1s",
                "static_configs": [{"targets": targets}]})
    cfg.pop("alerting", None)
    if alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return cfg


class AlertmanagerProcess(_Server):
    """Debian's ``prometheus-alertmanager`` with the given configuration, gossip switched off."""

    name = "alertmanager"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config_path = self.dir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def __enter__(self) -> AlertmanagerProcess:
        self._start([require_tool("prometheus-alertmanager", "run `make tools` as root"),
                     f"--config.file={self.config_path}", f"--storage.path={self.dir / 'data'}",
                     "--cluster.listen-address=", f"--web.listen-address=127.0.0.1:{self.port}",
                     "--log.level=warn"])
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        status, _, body = http("POST", self.url + "/api/v2/alerts", alerts)
        assert status == 200, f"POST /api/v2/alerts: {status} {body!r}"

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with ``status.state`` (active, suppressed) and
        ``status.inhibitedBy``."""
        return list(self.get_json("/api/v2/alerts"))


class WebhookReceiver:
    """A loopback HTTP server that records each POSTed notification as (path, JSON body)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer._received.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._received)

    def alerts(self, path: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(path, alert) for every alert of every notification, optionally of one path."""
        return [(p, a) for p, body in self.received() if path is None or p == path
                for a in body.get("alerts", [])]


def alertmanager_config_for_test(webhook_url: str) -> dict[str, Any]:
    """monitoring/alertmanager.yml as shipped (routes, grouping, inhibition), with each
    placeholder receiver pointed at ``<webhook_url>/<receiver name>`` and the first notification
    sent 1 s after an alert arrives instead of 30 s."""
    cfg = yaml.safe_load((MON / "alertmanager.yml").read_text())
    for receiver in cfg["receivers"]:
        hooks = receiver["webhook_configs"]
        assert len(hooks) == 1, receiver
        hooks[0]["url"] = f"{webhook_url}/{receiver['name']}"
    cfg["route"].update({"group_wait": "1s", "group_interval": "1s"})
    return cfg
