"""Build the real container image with a real Docker daemon, run it, scrape it.

No container registry is reachable here, so the test builds everything locally:
1. a private dockerd with its own socket, data root and exec root, started with
   --bridge=none --iptables=false --ip-forward=false so the host network is left untouched
   (the default flags create docker0, NAT rules and turn on ip_forward, and those survive);
2. a Debian bookworm base image with python3 from debootstrap + `docker import`
   (scripts/ci-base-image.sh; the root filesystem is cached under /var/tmp between runs);
3. the project's Dockerfile built with that base and a wheelhouse downloaded on the host
   (scripts/build-image.sh --offline: PIP_NO_INDEX=1 and `docker build --network none`, which
   also proves the air-gapped build path);
4. the image run with --network host the way the Helm chart runs it in Kubernetes
   (read-only root filesystem, all capabilities dropped, no new privileges).
Everything is torn down afterwards: containers, the daemon, its leftover mounts, its directory.

Needs root, dockerd, docker and debootstrap (scripts/install-test-tools.sh). Under CI a missing
tool is a failure; elsewhere the module is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import exporter
from tests.harness import free_port, http, parse_metrics, wait_until
from tests.tooling import in_ci, require_tool

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
BASE_TAG = "local/python3:bookworm"
IMAGE = "mixpeek-exporter:test"
TIMINGS: dict[str, float] = {}


def _require_root() -> None:
    if os.geteuid() != 0:
        msg = "building the image needs root (dockerd, debootstrap)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)


class Docker:
    """A private dockerd and a `docker` client bound to it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mpx-dockerd.", dir="/tmp"))
        self.sock = self.dir / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "0"}
        self.log = self.dir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, dockerd: str) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [dockerd, "--host", f"unix://{self.sock}",
                 "--data-root", str(self.dir / "root"), "--exec-root", str(self.dir / "exec"),
                 "--pidfile", str(self.dir / "dockerd.pid"),
                 "--bridge=none", "--iptables=false", "--ip6tables=false",
                 "--ip-forward=false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited:\n{self.log.read_text()[-3000:]}")
            return self.run("version", check=False, timeout=10).returncode == 0

        wait_until(up, timeout=60, interval=0.2, what="dockerd to answer")

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {proc.returncode}\n"
                                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def script(self, *args: str, timeout: float) -> float:
        """Run one of scripts/*.sh against this daemon; returns its wall time."""
        start = time.monotonic()
        proc = subprocess.run(list(args), cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, f"{args} -> {proc.returncode}\n{proc.stdout[-4000:]}\n" \
                                     f"{proc.stderr[-4000:]}"
        return time.monotonic() - start

    def stop(self) -> None:
        try:
            if self.proc and self.proc.poll() is None:
                ids = self.run("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.run("rm", "-f", *ids, check=False, timeout=60)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            # dockerd leaves at least the nsfs mount of exec/netns/default behind; unmount
            # everything below our directory, deepest first, before deleting it.
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
            for m in sorted((m for m in mounts if m.startswith(str(self.dir))), reverse=True):
                subprocess.run(["umount", "-l", m], check=False, capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    dockerd = require_tool("dockerd")
    require_tool("docker")
    require_tool("debootstrap")
    _require_root()
    d = Docker()
    start = time.monotonic()
    try:
        d.start(dockerd)
        TIMINGS["dockerd start"] = time.monotonic() - start
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def image(docker: Docker) -> str:
    TIMINGS["base image (debootstrap or cache + import)"] = docker.script(
        "scripts/ci-base-image.sh", BASE_TAG, timeout=600)
    TIMINGS["image build (wheelhouse + docker build)"] = docker.script(
        "scripts/build-image.sh", "--offline", "--base-image", BASE_TAG, "--tag", IMAGE,
        timeout=600)
    return IMAGE


@pytest.fixture(scope="module", autouse=True)
def _report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if TIMINGS:
        line = ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items())
        # Shown in every CI log, not only on failure: the build cost is part of the CI budget.
        capman = request.config.pluginmanager.get_plugin("capturemanager")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if capman is not None and reporter is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"\ndocker timings: {line}")


def _inspect(docker: Docker, ref: str) -> dict[str, Any]:
    return json.loads(docker.run("inspect", ref).stdout)[0]


def test_image_metadata(docker: Docker, image: str) -> None:
    cfg = _inspect(docker, image)["Config"]
    assert cfg["User"] == "65534:65534"
    assert "10117/tcp" in cfg["ExposedPorts"]
    assert cfg["Entrypoint"] == ["mixpeek-exporter"]
    assert cfg["Cmd"] is None
    assert cfg["WorkingDir"] == "/etc/mixpeek-exporter"
    health = " ".join(cfg["Healthcheck"]["Test"])
    assert "urllib" in health and "HEALTHCHECK_URL" in health
    assert "HEALTHCHECK_URL=http://127.0.0.1:10117/healthz" in cfg["Env"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] == exporter.__version__
    assert labels["org.opencontainers.image.title"] == "mixpeek-exporter"
    assert labels["org.opencontainers.image.base.name"] == BASE_TAG
    assert labels["org.opencontainers.image.revision"] not in ("", "unknown")


def test_image_has_no_build_tools_or_caches(docker: Docker, image: str) -> None:
    # As root, so that nothing is hidden by permissions.
    probe = ("for t in gcc cc make pip pip3 curl wget; do command -v $t && exit 1; done;"
             " ls /root/.cache /opt/mixpeek-exporter/bin/pip* 2>/dev/null && exit 1;"
             " python3 -c 'import pip' 2>/dev/null && exit 1; exit 0")
    proc = docker.run("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
                      image, "-c", probe, check=False)
    assert proc.returncode == 0, f"found in the image:\n{proc.stdout}{proc.stderr}"
    version = docker.run("run", "--rm", "--network", "none", image, "--version").stdout
    assert exporter.__version__ in version


def test_demo_container_serves_metrics_as_non_root(docker: Docker, image: str) -> None:
    port = free_port()
    name = "mpx-demo"
    start = time.monotonic()
    docker.run("run", "--detach", "--name", name, "--network", "host",
               # What the Helm chart's securityContext asks of the image.
               "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges",
               "--env", f"HEALTHCHECK_URL=http://127.0.0.1:{port}/healthz",
               "--health-interval", "1s", "--health-start-period", "1s",
               image, "--demo", f"--web.listen-address=127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}"

        def documents() -> dict[str, Any] | None:
            status, _, body = http("GET", f"{url}/metrics", timeout=5)
            metrics = parse_metrics(body.decode()) if status == 200 else {}
            return metrics if metrics.get("mixpeek_namespace_documents") else None

        metrics = wait_until(documents, timeout=60, interval=0.2,
                             what="mixpeek_namespace_documents from the container")
        TIMINGS["container start to first documents sample"] = time.monotonic() - start
        assert len(metrics["mixpeek_namespace_documents"]) >= 1
        assert http("GET", f"{url}/healthz")[0] == 200
        assert wait_until(lambda: http("GET", f"{url}/readyz")[0] == 200, timeout=30,
                          what="/readyz")

        # Not root: the image's numeric user, seen from inside and from the host's /proc.
        assert docker.run("exec", name, "id", "-u").stdout.strip() == "65534"
        state = _inspect(docker, name)["State"]
        status = Path(f"/proc/{state['Pid']}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines()
                    if line.startswith("Uid:"))
        assert uids == ["65534"] * 4

        wait_until(lambda: _inspect(docker, name)["State"]["Health"]["Status"] == "healthy",
                   timeout=60, interval=0.5, what="docker HEALTHCHECK to report healthy")
    finally:
        logs = docker.run("logs", name, check=False).stderr
        docker.run("rm", "-f", name, check=False)
    assert "Traceback" not in logs, logs


def test_chart_config_works_in_the_image(docker: Docker, image: str, tmp_path: Path) -> None:
    """The Helm chart's rendered config, mounted where the chart mounts it, passes --config.check
    inside the image and finds the API key file."""
    import helm_python as helm

    with helm.Chart.load(ROOT / "helm" / "mixpeek-exporter") as chart:
        out = chart.render(values={"apiKey": {"value": "sk-docker-test"},
                                   "namespaces": ["my_namespace"]}, name="rel", namespace="mon")
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    config_arg = next(a for a in args if a.startswith("--config.file="))
    config_dir = tmp_path / "config"
    secret_dir = tmp_path / "secret"
    config_dir.mkdir()
    secret_dir.mkdir()
    (config_dir / "config.yaml").write_text(cm["data"]["config.yaml"])
    (secret_dir / "api-key").write_text("sk-docker-test\n")
    for p in (config_dir, secret_dir, config_dir / "config.yaml", secret_dir / "api-key"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the image's user 65534
    proc = docker.run("run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
                      "-v", f"{config_dir}:/etc/mixpeek-exporter/config:ro",
                      "-v", f"{secret_dir}:/etc/mixpeek-exporter/secret:ro",
                      image, config_arg, "--config.check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "API key: found (file /etc/mixpeek-exporter/secret/api-key)" in proc.stdout, (
        proc.stdout + proc.stderr)


def test_zero_config_in_the_image(docker: Docker, image: str, tmp_path: Path) -> None:
    """`docker run -e MIXPEEK_API_KEY=... image` runs without a config file, on discovery; a
    config mounted at /etc/mixpeek-exporter/config.yaml is picked up without a flag."""
    run = ["run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
           "--env", "MIXPEEK_API_KEY=sk-docker-test"]
    proc = docker.run(*run, image, "--config.check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "discovery on" in proc.stdout and "no config file" in proc.stdout, proc.stdout
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"namespaces": ["my_namespace", "ns_0123456789"]}))
    config.chmod(0o644)
    proc = docker.run(*run, "-v", f"{config}:/etc/mixpeek-exporter/config.yaml:ro", image,
                      "--config.check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config.yaml: configuration is valid (2 namespaces" in proc.stdout, proc.stdout


if __name__ == "__main__":  # pragma: no cover - manual runs: python tests/test_docker_image.py
    sys.exit(pytest.main([__file__, "-v"]))
