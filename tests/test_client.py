"""The Mixpeek client against requests-mock: every error class, retries, Retry-After,
identifier encoding, the size cap, the answer being for the namespace asked, and what reaches
the wire. (requests-mock replaces the transport: the total deadline, gzip and the key on a real
socket are in test_deadline.py and test_mixpeek_wire.py.)"""

from __future__ import annotations

import email.utils
import io
import time
from typing import Any

import pytest
import requests
import requests_mock

from exporter.mixpeek.client import MixpeekClient, namespace_path
from exporter.ratelimit import TokenBucket
from exporter.settings.schema import MixpeekConfig
from exporter.settings.secrets import Secret

BASE = "https://api.mixpeek.test"
KEY = "sk_live_unit_9a8b7c"
DOC: dict[str, Any] = {
    "namespace_name": "spotify_playlists_dev", "namespace_id": "ns_abc",
    "infrastructure": {"autoscaling_enabled": False, "compute_tier": "shared",
                       "max_concurrent_jobs": 10, "qdrant_collection": "x"},
    "document_count": 123, "bucket_count": 4, "collection_count": 5, "object_count": 6,
    "feature_extractors": [{"feature_extractor_name": "a"}], "payload_indexes": None,
    "auto_create_indexes": True, "created_at": "2023-11-07T05:31:56Z",
    "brand_new_field": {"x": 1},
}


def envelope(status: int, kind: str, msg: str, **details: Any) -> dict[str, Any]:
    return {"success": False, "status": status,
            "error": {"type": kind, "message": msg, "details": details or None}}


class Sleeps(list[float]):
    """Records the client's waits and moves a fake clock, so no test sleeps for real."""

    now = 1000.0

    def __call__(self, s: float) -> None:
        self.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make(sleeps: Sleeps, **cfg: Any) -> MixpeekClient:
    conf = MixpeekConfig(base_url=BASE, max_requests_per_minute=0, **cfg)
    return MixpeekClient(conf, Secret(KEY), TokenBucket(0, clock=sleeps.clock), sleep=sleeps)


def url(ident: str = "spotify_playlists_dev") -> str:
    return BASE + namespace_path(ident)


@pytest.mark.parametrize(("ident", "says"), [
    ("..", "is not a namespace identifier"), (".", "is not a namespace identifier"),
    ("", "is empty"), ("a/../b", "'/'"), ("x?admin=1#frag", "'?'"), ("100%", "'%'"),
    ("tab\there", "'\\t'"),
])
def test_unsafe_identifiers_are_never_requested(sleeps: Sleeps, ident: str, says: str) -> None:
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, json=DOC)
        r = make(sleeps).get_namespace(ident)
    assert r.reason == "client_error" and r.message.startswith("not requested")
    assert says in r.message, r.message
    assert m.call_count == 0


def test_success_parses_and_sends_auth_and_user_agent(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), json=DOC, headers={"X-RateLimit-Remaining": "57"})
        c = make(sleeps)
        r = c.get_namespace("spotify_playlists_dev")
    assert r.ok and r.values is not None
    assert (r.values.documents, r.values.buckets, r.values.collections, r.values.objects) == (
        123, 4, 5, 6)
    assert r.values.max_concurrent_jobs == 10 and r.values.autoscaling_enabled is False
    assert r.values.feature_extractors == 1 and r.values.payload_indexes is None
    assert r.values.created_timestamp == 1699335116.0
    req = m.request_history[0]
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["User-Agent"].startswith("mixpeek-exporter/")
    assert c.stats.snapshot() == ((("200", 1),), 57.0)


@pytest.mark.parametrize(("ident", "path"), [
    ("my namespace", "/v1/namespaces/my%20namespace"),
    ("a+b&c=d;e:f@g~h", "/v1/namespaces/a%2Bb%26c%3Dd%3Be%3Af%40g~h"),
    ("..x", "/v1/namespaces/..x"),
    ("café", "/v1/namespaces/caf%C3%A9"),
])
def test_identifier_is_one_encoded_path_segment(sleeps: Sleeps, ident: str, path: str) -> None:
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, json=DOC)
        make(sleeps).get_namespace(ident)
    sent = m.request_history[0]
    assert sent.url == BASE + path
    assert sent.query == ""


