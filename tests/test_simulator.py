"""The simulator itself: its rate limit, its control API, the fields it serves, its command line.

The exporter's tests trust what the simulator does; these tests hold it to that.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.simulator import Simulator, default_namespaces, make_namespace
from exporter.simulator.limit import WINDOW_SECONDS, MinuteWindow
from tests.harness import ROOT, SimulatorProcess, http, wait_until

KEY = "sk_test_SIMULATOR_0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(api_key=KEY) as s:
        yield s


def api(sim: SimulatorProcess, method: str, path: str, body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    status, hdrs, data = http(method, sim.url + path, body, AUTH if headers is None else headers)
    return status, hdrs, json.loads(data) if data else None


# -- the rate limit: at most N requests in any 60 seconds ----------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(limit=st.integers(1, 5),
       gaps=st.lists(st.sampled_from([0.0, 0.5, 7.0, 19.5, 30.0, 59.9, 60.0, 61.0]),
                     max_size=40))
def test_window_accepts_n_in_any_minute_and_refuses_only_when_full(
        limit: int, gaps: list[float]) -> None:
    clock = FakeClock()
    window = MinuteWindow(limit, clock)
    accepted: list[float] = []
    for gap in gaps:
        clock.now += gap
        t = clock.now
        in_last_minute = sum(1 for a in accepted if a > t - WINDOW_SECONDS)
        verdict = window.take()
        # Refused exactly when N were accepted in the last 60 s: never more, never fewer.
        assert verdict.allowed is (in_last_minute < limit)
        if verdict.allowed:
            accepted.append(t)
            assert verdict.remaining == limit - in_last_minute - 1
        else:
            # Retry-After is when the oldest of those N leaves the window.
            oldest = min(a for a in accepted if a > t - WINDOW_SECONDS)
            assert verdict.reset_after == pytest.approx(oldest + WINDOW_SECONDS - t)
            assert verdict.remaining == 0
    assert window.refused == len(gaps) - len(accepted)
    for a in accepted:
        assert sum(1 for b in accepted if a <= b < a + WINDOW_SECONDS) <= limit


def test_a_refused_client_is_accepted_once_it_waits_retry_after() -> None:
    clock = FakeClock()
    window = MinuteWindow(2, clock)
    assert window.take().allowed and window.take().allowed
    clock.now += 10
    refused = window.take()
    assert not refused.allowed and refused.retry_after == 50
    clock.now += refused.retry_after - 0.5
    assert not window.take().allowed
    clock.now += 0.5
    assert window.take().allowed
    assert window.refused == 2


def test_rate_limit_flag_refuses_past_n_with_retry_after_and_counts_refusals() -> None:
    with SimulatorProcess(api_key=KEY, extra_args=["--rate-limit-rpm", "3"]) as s:
        remaining = []
        for path in ("/v1/namespaces/demo_catalog", "/v1/namespaces/ns_demo0001/stats",
                     "/v1/namespaces"):
            status, hdrs, _ = api(s, "GET", path)
            assert status == 200 and hdrs["X-RateLimit-Limit"] == "3"
            remaining.append(hdrs["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        status, hdrs, body = api(s, "POST", "/v1/namespaces/stats/batch",
                                 {"namespace_ids": ["ns_demo0001"]})
        assert status == 429 and hdrs["X-RateLimit-Remaining"] == "0"
        retry = int(hdrs["Retry-After"])
        assert 1 <= retry <= 60 and body["error"]["details"]["retry_after"] == retry
        # Answers the limit does not charge still say where the key stands.
        for path, headers, expected in (("/v1/namespaces/demo_media",
                                         {"Authorization": "Bearer sk_wrong"}, 401),
                                        ("/v1/health", {}, 200), ("/v1/nope", AUTH, 404)):
            status, hdrs, _ = api(s, "GET", path, headers=headers)
            assert status == expected and hdrs["X-RateLimit-Limit"] == "3"
            assert hdrs["X-RateLimit-Remaining"] == "0"
        stats = s.stats()
        assert stats["rate_limit"] == {"limit": 3, "refused": 1, "in_window": 3}
        assert stats["requests"]["429"] == 1 and stats["requests"]["401"] == 1


def test_rate_limit_set_and_lifted_through_the_control_api(sim: SimulatorProcess) -> None:
    status, hdrs, _ = api(sim, "GET", "/v1/namespaces/demo_catalog")
    assert status == 200 and "X-RateLimit-Limit" not in hdrs
    sim.configure(rate_limit_rpm=1)
    try:
        assert api(sim, "GET", "/v1/namespaces/demo_catalog")[0] == 200
        assert api(sim, "GET", "/v1/namespaces/demo_catalog")[0] == 429
        assert sim.stats()["rate_limit"]["refused"] == 1
        sim.control("POST", "reset")
        assert sim.stats()["rate_limit"]["refused"] == 0
    finally:
        sim.configure(rate_limit_rpm=0)
    status, hdrs, _ = api(sim, "GET", "/v1/namespaces/demo_catalog")
    assert status == 200 and "X-RateLimit-Remaining" not in hdrs


# -- the API 0.82 operator fields, and anything at all through _raw -------------------------------


@pytest.fixture
def ns(sim: SimulatorProcess) -> Iterator[str]:
    sim.put("ns_operator", make_namespace("ns_operator", "operator", 500))
    yield "ns_operator"
    sim.delete("ns_operator")


def served(sim: SimulatorProcess, ns: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Get Namespace body, its stats/batch entry)."""
    status, _, doc = api(sim, "GET", f"/v1/namespaces/{ns}")
    assert status == 200
    _, _, batch = api(sim, "POST", "/v1/namespaces/stats/batch", {"namespace_ids": [ns]})
    return doc, batch["stats"][ns]


