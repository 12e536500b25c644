"""--web.config.file: basic auth (bcrypt), TLS, client certificates, rotation, rate limit.

Unit tests drive ``WebConfig`` directly (loading, ``web.auth`` and ``web.tls`` through it, and
following file changes); the end-to-end tests start the real exporter with a web config and
talk to it over HTTPS with a throwaway CA (trustme). The file's schema alone is in
test_web_settings.
"""

from __future__ import annotations

import base64
import io
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import trustme
import yaml

from exporter import logs
from exporter.settings.web import WebConfigError
from exporter.web import auth
from exporter.web.webconfig import WebConfig
from tests.harness import (
    ROOT,
    ExporterProcess,
    SimulatorProcess,
    exporter_config,
    parse_metrics,
    sample,
    wait_until,
)

PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3-not-it"
KEY = "sk_live_webconfig_test_000000"


def hashed(password: str, rounds: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class FakeRequest:
    """What ``authorize`` reads from a BaseHTTPRequestHandler."""

    def __init__(self, headers: dict[str, str] | None = None, peer: Any = None) -> None:
        self.headers = Message()
        for k, v in (headers or {}).items():
            self.headers[k] = v
        self.client_address = ("127.0.0.1", 5555)
        self.connection = peer


def write(path: Path, data: dict[str, Any] | str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    tmp.replace(path)
    return path


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.setup("debug", "logfmt", stream)
    yield stream
    logging.getLogger().handlers.clear()


# -- loading ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_pair(ca: trustme.CA, d: Path, name: str = "server") -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key))
    crt.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    return crt, key


BAD_FILES = [
    ("top: [", "YAML syntax error"),
    ("- a\n- b\n", "the top level must be a mapping of keys, got list"),
    ("basic_auth_user: {a: b}\n",
     "basic_auth_user: unknown key (allowed: tls_server_config, http_server_config"),
    ("basic_auth_users: {admin: hunter2}\n", "basic_auth_users.admin: not a bcrypt hash"),
    ("basic_auth_users: {'a:b': '$2b$04$" + "a" * 53 + "'}\n", "must be non-empty and contain"),
    ("basic_auth_users: [a, b]\n", "basic_auth_users: must be a mapping"),
    ("tls_server_config: {cert_file: a.crt}\n", "tls_server_config.key_file: required"),
    ("tls_server_config: {cert_file: a, key_file: b, certfile: c}\n",
     "tls_server_config.certfile: unknown key"),
    ("tls_server_config: {cert: PEM, key_file: b}\n", "tls_server_config.cert: inline PEM"),
    ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}\n",
     "accepts client certificates without verifying them"),
    ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: Always}\n",
     "client_auth_type: unknown value 'Always'"),
    ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: "
     "RequireAndVerifyClientCert}\n", "client_ca_file: required"),
    ("tls_server_config: {cert_file: a, key_file: b, client_ca_file: ca}\n",
     "client_auth_type is NoClientCert"),
    ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS14}\n",
     "min_version: unknown value 'TLS14'"),
    ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}\n",
     "min_version: higher than max_version"),
    ("tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256]}\n",
     "cipher_suites: Go cipher-suite names are not supported"),
    ("tls_server_config: {cert_file: /nonexistent.crt, key_file: /nonexistent.key}\n",
     "tls_server_config.cert_file: /nonexistent.crt does not exist or is not a file"),
    ("http_server_config: {headers: {X-Frame-Options: deny}}\n",
     "http_server_config.headers: custom response headers are not supported"),
    ("http_server_config: {http2: maybe}\n", "http_server_config.http2: Input should be a "
     "valid boolean"),
    ("rate_limit: {interval: fast, burst: 1}\n", "rate_limit.interval: expected a duration"),
    ("rate_limit: {interval: 1s, burst: -1}\n",
     "rate_limit.burst: Input should be greater than or equal to 0"),
    ("rate_limit: {interval: 1s, per: 3}\n", "rate_limit.per: unknown key"),
]