@pytest.mark.parametrize(("status", "body", "reason", "fragment"), [
    (401, envelope(401, "UnauthorizedError", "Invalid API key"), "unauthorized",
     "UnauthorizedError: Invalid API key"),
    (403, envelope(403, "ForbiddenError", "Missing permissions"), "forbidden", "ForbiddenError"),
    (403, envelope(403, "QuotaExceededError", "Quota exceeded", resource="namespaces"),
     "forbidden", "QuotaExceededError"),
    (404, envelope(404, "NotFoundError", "Namespace not found"), "not_found", "Namespace not"),
    (422, envelope(422, "ValidationError", "Bad", validation_errors=[
        {"type": "x", "location": "namespace_identifier", "message": "too long"}]),
     "client_error", "namespace_identifier: too long"),
    (422, {"detail": [{"loc": ["path", "namespace_identifier"], "msg": "field required",
                       "type": "value_error"}]}, "client_error",
     "path.namespace_identifier: field required"),
    (400, envelope(400, "BadRequestError", "nope"), "client_error", "HTTP 400"),
    (500, envelope(500, "InternalServerError", "boom"), "server_error", "HTTP 500"),
    (502, "<html>bad gateway</html>", "server_error", "HTTP 502"),
])
def test_errors_are_classified_and_not_retried(sleeps: Sleeps, status: int, body: Any,
                                                reason: str, fragment: str) -> None:
    with requests_mock.Mocker() as m:
        if isinstance(body, str):
            m.get(url(), status_code=status, text=body)
        else:
            m.get(url(), status_code=status, json=body)
        r = make(sleeps, max_retries=3).get_namespace("spotify_playlists_dev")
    assert r.reason == reason
    assert fragment in r.message
    assert m.call_count == 1, "only 429/503/timeouts/connection errors are retried"
    assert sleeps == []


def test_503_is_retried_with_backoff_then_succeeds(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), [{"status_code": 503, "json": envelope(503, "X", "busy")},
                      {"status_code": 503, "json": envelope(503, "X", "busy")},
                      {"status_code": 200, "json": DOC}])
        r = make(sleeps, max_retries=2, retry_backoff_seconds=1.0).get_namespace(
            "spotify_playlists_dev")
    assert r.ok and r.attempts == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 2.0  # full jitter, doubling


def test_retries_give_up_after_max_retries(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), status_code=503, json=envelope(503, "X", "busy"))
        r = make(sleeps, max_retries=2).get_namespace("spotify_playlists_dev")
    assert r.reason == "server_error" and r.attempts == 3 and m.call_count == 3


def test_429_honours_retry_after_seconds(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), [{"status_code": 429, "headers": {"Retry-After": "7"},
                       "json": envelope(429, "TooManyRequestsError", "slow down")},
                      {"status_code": 200, "json": DOC}])
        c = make(sleeps, max_retries=1)
        r = c.get_namespace("spotify_playlists_dev")
    assert r.ok and sleeps == [7.0]
    assert c.stats.snapshot()[0] == (("200", 1), ("429", 1))


def test_429_honours_retry_after_http_date(sleeps: Sleeps) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    with requests_mock.Mocker() as m:
        m.get(url(), [{"status_code": 429, "headers": {"Retry-After": when}, "json": {}},
                      {"status_code": 200, "json": DOC}])
        # A wait this long is taken in the worker only when the timeout allows it.
        r = make(sleeps, max_retries=1, timeout_seconds=30).get_namespace(
            "spotify_playlists_dev")
    assert r.ok and len(sleeps) == 1 and 17 <= sleeps[0] <= 21


def test_429_without_retry_after_uses_body_hint_or_backoff(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), [{"status_code": 429,
                       "json": envelope(429, "TooManyRequestsError", "x", retry_after=3)},
                      {"status_code": 429, "json": {}},
                      {"status_code": 200, "json": DOC}])
        r = make(sleeps, max_retries=2, retry_backoff_seconds=0.5).get_namespace(
            "spotify_playlists_dev")
    assert r.ok
    assert sleeps[0] == 3.0 and 0 <= sleeps[1] <= 0.5


def test_retry_after_beyond_cap_fails_fast_and_pauses_bucket(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), status_code=429, headers={"Retry-After": "3600"}, json={})
        c = make(sleeps, max_retries=3, retry_after_max_seconds=30)
        r = c.get_namespace("spotify_playlists_dev")
    assert r.reason == "rate_limited" and m.call_count == 1 and sleeps == []
    assert "exceeds retry_after_max_seconds" in r.message
    # The whole key is limited: the next request from anyone waits for the bucket.
    assert c.bucket.acquire(deadline=sleeps.now + 1) is False
    sleeps(30)
    assert c.bucket.acquire(deadline=sleeps.now + 1) is True


def test_connection_error_and_timeout_are_retried(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), [{"exc": requests.exceptions.ConnectionError("refused")},
                      {"exc": requests.exceptions.ReadTimeout("slow")},
                      {"status_code": 200, "json": DOC}])
        r = make(sleeps, max_retries=2).get_namespace("spotify_playlists_dev")
    assert r.ok and r.attempts == 3


@pytest.mark.parametrize(("exc", "reason"), [
    (requests.exceptions.ConnectTimeout("x"), "timeout"),
    (requests.exceptions.ConnectionError("x"), "connection"),
    (requests.exceptions.SSLError("certificate verify failed"), "connection"),
])
def test_transport_failures(sleeps: Sleeps, exc: Exception, reason: str) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), exc=exc)
        c = make(sleeps, max_retries=0)
        r = c.get_namespace("spotify_playlists_dev")
    assert r.reason == reason
    assert dict(c.stats.snapshot()[0]) == {reason: 1}