def test_operator_fields_are_served_and_each_can_be_set(sim: SimulatorProcess, ns: str) -> None:
    doc, _ = served(sim, ns)
    assert doc["namespace_ready"] is True and doc["document_count_complete"] is True
    assert doc["expires_at"] is None and doc["clone_status"] is None
    sim.patch(ns, {"namespace_ready": False, "expires_at": "2026-12-01T00:00:00Z",
                   "clone_status": "failed", "clone_error": "source gone"})
    doc, _ = served(sim, ns)
    assert (doc["namespace_ready"], doc["expires_at"], doc["clone_status"], doc["clone_error"]) \
        == (False, "2026-12-01T00:00:00Z", "failed", "source gone")


def test_a_degraded_count_is_null_in_the_namespace_and_a_lower_bound_in_stats(
        sim: SimulatorProcess, ns: str) -> None:
    sim.patch(ns, {"document_count_complete": False})
    doc, stats = served(sim, ns)
    assert doc["document_count"] is None and doc["document_count_complete"] is False
    assert stats["document_count_complete"] is False and 0 <= stats["document_count"] < 500
    sim.patch(ns, {"document_count_complete": True})
    doc, stats = served(sim, ns)
    assert doc["document_count"] == stats["document_count"] == 500


def test_a_clone_in_flight_is_never_ready(sim: SimulatorProcess, ns: str) -> None:
    sim.patch(ns, {"clone_status": "cloning", "clone_phase": "queued"})
    assert served(sim, ns)[0]["namespace_ready"] is False
    sim.patch(ns, {"clone_status": "ready", "clone_phase": None})
    assert served(sim, ns)[0]["namespace_ready"] is True


@pytest.mark.parametrize(("field", "value"), [
    ("document_count", 10**400),
    ("bucket_count", -1),
    ("created_at", "0000-00-00"),
    ("document_count", "12"),
    ("namespace_ready", "yes"),
    ("expires_at", 1767225600),
], ids=["huge_count", "negative_buckets", "zero_date", "string_count", "string_bool",
        "epoch_expiry"])
def test_raw_overrides_are_sent_verbatim_everywhere_the_field_appears(
        sim: SimulatorProcess, ns: str, field: str, value: Any) -> None:
    sim.patch(ns, {"document_count_complete": False, "_raw": {field: value}})
    status, _, raw = http("GET", f"{sim.url}/v1/namespaces/{ns}", headers=AUTH)
    assert status == 200 and json.loads(raw)[field] == value  # the rules do not apply
    _, _, page = api(sim, "POST", "/v1/namespaces/list", {"filters": {"namespace_id": ns}})
    assert page["results"][0][field] == value
    _, stats = served(sim, ns)
    if field in stats:
        assert stats[field] == value
    sim.patch(ns, {"_raw": None})
    assert served(sim, ns)[0][field] != value