@pytest.mark.parametrize(("text", "says"), BAD_FILES, ids=[s for _, s in BAD_FILES])
def test_bad_files_name_the_key(tmp_path: Path, text: str, says: str) -> None:
    path = write(tmp_path / "web.yml", text)
    with pytest.raises(WebConfigError) as exc:
        WebConfig.load(path)
    assert says in str(exc.value), str(exc.value)
    assert str(path) in str(exc.value)
    assert "hunter2" not in str(exc.value)  # a pasted plaintext password is never echoed


def test_bad_key_pair_and_missing_file(tmp_path: Path, ca: trustme.CA) -> None:
    crt, _ = server_pair(ca, tmp_path, "one")
    _, other_key = server_pair(ca, tmp_path, "two")
    write(tmp_path / "web.yml", {"tls_server_config": {"cert_file": "one.crt",
                                                       "key_file": "two.key"}})
    with pytest.raises(WebConfigError, match=r"cannot load .* matching pair"):
        WebConfig.load(tmp_path / "web.yml")
    with pytest.raises(WebConfigError, match="does not exist"):
        WebConfig.load(tmp_path / "missing.yml")
    assert crt.exists() and other_key.exists()


def test_empty_and_toolkit_sample_files_load(tmp_path: Path, ca: trustme.CA) -> None:
    assert not WebConfig.load(write(tmp_path / "empty.yml", "")).tls_enabled
    server_pair(ca, tmp_path)
    sample_file = write(tmp_path / "web.yml", {
        # Relative paths: relative to the web config file, as in exporter-toolkit.
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                              "min_version": "TLS12", "prefer_server_cipher_suites": True,
                              "cipher_suites": []},
        "http_server_config": {"http2": True},
        "basic_auth_users": {"prometheus": hashed(PASSWORD)},
        "rate_limit": {"interval": "0", "burst": 0},
    })
    web = WebConfig.load(sample_file)
    assert web.tls_enabled
    ctx = web.tls_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.minimum_version == ssl.TLSVersion.TLSv1_2


# -- basic auth ----------------------------------------------------------------------------------


@pytest.fixture
def auth_web(tmp_path: Path) -> WebConfig:
    # "$2y$" as htpasswd writes it, next to bcrypt's own "$2b$".
    y_hash = hashed(PASSWORD).replace("$2b$", "$2y$")
    return WebConfig.load(write(tmp_path / "web.yml", {"basic_auth_users": {
        "prometheus": y_hash, "grafana": hashed("another one")}}))


def test_basic_auth_decisions(auth_web: WebConfig) -> None:
    def status(headers: dict[str, str] | None) -> int | None:
        denied = auth_web.authorize(FakeRequest(headers))
        return None if denied is None else denied[0]

    assert status(basic("prometheus", PASSWORD)) is None
    assert status(basic("grafana", "another one")) is None
    assert status(None) == 401
    assert status(basic("prometheus", WRONG)) == 401
    assert status(basic("grafana", PASSWORD)) == 401  # another user's password
    assert status(basic("nobody", PASSWORD)) == 401
    assert status(basic("prometheus", PASSWORD + "x" * 80)) == 401  # over bcrypt's 72 bytes
    assert status(basic("", "")) == 401
    assert status({"Authorization": "Bearer " + PASSWORD}) == 401
    assert status({"Authorization": "Basic !!!not-base64!!!"}) == 401
    assert status({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}) == 401
    assert status({"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:pw").decode()}) == 401
    denied = auth_web.authorize(FakeRequest(basic("prometheus", WRONG)))
    assert denied is not None
    _, headers, body = denied
    assert headers["WWW-Authenticate"].startswith('Basic realm="mixpeek-exporter"')
    assert PASSWORD.encode() not in body and WRONG.encode() not in body


