"""Install it the way users will: build, check, install into a fresh venv, run.

The sdist and the wheel are built with ``python -m build`` from a copy of the checkout's files
(what ``git ls-files`` lists, plus new files not yet committed; never .venv or build output) and
checked with ``twine check --strict``. The wheel is then installed into a new venv with
``pip install --no-index`` from a wheelhouse of its dependencies (``pip download`` at the versions
the test venv has, so nothing newer sneaks in), and run from a directory outside the checkout
with a clean environment: ``--version``, ``--config.check`` on the sdist's config.example.yaml,
``--demo`` until /metrics answers. The same venv serves ``make demo PORT=...`` and the README's
way to find the exporter's pid before ``kill -HUP`` (its ``pgrep -af`` pattern).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import exporter
from tests.harness import free_port, http, parse_metrics, wait_until
from tests.tooling import require_tool

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    tmp: Path


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path  # outside the checkout: nothing of the project is importable from here
    env: dict[str, str]
    dist: Dist

    def run(self, *args: str, extra_env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "mixpeek-exporter"), *args],
                              cwd=self.workdir, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)


def _run(argv: list[str], cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _project_files() -> list[str]:
    """What a fresh clone holds, plus files not committed yet (but not ignored ones)."""
    git = require_tool("git", "apt-get install git")
    out = _run([git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
               cwd=ROOT).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def _clean_env() -> dict[str, str]:
    """The environment minus anything that could put the checkout or the test venv on the
    path, or configure the exporter."""
    drop = ("PYTHON", "VIRTUAL_ENV", "MIXPEEK")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def dist() -> Iterator[Dist]:
    with tempfile.TemporaryDirectory(prefix="mixpeek-pkg-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        for f in _project_files():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
        _run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(src)],
             env=_clean_env())
        (sdist,) = (tmp / "dist").glob("*.tar.gz")
        (wheel,) = (tmp / "dist").glob("*.whl")
        yield Dist(sdist, wheel, tmp)


@pytest.fixture(scope="module")
def installed(dist: Dist) -> Installed:
    tmp = dist.tmp
    wheelhouse = tmp / "wheelhouse"
    # Pin every dependency to the version this test venv runs: the fresh install then gets
    # what the rest of the suite tested, from pip's cache when it has them.
    pins = tmp / "constraints.txt"
    pins.write_text("".join(f"{d.metadata['Name']}=={d.version}\n"
                            for d in importlib.metadata.distributions()
                            if d.metadata["Name"] and d.metadata["Name"] != "mixpeek-exporter"))
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
          "--only-binary=:all:", "--constraint", str(pins), "--dest", str(wheelhouse),
          str(dist.wheel)])
    venv = tmp / "venv"
    env = _clean_env()
    _run([sys.executable, "-m", "venv", str(venv)], env=env)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
          "--disable-pip-version-check", "--no-index", "--find-links", str(wheelhouse),
          str(dist.wheel)], env=env)
    workdir = tmp / "work"
    workdir.mkdir()
    return Installed(venv, workdir, env, dist)


# ---------------------------------------------------------------------------- the artefacts

def test_twine_check_passes(dist: Dist) -> None:
    res = _run([sys.executable, "-m", "twine", "check", "--strict", str(dist.sdist),
                str(dist.wheel)])
    assert res.stdout.count("PASSED") == 2, res.stdout


def test_wheel_holds_every_module_of_the_package(dist: Dist) -> None:
    """Every exporter module of the source tree, in every subpackage (settings, mixpeek,
    polling, state, render, web, simulator, ...), and nothing but the package."""
    source = {str(p.relative_to(ROOT)) for p in (ROOT / "exporter").rglob("*.py")
              if "__pycache__" not in p.parts}
    packages = {str(Path(p).parent) for p in source if p.endswith("/__init__.py")}
    assert len(packages) >= 7, packages
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
    in_wheel = {n for n in names if n.endswith(".py")}
    assert source - in_wheel == set(), "missing from the wheel"
    assert in_wheel - source == set(), "in the wheel but not in the source tree"
    top = {n.split("/")[0] for n in names}
    assert top == {"exporter", f"mixpeek_exporter-{exporter.__version__}.dist-info"}, top


def test_sdist_ships_the_example_config_and_readme(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"README.md", "config.example.yaml", "pyproject.toml",
            "exporter/__init__.py", "monitoring/alerts.yaml"} <= names


# ---------------------------------------------------------------------------- the installed command

def test_nothing_is_imported_from_the_checkout(installed: Installed) -> None:
    res = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                          "import exporter; print(exporter.__file__)"],
                         cwd=installed.workdir, env=installed.env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).is_relative_to(installed.venv), res.stdout


def test_version(installed: Installed) -> None:
    res = installed.run("--version")
    assert res.returncode == 0, res.stderr
    assert exporter.__version__ in res.stdout + res.stderr


def test_config_check_on_the_shipped_example(installed: Installed) -> None:
    with tarfile.open(installed.dist.sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/config.example.yaml"))
        data = tar.extractfile(member)
        assert data is not None
        example = installed.workdir / "config.example.yaml"
        example.write_bytes(data.read())
    res = installed.run("--config.check", f"--config.file={example}",
                        extra_env={"MIXPEEK_API_KEY": "sk_test_packaging_0123456789"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "configuration is valid" in res.stdout
    assert "API key: found (env MIXPEEK_API_KEY)" in res.stdout
    assert "sk_test_packaging_0123456789" not in res.stdout + res.stderr


@contextmanager
def _serving(argv: list[str], cwd: Path, env: dict[str, str], port: int
             ) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process in its own session, wait until its /metrics has namespace documents,
    and stop it (SIGTERM to that session, which this test created) afterwards."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def documents() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"exited {proc.returncode}: {log.read().decode(errors='replace')}")
        status, _, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=2)
        return status == 200 and bool(parse_metrics(body.decode()).get(
            "mixpeek_namespace_documents"))

    try:
        wait_until(documents, 30, 0.1, what=f"/metrics with documents on port {port}")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()


def test_demo_serves_metrics_and_stops_cleanly(installed: Installed) -> None:
    port = free_port()
    with _serving([str(installed.venv / "bin" / "mixpeek-exporter"), "--demo",
                   f"--web.listen-address=127.0.0.1:{port}"],
                  installed.workdir, installed.env, port) as proc:
        pass
    assert proc.returncode == 0


def test_make_demo_port(installed: Installed) -> None:
    """`make demo PORT=...` serves the demo on that port (VENV points make at the fresh venv;
    -o keeps it from reinstalling the package there)."""
    make = require_tool("make", "apt-get install make")
    port = free_port()
    venv = installed.venv
    with _serving([make, "--no-print-directory", "-C", str(ROOT), "-o",
                   f"{venv}/.installed-runtime", "demo", f"PORT={port}", f"VENV={venv}"],
                  ROOT, installed.env, port):
        pass


def _readme_reload_pattern() -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"^pgrep -af '([^']+)'", readme, re.M)
    assert m, "README: the way to find the pid to reload, `pgrep -af '...'`, is gone"
    return m.group(1)


def test_readme_reload_one_liner_finds_the_installed_exporter(installed: Installed) -> None:
    """The console script's command line starts with the interpreter, so `pidof
    mixpeek-exporter` finds nothing; the README's `pgrep -af PATTERN` must list it, and its
    process name is the script's, cut to 15 characters, as the README says."""
    pgrep = require_tool("pgrep", "apt-get install procps")
    port = free_port()
    with _serving([str(installed.venv / "bin" / "mixpeek-exporter"), "--demo",
                   f"--web.listen-address=127.0.0.1:{port}"],
                  installed.workdir, installed.env, port) as proc:
        found = subprocess.run([pgrep, "-f", _readme_reload_pattern()], capture_output=True,
                               text=True, timeout=30).stdout.split()
        assert str(proc.pid) in found
        comm = Path(f"/proc/{proc.pid}/comm")
        if comm.exists():
            assert comm.read_text().strip() == "mixpeek-exporte"
        pidof = shutil.which("pidof")
        if pidof:
            named = subprocess.run([pidof, "mixpeek-exporter"], capture_output=True, text=True,
                                   timeout=30).stdout.split()
            assert str(proc.pid) not in named  # why the README does not use pidof