def test_omitted_fields_are_absent_until_cleared(sim: SimulatorProcess, ns: str) -> None:
    sim.patch(ns, {"_omit": ["namespace_ready", "bucket_count"]})
    doc, stats = served(sim, ns)
    assert "namespace_ready" not in doc and "bucket_count" not in doc
    assert "bucket_count" not in stats and "document_count" in stats
    sim.patch(ns, {"_omit": None})
    assert "namespace_ready" in served(sim, ns)[0]


def test_control_api_names_what_is_wrong(sim: SimulatorProcess, ns: str) -> None:
    for path, body, says in (
            (f"namespaces/{ns}", {"_fail": {"mode": "explode"}}, "_fail.mode"),
            (f"namespaces/{ns}", {"_fail": {"status": 200}}, "_fail.status"),
            (f"namespaces/{ns}", {"_bogus": 1}, "_bogus"),
            (f"namespaces/{ns}", {"_raw": [1]}, "_raw"),
            ("config", {"rate_limit_rpm": -1}, "rate_limit_rpm"),
            ("config", {"rate_limit": 5}, "rate_limit")):
        method = "PATCH" if path.startswith("namespaces") else "POST"
        status, _, data = http(method, f"{sim.url}/_sim/{path}", body)
        assert status == 400 and says in json.loads(data)["error"], (body, data)
    assert sim.namespace(ns)["fail"] is None  # nothing applied


def test_api_write_methods_never_reach_the_control_api(sim: SimulatorProcess) -> None:
    # They once did: PATCH /v1/namespaces/x changed the stored namespace, with no key at all.
    status, _, _ = http("PATCH", f"{sim.url}/v1/namespaces/demo_catalog", {"document_count": 1})
    assert status == 405
    assert sim.namespace("demo_catalog")["stored"]["document_count"] == 12_000


def test_a_refused_post_leaves_the_connection_usable(sim: SimulatorProcess) -> None:
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        body = json.dumps({"namespace_ids": ["ns_demo0001"]})
        conn.request("POST", "/v1/namespaces/stats/batch", body,
                     {"Authorization": "Bearer sk_wrong", "Content-Type": "application/json"})
        first = conn.getresponse()
        first.read()
        conn.request("GET", "/v1/namespaces/demo_media", headers=AUTH)
        second = conn.getresponse()
        assert (first.status, second.status) == (401, 200)
        assert json.loads(second.read())["namespace_name"] == "demo_media"
    finally:
        conn.close()


# -- in-process use (--demo) and the command line ------------------------------------------------


def test_demo_counts_grow_and_zero_namespaces_means_none() -> None:
    demo = Simulator("sk_demo")
    empty = Simulator("sk_demo", namespaces=[])
    url, empty_url = demo.start(), empty.start()
    try:
        demo.grow({"demo_catalog": 1000.0})

        def count() -> int:
            _, _, body = http("GET", url + "/v1/namespaces/demo_catalog",
                              headers={"Authorization": "Bearer sk_demo"})
            return int(json.loads(body)["document_count"])
        first = count()
        wait_until(lambda: count() > first, 10, what="demo_catalog to grow")
        _, _, body = http("GET", empty_url + "/v1/namespaces",
                          headers={"Authorization": "Bearer sk_demo"})
        assert json.loads(body)["total_count"] == 0
    finally:
        demo.stop()
        empty.stop()


def test_seed_decides_the_generated_counts() -> None:
    def counts(seed: int) -> list[int]:
        return [d["document_count"] for d in default_namespaces(20, seed)[3:]]
    assert counts(7) == counts(7) and counts(7) != counts(8)


def test_listens_on_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    sim6 = Simulator("sk_demo")
    url = sim6.start("::1", 0)
    try:
        assert url.startswith("http://[::1]:")
        assert http("GET", url + "/v1/health")[0] == 200
    finally:
        sim6.stop()


def test_refuses_to_listen_beyond_loopback() -> None:
    res = subprocess.run([sys.executable, "-m", "exporter.simulator", "--listen", "0.0.0.0:0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "--listen '0.0.0.0:0': the simulator listens on loopback only" in res.stderr