def test_every_failure_pays_for_one_bcrypt_check(auth_web: WebConfig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown users, wrong passwords and over-long ones all run bcrypt exactly once, so the
    response time does not reveal which user names exist."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed_pw: bytes) -> bool:
        calls.append(hashed_pw)
        return real(password, hashed_pw)
    monkeypatch.setattr(auth.bcrypt, "checkpw", spy)
    for headers in (basic("nobody", PASSWORD), basic("prometheus", WRONG),
                    basic("prometheus", "y" * 100), basic("nobody", "y" * 100)):
        calls.clear()
        assert auth_web.authorize(FakeRequest(headers)) is not None
        assert len(calls) == 1, headers
    # The unknown-user check runs against a hash of the same cost as the real ones.
    calls.clear()
    auth_web.authorize(FakeRequest(basic("nobody", PASSWORD)))
    auth_web.authorize(FakeRequest(basic("prometheus", WRONG)))
    assert calls[0][:7] == calls[1][:7].replace(b"$2y$", b"$2b$")
    # A verified scraper is remembered (as a keyed MAC): no bcrypt on every scrape.
    calls.clear()
    for _ in range(3):
        assert auth_web.authorize(FakeRequest(basic("prometheus", PASSWORD))) is None
    assert len(calls) == 1


def test_failed_auth_logs_no_secret(auth_web: WebConfig, captured: io.StringIO) -> None:
    auth_web.authorize(FakeRequest(basic("prometheus", WRONG)))
    auth_web.authorize(FakeRequest(basic(PASSWORD, WRONG)))  # a password in the user field
    out = captured.getvalue()
    assert out.count('msg="basic auth failed"') == 2
    assert "user=prometheus" in out and "user=<unknown>" in out
    assert PASSWORD not in out and WRONG not in out


def test_rate_limit(tmp_path: Path) -> None:
    web = WebConfig.load(write(tmp_path / "web.yml",
                               {"rate_limit": {"interval": "1h", "burst": 2}}))
    results = [web.authorize(FakeRequest()) for _ in range(3)]
    assert results[:2] == [None, None]
    assert results[2] is not None and results[2][0] == 429


def test_client_allowed_sans(tmp_path: Path, ca: trustme.CA) -> None:
    server_pair(ca, tmp_path)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    web = WebConfig.load(write(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.crt",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_allowed_sans": ["prometheus.monitoring.svc"]}}))

    class Peer:
        def __init__(self, *sans: str) -> None:
            self.sans = sans

        def getpeercert(self) -> dict[str, Any]:
            return {"subjectAltName": tuple(("DNS", s) for s in self.sans)}

    assert web.authorize(FakeRequest(peer=Peer("prometheus.monitoring.svc"))) is None
    denied = web.authorize(FakeRequest(peer=Peer("grafana.monitoring.svc")))
    assert denied is not None and denied[0] == 403


# -- following file changes ----------------------------------------------------------------------