def test_redirect_is_not_followed(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), status_code=302, headers={"Location": "https://evil.example/steal"})
        m.get("https://evil.example/steal", json=DOC)
        r = make(sleeps).get_namespace("spotify_playlists_dev")
    assert r.reason == "invalid_response" and "evil.example" in r.message
    assert m.call_count == 1


def test_size_cap_by_content_length_and_by_stream(sleeps: Sleeps) -> None:
    big = b'{"namespace_name": "x", "pad": "' + b"a" * 5000 + b'"}'
    with requests_mock.Mocker() as m:
        m.get(url(), content=big)
        r = make(sleeps, max_response_bytes=1024).get_namespace("spotify_playlists_dev")
    assert r.reason == "invalid_response" and "max_response_bytes" in r.message
    with requests_mock.Mocker() as m:
        m.get(url(), body=io.BytesIO(big))
        r = make(sleeps, max_response_bytes=1024).get_namespace("spotify_playlists_dev")
    assert r.reason == "invalid_response" and "exceeds max_response_bytes (1024)" in r.message


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "body is not JSON (JSONDecodeError)"),
    (b"", "body is not JSON (empty)"),
    # Undecodable bytes spoil only the string holding them (issue 12): here the identity.
    (b'{"namespace_name": "\xff"}', "namespace_name"),
    # Nested deeper than the JSON parser recurses: RecursionError, which is not a ValueError.
    (b"[" * 100_000 + b"]" * 100_000, "body is not JSON (RecursionError)"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"document_count": 5}', "namespace_name"),
])
def test_invalid_bodies(sleeps: Sleeps, body: bytes, fragment: str) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), content=body)
        r = make(sleeps, max_retries=2).get_namespace("spotify_playlists_dev")
    assert r.reason == "invalid_response"
    assert fragment in r.message, r.message
    assert m.call_count == 1


@pytest.mark.parametrize(("asked", "answer", "ok"), [
    ("ns_victim", {"namespace_id": "ns_real", "namespace_name": "victim"}, False),
    ("ns_victim", {"namespace_name": "ns_victim"}, False),  # no id: cannot be confirmed
    ("ns_victim", {"namespace_id": "NS_VICTIM", "namespace_name": "victim"}, False),
    ("ns_victim", {"namespace_id": "ns_victim", "namespace_name": "anything"}, True),
    ("catalog", {"namespace_id": "ns_1", "namespace_name": "media"}, False),
    ("catalog", {"namespace_id": "ns_1", "namespace_name": "Catalog"}, True),
    ("CATALOG", {"namespace_name": "catalog"}, True),
])
def test_the_answer_must_be_for_the_namespace_asked(sleeps: Sleeps, asked: str,
                                                    answer: dict[str, Any], ok: bool) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(asked), json=answer)
        r = make(sleeps, max_retries=2).get_namespace(asked)
    assert r.ok is ok, r.message
    if not ok:
        assert r.reason == "invalid_response" and r.values is None
        assert r.message.startswith("wrong namespace: asked for namespace_"), r.message
        assert repr(asked) in r.message
        assert m.call_count == 1, "a wrong answer is not retried"


def test_ns_victim_answered_as_ns_real_is_not_published_as_ns_real(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url("ns_victim"), json={"namespace_id": "ns_real", "namespace_name": "real",
                                      "document_count": 1})
        r = make(sleeps).get_namespace("ns_victim")
    assert r.reason == "invalid_response" and r.values is None
    assert "namespace_id 'ns_real'" in r.message


def test_drift_nulls_and_removed_fields(sleeps: Sleeps) -> None:
    doc = {"namespace_name": "n", "namespace_id": None, "document_count": None,
           "document_count_complete": False, "bucket_count": None, "infrastructure": None,
           "payload_index_count": 7, "feature_extractors": None, "namespace_ready": True,
           "scope": "org", "mode": "managed"}
    with requests_mock.Mocker() as m:
        m.get(url("n"), json=doc)
        r = make(sleeps).get_namespace("n")
    assert r.ok and r.values is not None
    v = r.values
    assert v.documents is None and v.buckets is None and v.max_concurrent_jobs is None
    assert v.payload_indexes == 7 and v.mode == "managed" and v.compute_tier == ""


def test_incomplete_document_count_is_not_a_count(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url("n"), json={"namespace_name": "n", "document_count": 0,
                              "document_count_complete": False})
        r = make(sleeps).get_namespace("n")
    assert r.values is not None and r.values.documents is None


def test_key_not_in_messages_or_repr(sleeps: Sleeps) -> None:
    with requests_mock.Mocker() as m:
        m.get(url(), status_code=401, json=envelope(401, "UnauthorizedError", f"bad key {KEY}"))
        c = make(sleeps)
        r = c.get_namespace("spotify_playlists_dev")
    assert KEY not in repr(c) and KEY not in repr(c.session.auth)
    assert KEY not in repr(r.values) and r.reason == "unauthorized"
