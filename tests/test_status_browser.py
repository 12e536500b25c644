"""/status in a real browser: headless Chromium loads the page of a real exporter polling the
simulator, with a failing namespace, one that is gone, and a hostile name and error message.

The table is read from the DOM the browser built (``--dump-dom``), so markup that slipped
through unescaped would show up as elements, not text. The same run writes a screenshot for
people to look at: to $MIXPEEK_SCREENSHOT (docs/status.png, the one the README shows, when set
to that path), else into the test's temporary folder. In CI a missing chromium fails the test
(tests.tooling).
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness import ExporterProcess, SimulatorProcess, exporter_config, http, wait_until
from tests.status_dom import StatusPage
from tests.tooling import require_tool

pytestmark = pytest.mark.e2e

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_MESSAGE = "<img src=x onerror=alert(2)> upstream unavailable"
# tooling.md §7: without exactly these flags (and a new empty profile) it tries the network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(exe: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        res = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                             capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"chromium exited {res.returncode}: {res.stderr[-2000:]}"
    return res.stdout


def key(cells: dict[str, str]) -> str:
    """A row's id, or its name when the id is not known (shown as a dash)."""
    return cells["id"] if cells["id"] != "\u2014" else cells["name"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_status_page_in_a_real_browser(api_key: str, tmp_path: Path) -> None:
    exe = require_tool("chromium", "apt-get install -y --no-install-recommends chromium")
    with SimulatorProcess(api_key=api_key, namespaces=6) as sim:
        sim.patch("ns_demo0002", {"namespace_name": HOSTILE_NAME})
        sim.patch("ns_demo0003", {"_fail": {"status": 500, "message": HOSTILE_MESSAGE}})
        ids = [f"ns_demo000{i}" for i in (1, 2, 3)] + [f"ns_{i:08d}" for i in (3, 4, 5)]
        cfg = exporter_config(sim.url, [*ids, "retired_catalog"])
        with ExporterProcess(cfg, api_key=api_key) as exp:
            url = exp.url + "/status"

            def settled() -> dict[str, str] | None:
                rows = StatusPage(http("GET", url)[2].decode()).rows
                states = {key(r.cells): r.state for r in rows}
                done = (states.get("ns_demo0003") == "failing"
                        and states.get("retired_catalog") == "failing"
                        and list(states.values()).count("up") == 5)
                assert done, states  # wait_until reports the last one
                return states
            wait_until(settled, 20, 0.2, what="two failing namespaces and five up on /status")

            page = StatusPage(chromium(exe, "--dump-dom", url))
            assert page.elements.get("script", 0) == 0 and page.elements.get("img", 0) == 0
            assert [r.state for r in page.rows] == ["failing"] * 2 + ["up"] * 5
            rows = {key(r.cells): r.cells for r in page.rows}
            broken = rows["ns_demo0003"]
            assert (broken["up"], broken["reason"]) == ("no", "server_error")
            assert HOSTILE_MESSAGE in broken["message"]
            assert broken["age"] == "never"
            gone = rows["retired_catalog"]
            assert (gone["up"], gone["reason"]) == ("no", "not_found")
            hostile = rows["ns_demo0002"]
            assert (hostile["name"], hostile["up"]) == (HOSTILE_NAME, "yes")
            assert hostile["age"].endswith("s ago") and hostile["metadata"].endswith("s ago")
            assert page.texts["count-failing"] == "failing: 2"
            assert "Showing 7 of 7 matching" in page.texts["shown"]

            shot = Path(os.environ.get("MIXPEEK_SCREENSHOT") or tmp_path / "status.png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.unlink(missing_ok=True)
            chromium(exe, f"--screenshot={shot}", "--window-size=1200,700", url)
            assert png_size(shot) == (1200, 700)