def test_context_is_cached_and_rebuilt_on_rotation(tmp_path: Path, captured: io.StringIO
                                                   ) -> None:
    ca1, ca2 = trustme.CA(), trustme.CA()
    crt, key = server_pair(ca1, tmp_path)
    web = WebConfig.load(write(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": str(crt), "key_file": str(key)}}))
    first = web.tls_context()
    assert first is not None and all(web.tls_context() is first for _ in range(100))

    # Rotation caught half-way: new certificate, old key. Keep serving the old pair.
    new = ca2.issue_cert("127.0.0.1")
    write_bytes = b"".join(b.bytes() for b in new.cert_chain_pems)
    tmp = crt.with_suffix(".tmp")
    tmp.write_bytes(write_bytes)
    tmp.replace(crt)
    assert web.tls_context() is first
    assert "not usable yet" in captured.getvalue()
    # The key follows: the new pair is picked up.
    tmp = key.with_suffix(".tmp")
    new.private_key_pem.write_to_path(str(tmp))
    tmp.replace(key)
    second = web.tls_context()
    assert second is not None and second is not first
    assert web.tls_context() is second
    assert "TLS certificate files reloaded" in captured.getvalue()


def test_changed_web_config_applies_but_never_downgrades(tmp_path: Path,
                                                         captured: io.StringIO) -> None:
    path = write(tmp_path / "web.yml", {"basic_auth_users": {"a": hashed("one")}})
    web = WebConfig.load(path)
    assert web.authorize(FakeRequest(basic("a", "one"))) is None
    # A new password: applies to the next request.
    write(path, {"basic_auth_users": {"a": hashed("two")}})
    assert web.authorize(FakeRequest(basic("a", "one"))) is not None
    assert web.authorize(FakeRequest(basic("a", "two"))) is None
    # Emptied (or truncated mid-write), or broken: refused, auth stays on.
    for text in ("", "basic_auth_users: {a: plaintext}\n", "basic_auth_users: {a: ["):
        write(path, text)
        assert web.authorize(FakeRequest()) is not None
        assert web.authorize(FakeRequest(basic("a", "two"))) is None
    assert captured.getvalue().count("web config change refused") == 3
    assert "plaintext" not in captured.getvalue()
    # The file disappearing (a Secret being swapped) is the same: keep the running settings.
    path.unlink()
    assert web.authorize(FakeRequest(basic("a", "two"))) is None


def test_tls_context_never_raises(tmp_path: Path, ca: trustme.CA) -> None:
    crt, key = server_pair(ca, tmp_path)
    web = WebConfig.load(write(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": str(crt), "key_file": str(key)}}))
    ctx = web.tls_context()
    crt.write_text("garbage")
    key.unlink()
    assert web.tls_context() is ctx
    (tmp_path / "web.yml").write_text("tls_server_config: {cert_file: [")
    assert web.tls_context() is ctx


# -- end to end -------------------------------------------------------------------------------


class TLSExporter(ExporterProcess):
    """The exporter over HTTPS; readiness is checked with the test CA (and client cert)."""

    def __init__(self, *args: Any, ca_file: Path, client_cert: tuple[str, str] | None = None,
                 auth: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.auth = auth

    def get(self, path: str, verify: str | Path | None = None, **kw: Any) -> requests.Response:
        kw.setdefault("cert", self.client_cert)
        kw.setdefault("auth", self.auth)
        return requests.get(self.url + path, verify=str(verify or self.ca_file), timeout=5, **kw)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited {self.proc.returncode}:\n{self.log_text()}")
        return self.get("/healthz").status_code == 200


def test_tls_and_basic_auth_end_to_end(tmp_path: Path) -> None:
    ca1, ca2 = trustme.CA(), trustme.CA()
    ca1_file, ca2_file = tmp_path / "ca1.pem", tmp_path / "ca2.pem"
    ca1.cert_pem.write_to_path(str(ca1_file))
    ca2.cert_pem.write_to_path(str(ca2_file))
    crt, key = server_pair(ca1, tmp_path)
    web = write(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        # Cost 10, as htpasswd -B makes it by default.
        "basic_auth_users": {"prometheus": hashed(PASSWORD, rounds=10)}})
    with SimulatorProcess(api_key=KEY) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog"])
        with TLSExporter(cfg, api_key=KEY, extra_args=["--web.config.file", str(web),
                                                       "--web.enable-lifecycle"],
                         ca_file=ca1_file, auth=("prometheus", PASSWORD)) as e:
            wait_until(lambda: e.get("/readyz").status_code == 200, 15, what="ready")
            r = e.get("/metrics")
            assert r.status_code == 200
            assert sample(parse_metrics(r.text), "mixpeek_namespace_up",
                          namespace_name="demo_catalog") == 1
            # Probes stay open; everything else needs the password.
            assert e.get("/healthz", auth=None).status_code == 200
            for path in ("/metrics", "/readyz", "/", "/nope"):
                r = e.get(path, auth=None)
                assert r.status_code == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Basic ")
            assert e.get("/metrics", auth=("prometheus", WRONG)).status_code == 401
            assert e.get("/metrics", auth=("admin", PASSWORD)).status_code == 401
            post = requests.post(e.url + "/-/reload", verify=str(ca1_file), timeout=10)
            assert post.status_code == 401
            post = requests.post(e.url + "/-/reload", verify=str(ca1_file), timeout=10,
                                 auth=("prometheus", PASSWORD))
            assert post.status_code == 200
            # Plain HTTP on the TLS port gets nowhere.
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://127.0.0.1:{e.port}/metrics", timeout=5,
                             auth=("prometheus", PASSWORD))
            # A client that does not trust the server's CA refuses it.
            with pytest.raises(requests.exceptions.SSLError):
                e.get("/healthz", verify=ca2_file)

            # Certificate rotation: new files from another CA, picked up without a restart.
            new = ca2.issue_cert("127.0.0.1")
            new.private_key_pem.write_to_path(str(tmp_path / "next.key"))
            (tmp_path / "next.crt").write_bytes(b"".join(b.bytes() for b in new.cert_chain_pems))
            (tmp_path / "next.key").replace(key)
            (tmp_path / "next.crt").replace(crt)
            wait_until(lambda: e.get("/healthz", verify=ca2_file).status_code == 200, 10,
                       what="the rotated certificate to be served")
            assert e.get("/metrics", verify=ca2_file).status_code == 200
            with pytest.raises(requests.exceptions.SSLError):
                e.get("/healthz", verify=ca1_file)
        log = e.log_text()
    assert "TLS certificate files reloaded" in log
    assert 'msg="basic auth failed"' in log
    assert PASSWORD not in log and WRONG not in log and KEY not in log


def test_mutual_tls_end_to_end(tmp_path: Path) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_pair(ca, tmp_path)

    def client_files(issuer: trustme.CA, san: str, name: str) -> tuple[str, str]:
        cert = issuer.issue_cert(san)
        crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        crt.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key))
        return str(crt), str(key)

    prometheus = client_files(ca, "prometheus.monitoring.svc", "prometheus")
    grafana = client_files(ca, "grafana.monitoring.svc", "grafana")
    impostor = client_files(stranger, "prometheus.monitoring.svc", "impostor")
    web = write(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.pem",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_allowed_sans": ["prometheus.monitoring.svc"], "min_version": "TLS12"}})
    with SimulatorProcess(api_key=KEY) as sim:
        cfg = exporter_config(sim.url, ["demo_catalog"])
        with TLSExporter(cfg, api_key=KEY, extra_args=["--web.config.file", str(web)],
                         ca_file=ca_file, client_cert=prometheus) as e:
            assert e.get("/metrics").status_code == 200
            # No client certificate: the handshake itself fails.
            with pytest.raises((requests.exceptions.SSLError,
                                requests.exceptions.ConnectionError)):
                e.get("/healthz", cert=None)
            # A certificate from a CA the exporter does not trust: refused too.
            with pytest.raises((requests.exceptions.SSLError,
                                requests.exceptions.ConnectionError)):
                e.get("/healthz", cert=impostor)
            # Trusted, but not an allowed SAN: 403.
            assert e.get("/metrics", cert=grafana).status_code == 403
            assert e.proc.poll() is None
            assert e.get("/metrics").status_code == 200


def test_bad_web_config_is_a_clear_startup_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(exporter_config("http://127.0.0.1:9", ["a"])))
    web = write(tmp_path / "web.yml", {"basic_auth_users": {"admin": "hunter2"}})
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "exporter", "--config.file", str(cfg),
                          "--web.config.file", str(web), "--web.listen-address",
                          "127.0.0.1:0"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "MIXPEEK_API_KEY": KEY})
    assert res.returncode == 1
    assert "basic_auth_users.admin: not a bcrypt hash" in res.stderr
    assert "hunter2" not in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - started < 30
