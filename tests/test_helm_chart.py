"""The Helm chart renders, lints and validates, and keeps its promises.

Rendering uses helm-python-sdk (the Helm 4 Go SDK behind a C ABI; no helm binary exists for this
platform in our package sources), so every test here is offline and fast (~0.1 s per render).
Value sets: the chart's defaults, and every helm/mixpeek-exporter/ci/*.yaml (chart-testing
convention). The promises checked:
- helm lint --strict has no warnings or errors; every manifest passes kubernetes-validate
  --strict on the oldest and newest Kubernetes it bundles (CRD kinds have no schema there);
- the rendered exporter config passes the exporter's own --config.check;
- the API key is in no ConfigMap and no environment variable, only in the Secret, mounted as a file;
- values.schema.json refuses bad values; the values table in the chart README is in step with
  values.yaml, and the chart's config keys with the exporter's config model;
- the PrometheusRule and the dashboard ConfigMap carry exactly monitoring/alerts.yaml and
  monitoring/dashboard.json;
- webConfig (off by default) mounts a web-config.yml the exporter itself accepts, from a Secret
  only, and adapts the probes and the ServiceMonitor/PodMonitor to TLS and basic auth.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.tooling import require_tool

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "mixpeek-exporter"
MONITORING = ROOT / "monitoring"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSIONS = ["1.25.0", "1.37.0"]  # oldest and newest schemas kubernetes-validate bundles
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
SECRET_DIR = "/etc/mixpeek-exporter/secret"
MINIMAL = {"apiKey": {"value": "test-key-0123456789"}, "namespaces": ["my_namespace"]}
# Exporter config keys the chart sets itself (the mounted Secret, the CA bundle), never values.
CHART_OWNED = {"api_key_env", "api_key_file", "ca_file"}

Manifest = dict[str, Any]


def _load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


# name -> values; "default" is the chart's defaults plus the two values it requires.
VALUE_SETS: dict[str, dict[str, Any]] = {"default": MINIMAL} | {
    p.stem: _load_values(p) for p in CI_VALUES
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as c:
        yield c


_RENDERED: dict[str, list[Manifest]] = {}


def render(chart: helm.Chart, values: dict[str, Any]) -> list[Manifest]:
    """All objects the chart renders (NOTES.txt and templates that render empty dropped).

    Memoized per value set (many tests look at the same rendering); callers get a copy.
    """
    key = json.dumps(values, sort_keys=True)
    if key not in _RENDERED:
        out = chart.render(values=copy.deepcopy(values), name="rel", namespace="mon")
        docs: list[Manifest] = []
        for path, text in sorted(out.items()):
            if path.endswith("NOTES.txt"):
                continue
            docs.extend(d for d in yaml.safe_load_all(text) if d)
        _RENDERED[key] = docs
    return copy.deepcopy(_RENDERED[key])


def only(docs: list[Manifest], kind: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def exporter_config(docs: list[Manifest]) -> dict[str, Any]:
    cms = [d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})]
    assert len(cms) == 1
    return yaml.safe_load(cms[0]["data"]["config.yaml"])


def workload(docs: list[Manifest]) -> Manifest:
    """The Deployment, or the StatefulSet when sharding is on: never both."""
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def container(docs: list[Manifest]) -> dict[str, Any]:
    pod = workload(docs)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


# ---------------------------------------------------------------------------------------------
# Lint and Kubernetes schema validation


def test_there_are_ci_value_sets() -> None:
    assert {"full-values", "existing-secret-values", "demo-values", "webconfig-values"} <= {
        p.stem for p in CI_VALUES}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(CHART, copy.deepcopy(VALUE_SETS[name]), strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert problems == []


def test_helm_lint_of_bare_defaults_has_no_errors() -> None:
    # `helm lint` without values (what a user or chart-testing runs first) must not error even
    # though rendering the bare defaults refuses to produce a useless install.
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_manifests_validate_strictly(chart: helm.Chart, name: str, kube_version: str) -> None:
    docs = render(chart, VALUE_SETS[name])
    assert docs
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Prometheus Operator CRDs have no schema in kubernetes-validate; anything else must.
            assert doc["kind"] in CRD_KINDS
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {kube_version}: {e}")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_output_passes_yamllint(chart: helm.Chart, name: str) -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig(
        # Line length is the data's business (PromQL, dashboard JSON), not the chart's.
        "extends: default\nrules: {line-length: disable, document-start: disable,"
        " indentation: {indent-sequences: whatever}, comments-indentation: disable}\n"
    )
    out = chart.render(values=copy.deepcopy(VALUE_SETS[name]), name="rel", namespace="mon")
    for path, text in out.items():
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        # helm template trims each manifest; the SDK returns them untrimmed.
        problems = [p for p in linter.run(text.strip() + "\n", conf) if p.level == "error"]
        assert not problems, f"{path}: {[str(p) for p in problems]}"


def test_chart_yaml_files_pass_yamllint() -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    conf = YamlLintConfig(
        "extends: default\nrules: {line-length: {max: 200}, document-start: disable}\n")
    for path in [CHART / "Chart.yaml", CHART / "values.yaml", *CI_VALUES]:
        problems = list(linter.run(path.read_text(encoding="utf-8"), conf))
        assert not problems, f"{path.name}: {[str(p) for p in problems]}"


# ---------------------------------------------------------------------------------------------
# Required values and refused values


def test_bare_defaults_refuse_to_render_and_say_what_to_set(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"apiKey\.existingSecret.*apiKey\.value"):
        chart.render(values={})


def test_empty_namespaces_means_discovery(chart: helm.Chart) -> None:
    """Zero-config, as with the exporter itself: only a key, and every namespace it can list
    is polled; the filters still apply. Listed namespaces leave discovery as configured."""
    cfg = exporter_config(render(chart, {"apiKey": {"value": "k"}}))
    assert cfg["namespaces"] == [] and cfg["discovery"]["enabled"] is True
    cfg = exporter_config(render(chart, {"apiKey": {"value": "k"},
                                         "discovery": {"include": ["^prod_"]}}))
    assert cfg["discovery"]["enabled"] is True and cfg["discovery"]["include"] == ["^prod_"]
    assert exporter_config(render(chart, MINIMAL))["discovery"]["enabled"] is False
    notes = chart.render(values={"apiKey": {"value": "k"}}, name="rel",
                         namespace="mon")["mixpeek-exporter/templates/NOTES.txt"]
    assert "polling every namespace the API key can list" in notes
    assert "Polling 1 listed namespace(s)" in chart.render(
        values=copy.deepcopy(MINIMAL), name="rel",
        namespace="mon")["mixpeek-exporter/templates/NOTES.txt"]


def test_raising_only_the_poll_interval_renders_a_valid_config(chart: helm.Chart,
                                                              tmp_path: Path) -> None:
    """poll.stale_after_seconds is left unset (5 x the interval), so a slower poll alone never
    trips over a default the user did not touch."""
    cfg = exporter_config(render(chart, MINIMAL | {"poll": {"interval_seconds": 600}}))
    assert "stale_after_seconds" not in cfg["poll"]
    _config_check(cfg, tmp_path)


def test_both_monitors_refused(chart: helm.Chart) -> None:
    values = MINIMAL | {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}
    with pytest.raises(helm.HelmRenderError, match="not both"):
        chart.render(values=values)


BAD_VALUES = [
    {"unknownTopLevel": 1},
    {"mixpeek": {"bas_url": "https://api.mixpeek.com"}},  # typo: unknown key
    {"mixpeek": {"base_url": "ftp://api.mixpeek.com"}},
    {"mixpeek": {"timeout_seconds": 0}},
    {"mixpeek": {"timeout_seconds": "10"}},
    {"mixpeek": {"max_retries": 11}},
    {"mixpeek": {"max_concurrency": 1.5}},
    {"mixpeek": {"api_key_file": "/tmp/key"}},  # the chart owns the key path
    {"mixpeek": {"api_key_env": "OTHER_KEY"}},  # the key is a file, never an env var
    {"mixpeek": {"ca_file": "/etc/ssl/ca.pem"}},  # caBundle.configMap sets it
    {"discovery": {"max_namespaces": 1_000_001}},  # above the exporter's own bound
    {"discovery": {"refresh_interval_seconds": 0.5}},
    {"prometheusRule": {"runbookBase": "ftp://git.example.com/README.md"}},
    {"prometheusRule": {"runbookBase": "https://git.example.com/README.md#top"}},  # ours: #alert
    {"prometheusRule": {"runbookBase": "https://git.example.com/{{ .Release.Name }}"}},
    {"prometheusRule": {"runbookBase": "https:///README.md"}},
    {"poll": {"interval_seconds": 0.5}},
    {"poll": {"interval": 60}},
    {"namespaces": "my_namespace"},
    {"namespaces": ["a/b"]},
    {"namespaces": ["dup", "dup"]},
    {"namespaces": [""]},
    {"apiKey": {"value": "has space inside"}},
    {"apiKey": {"existingSecret": "Not_A_Name"}},
    {"apiKey": {"secret": "x"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"image": {"digest": "sha256:xyz"}},
    {"image": {"tag": "has space"}},
    {"service": {"port": 70000}},
    {"service": {"type": "Ingress"}},
    {"log": {"level": "verbose"}},
    {"serviceMonitor": {"interval": "30 seconds"}},
    {"serviceMonitor": {"enabled": "yes"}},
    {"serviceMonitor": {"labels": {"release": 1}}},
    {"podMonitor": {"scrapeTimeout": "10"}},
    {"prometheusRule": {"disabledAlerts": "MixpeekExporterDown"}},
    {"dashboard": {"sidecarLabelValue": 1}},
    {"networkPolicy": {"egressPorts": []}},
    {"extraEnv": [{"name": "MIXPEEK_API_KEY", "value": "sk-123"}]},
    {"extraEnv": [{"value": "no name"}]},
    {"extraArgs": ["-v"]},
    {"replicaCount": -1},
    {"scrapeJobName": 'mixpeek"exporter'},
    {"caBundle": {"key": "../../etc/passwd"}},
    {"webConfig": {"enabled": "yes"}},
    {"webConfig": {"secret": "web-config"}},  # unknown key
    {"webConfig": {"existingSecret": "Not_A_Name"}},
    {"webConfig": {"tlsSecret": "has space"}},
    {"webConfig": {"config": {"basic_auth": {"prometheus": "x"}}}},  # typo of basic_auth_users
    {"webConfig": {"config": {"basic_auth_users": {"a:b": "x"}}}},
    {"webConfig": {"config": {"basic_auth_users": ["prometheus"]}}},
    {"webConfig": {"config": {"tls_server_config": {"cert": "-----BEGIN"}}}},  # inline PEM
    {"webConfig": {"config": {"tls_server_config": {"client_auth_type": "RequireAnyClientCert"}}}},
    {"webConfig": {"config": {"tls_server_config": {"min_version": "TLS1.2"}}}},
    {"webConfig": {"config": {"http_server_config": {"headers": {"X-Frame-Options": "deny"}}}}},
    {"webConfig": {"config": {"rate_limit": {"interval": "fast"}}}},
    {"webConfig": {"config": {"rate_limit": {"burst": -1}}}},
    {"serviceMonitor": {"tlsConfig": {"insecureSkipVerfy": True}}},
    {"serviceMonitor": {"tlsConfig": {"ca": {"secret": {"name": "ca"}}}}},  # no key
    {"serviceMonitor": {"basicAuth": {"password": "plaintext"}}},
    {"podMonitor": {"tlsConfig": {"caFile": "/etc/ca.crt"}}},  # not in a PodMonitor's SafeTLSConfig
    {"podMonitor": {"basicAuth": {"secretName": "Not_A_Name"}}},
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[json.dumps(b) for b in BAD_VALUES])
def test_schema_refuses_bad_values(chart: helm.Chart, bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)
    # And a render (helm install/template) refuses them too, not just an explicit validation.
    values = MINIMAL | bad
    with pytest.raises(helm.HelmError):
        chart.render(values=copy.deepcopy(values))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_ci_value_sets_pass_the_schema(chart: helm.Chart, name: str) -> None:
    chart.validate_schema(copy.deepcopy(VALUE_SETS[name]))


# ---------------------------------------------------------------------------------------------
# The exporter's config


def _exporter_supports_config_check() -> bool:
    return (ROOT / "exporter" / "cli.py").exists()


@pytest.mark.parametrize("name", [n for n in sorted(VALUE_SETS) if n != "demo-values"])
def test_rendered_config_passes_exporter_config_check(
    chart: helm.Chart, name: str, tmp_path: Path
) -> None:
    docs = render(chart, VALUE_SETS[name])
    cfg = exporter_config(docs)
    # The config points at the mounted Secret file...
    assert cfg["mixpeek"]["api_key_file"] == f"{SECRET_DIR}/api-key"
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["api-key"]["mountPath"] == SECRET_DIR
    assert "api_key_env" not in cfg["mixpeek"]
    _config_check(cfg, tmp_path)


def _config_check(cfg: dict[str, Any], tmp_path: Path) -> None:
    """``mixpeek-exporter --config.check`` on a rendered config, with the key file (and CA
    bundle) it names replaced by local ones."""
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-test-key\n", encoding="utf-8")
    cfg["mixpeek"]["api_key_file"] = str(key_file)
    if "ca_file" in cfg["mixpeek"]:
        import certifi

        cfg["mixpeek"]["ca_file"] = certifi.where()
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    if not _exporter_supports_config_check():
        # The core CLI is written in parallel; the config model alone is the next best check.
        from exporter.settings.load import load_config
        from exporter.settings.secrets import load_api_key

        load_api_key(load_config(cfg_file, environ={}).mixpeek, environ={})
        return
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MIXPEEK_", "MIXPEEK_EXPORTER_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={cfg_file}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"API key: found (file {key_file})" in proc.stdout, proc.stdout + proc.stderr


def test_config_values_follow_the_exporter_config_model() -> None:
    """Every exporter `mixpeek:`/`poll:` key is a chart value (with the exporter's default)."""
    from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig, PollConfig

    values = _load_values(CHART / "values.yaml")
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    sections = {"mixpeek": MixpeekConfig, "poll": PollConfig, "discovery": DiscoveryConfig}
    assert set(Config.model_fields) == {*sections, "namespaces"}, (
        "the exporter config has a new section: add it to the chart (values, schema, config)")
    chart_owned = CHART_OWNED
    # Left unset (null) in the chart, so the exporter derives it from the interval.
    derived = {("poll", "stale_after_seconds")}
    for section, model in sections.items():
        exporter_keys = set(model.model_fields) - chart_owned
        assert set(values[section]) == exporter_keys, section
        assert set(schema["properties"][section]["properties"]) == exporter_keys, section
        for key in exporter_keys:
            field = model.model_fields[key]
            default = field.get_default(call_default_factory=True)
            expected = None if (section, key) in derived else default
            assert values[section][key] == expected, f"{section}.{key}"


_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def test_config_value_ranges_are_the_exporters() -> None:
    """The README and the chart promise the exporter's own keys and ranges: the schema refuses
    exactly what the exporter refuses (bounds and types per key), so a value that works in a
    config file is never turned down by `helm install`, and a bad one never reaches the pod."""
    from exporter.settings.schema import DiscoveryConfig, MixpeekConfig, PollConfig

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    sections = {"mixpeek": MixpeekConfig, "poll": PollConfig, "discovery": DiscoveryConfig}
    for section, model in sections.items():
        props = schema["properties"][section]["properties"]
        for key in set(model.model_fields) - CHART_OWNED:
            field = model.model_fields[key]
            exporter_bounds = {_BOUNDS[a]: getattr(m, a) for m in field.metadata
                               for a in _BOUNDS if getattr(m, a, None) is not None}
            chart_bounds = {k: v for k, v in props[key].items() if k in _BOUNDS.values()}
            assert chart_bounds == exporter_bounds, f"{section}.{key}"
            json_type = _JSON_TYPES.get(field.annotation)
            if json_type is not None:
                types = props[key]["type"]
                assert json_type in (types if isinstance(types, list) else [types]), (
                    f"{section}.{key}")


def test_config_change_rolls_the_pod_without_a_new_image(chart: helm.Chart) -> None:
    a = render(chart, MINIMAL)
    b = render(chart, MINIMAL | {"poll": {"interval_seconds": 30}})
    ann_a = workload(a)["spec"]["template"]["metadata"]["annotations"]
    ann_b = workload(b)["spec"]["template"]["metadata"]["annotations"]
    assert ann_a["checksum/config"] != ann_b["checksum/config"]
    assert container(a)["image"] == container(b)["image"]
    assert exporter_config(b)["poll"]["interval_seconds"] == 30
    c = render(chart, MINIMAL | {"apiKey": {"value": "another-key"}})
    ann_c = workload(c)["spec"]["template"]["metadata"]["annotations"]
    assert ann_a["checksum/secret"] != ann_c["checksum/secret"]
    assert ann_a["checksum/config"] == ann_c["checksum/config"]


def test_ca_bundle_is_mounted_and_configured(chart: helm.Chart) -> None:
    docs = render(chart, MINIMAL | {"caBundle": {"configMap": "corp-ca", "key": "ca.pem"}})
    assert exporter_config(docs)["mixpeek"]["ca_file"] == "/etc/mixpeek-exporter/ca/ca.pem"
    pod = workload(docs)["spec"]["template"]["spec"]
    vol = {v["name"]: v for v in pod["volumes"]}["ca-bundle"]
    assert vol["configMap"]["name"] == "corp-ca"


# ---------------------------------------------------------------------------------------------
# The API key


def _secret_strings(values: dict[str, Any]) -> list[str]:
    key = str(values.get("apiKey", {}).get("value", "")).strip()
    return [key, base64.b64encode(key.encode()).decode()] if key else []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_api_key_only_in_the_secret_and_mounted_as_a_file(chart: helm.Chart, name: str) -> None:
    values = VALUE_SETS[name]
    docs = render(chart, values)
    # The API key's Secret (webConfig.config brings a second one, for web-config.yml).
    secrets = [d for d in docs if d["kind"] == "Secret" and "api-key" in d.get("data", {})]
    needles = _secret_strings(values)
    if needles:
        # The plain key appears nowhere; its base64 form only in the chart's Secret.
        plain, encoded = needles
        assert not [d["kind"] for d in docs if plain in json.dumps(d)]
        holders = [d["kind"] for d in docs if encoded in json.dumps(d)]
        assert holders == (["Secret"] if secrets else [])
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        text = json.dumps(cm).lower()
        assert "api_key_env" not in text
        for needle in _secret_strings(values):
            assert needle.lower() not in text
    if values.get("demo", {}).get("enabled"):
        assert secrets == []
        return
    c = container(docs)
    for env in c.get("env", []):
        assert "secretKeyRef" not in env.get("valueFrom", {}), env
        assert "API_KEY" not in env["name"].upper(), env
    assert "envFrom" not in c
    pod = workload(docs)["spec"]["template"]["spec"]
    vol = {v["name"]: v for v in pod["volumes"]}["api-key"]["secret"]
    api_key = values["apiKey"]
    if api_key.get("existingSecret"):
        assert secrets == []
        assert vol["secretName"] == api_key["existingSecret"]
        assert vol["items"] == [{"key": api_key.get("existingSecretKey", "api-key"),
                                 "path": "api-key"}]
    else:
        assert len(secrets) == 1
        assert vol["secretName"] == secrets[0]["metadata"]["name"]
        stored = base64.b64decode(secrets[0]["data"]["api-key"]).decode()
        assert stored == api_key["value"].strip()
    mount = {m["name"]: m for m in c["volumeMounts"]}["api-key"]
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath would freeze rotation


# ---------------------------------------------------------------------------------------------
# Pod hardening and wiring


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_pod_is_locked_down_and_probed(chart: helm.Chart, name: str) -> None:
    docs = render(chart, VALUE_SETS[name])
    pod = workload(docs)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(docs)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    live, ready = c["livenessProbe"], c["readinessProbe"]
    if VALUE_SETS[name].get("webConfig", {}).get("enabled"):
        # /healthz or the bare port: test_probes_follow_the_web_config has the cases.
        for probe in (live, ready):
            assert probe.get("httpGet", {}).get("path", "/healthz") == "/healthz"
    else:
        assert live["httpGet"]["path"] == "/healthz"
        assert ready["httpGet"]["path"] == "/readyz"
    for probe in (live, ready):
        # Credentials in a probe header would sit in the pod spec for anyone who can read it.
        assert "httpHeaders" not in probe.get("httpGet", {})
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http-metrics": 10117}
    assert "--web.listen-address=:10117" in c["args"]
    for sa in (d for d in docs if d["kind"] == "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False
    svc = only(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"
    labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_demo_mode_needs_no_key_or_config(chart: helm.Chart) -> None:
    docs = render(chart, {"demo": {"enabled": True}})
    assert container(docs)["args"][0] == "--demo"
    assert not [d for d in docs if d["kind"] in ("Secret", "ConfigMap")]


def test_servicemonitor_wiring(chart: helm.Chart) -> None:
    values = VALUE_SETS["full-values"]
    docs = render(chart, values)
    sm = only(docs, "ServiceMonitor")
    smv = values["serviceMonitor"]
    assert sm["metadata"]["namespace"] == smv["namespace"]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = only(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["mon"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == svc["spec"]["ports"][0]["name"]
    assert (ep["interval"], ep["scrapeTimeout"]) == (smv["interval"], smv["scrapeTimeout"])
    assert ep["relabelings"][0] == {"action": "replace", "targetLabel": "job",
                                    "replacement": values["scrapeJobName"]}
    assert ep["relabelings"][1:] == smv["relabelings"]
    assert ep["metricRelabelings"] == smv["metricRelabelings"]
    assert sm["spec"]["targetLabels"] == smv["targetLabels"]


def test_podmonitor_wiring(chart: helm.Chart) -> None:
    values = VALUE_SETS["existing-secret-values"]
    docs = render(chart, values)
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    pm = only(docs, "PodMonitor")
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] == container(docs)["ports"][0]["name"]
    assert ep["interval"] == values["podMonitor"]["interval"]
    assert ep["relabelings"][0]["replacement"] == "mixpeek-exporter"
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_sharding_runs_a_statefulset_of_shards(chart: helm.Chart) -> None:
    values = VALUE_SETS["sharding-values"]
    docs = render(chart, values)
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet"
    shards = values["sharding"]["shards"]
    assert sts["spec"]["replicas"] == shards
    assert sts["spec"]["serviceName"] == only(docs, "Service")["metadata"]["name"]
    args = container(docs)["args"]
    assert "--shard=auto" in args and f"--total-shards={shards}" in args
    # One Service only, so the ServiceMonitor scrapes each shard once.
    assert len([d for d in docs if d["kind"] == "Service"]) == 1
    assert "--shard=auto" not in container(render(chart, MINIMAL))["args"]


def test_networkpolicy(chart: helm.Chart) -> None:
    values = VALUE_SETS["full-values"]
    np = only(render(chart, values), "NetworkPolicy")
    assert np["spec"]["ingress"][0]["from"] == values["networkPolicy"]["ingressFrom"]
    egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 443, 3128}


# ---------------------------------------------------------------------------------------------
# webConfig: TLS and basic auth for the exporter's endpoints

WEB_DIR = "/etc/mixpeek-exporter/web"
WEB_ARG = f"--web.config.file={WEB_DIR}/web-config.yml"
# ci/webconfig-values.yaml carries a bcrypt hash of this password.
CI_USER, CI_PASSWORD = "prometheus", "ci-scrape-password"
HASH = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG"  # README's example
WEB_VALUE_SETS = [n for n in sorted(VALUE_SETS)
                  if VALUE_SETS[n].get("webConfig", {}).get("enabled")]


def with_web(**web: Any) -> dict[str, Any]:
    return MINIMAL | {"webConfig": {"enabled": True, **web}}


def web_config_secrets(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] == "Secret" and "web-config.yml" in d.get("data", {})]


def web_config_text(docs: list[Manifest]) -> str:
    (secret,) = web_config_secrets(docs)
    return base64.b64decode(secret["data"]["web-config.yml"]).decode()


def web_volume(docs: list[Manifest]) -> dict[str, Any]:
    vols = {v["name"]: v for v in workload(docs)["spec"]["template"]["spec"]["volumes"]}
    return vols["web-config"]["projected"]


def projected_paths(docs: list[Manifest]) -> set[str]:
    """The files the chart puts in WEB_DIR (items of its own Secrets; an existing Secret's keys
    are unknown to it)."""
    return {item["path"] for src in web_volume(docs)["sources"]
            for item in src["secret"].get("items", [])}


def monitor_endpoint(docs: list[Manifest]) -> dict[str, Any]:
    (mon,) = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    key = "endpoints" if mon["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
    (ep,) = mon["spec"][key]
    return ep


@pytest.mark.parametrize("name", [n for n in sorted(VALUE_SETS) if n not in WEB_VALUE_SETS])
def test_webconfig_is_off_by_default(chart: helm.Chart, name: str) -> None:
    docs = render(chart, VALUE_SETS[name])
    c = container(docs)
    assert not [a for a in c["args"] if "web.config" in a]
    assert "web-config" not in {m["name"] for m in c["volumeMounts"]}
    pod = workload(docs)["spec"]["template"]
    assert "web-config" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert "checksum/web-config" not in pod["metadata"]["annotations"]
    assert web_config_secrets(docs) == []
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert "scheme" not in probe["httpGet"]
    for mon in (d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")):
        ep = monitor_endpoint([mon])
        assert ep["scheme"] == "http"
        assert "tlsConfig" not in ep and "basicAuth" not in ep


def test_webconfig_from_values_is_a_mounted_secret(chart: helm.Chart) -> None:
    values = VALUE_SETS["webconfig-values"]
    docs = render(chart, values)
    c = container(docs)
    assert c["args"].count(WEB_ARG) == 1
    mount = {m["name"]: m for m in c["volumeMounts"]}["web-config"]
    # No subPath: the exporter follows changes of the files, which subPath would freeze.
    assert mount == {"name": "web-config", "mountPath": WEB_DIR, "readOnly": True}
    (secret,) = web_config_secrets(docs)
    assert secret["type"] == "Opaque"
    sources = web_volume(docs)["sources"]
    assert sources[0]["secret"] == {"name": secret["metadata"]["name"],
                                    "items": [{"key": "web-config.yml",
                                               "path": "web-config.yml"}]}
    tls_secret = values["webConfig"]["tlsSecret"]
    assert [s["secret"] for s in sources[1:]] == [
        {"name": tls_secret, "items": [{"key": "tls.crt", "path": "tls/tls.crt"},
                                       {"key": "tls.key", "path": "tls/tls.key"}]},
        # ca.crt is optional: a kubernetes.io/tls Secret need not have one.
        {"name": tls_secret, "optional": True, "items": [{"key": "ca.crt", "path": "tls/ca.crt"}]},
    ]
    # The password hash is in the Secret's (base64) data only: no ConfigMap, env var or other
    # object carries it or even mentions the web config's users.
    password_hash = values["webConfig"]["config"]["basic_auth_users"][CI_USER]
    assert password_hash in web_config_text(docs)
    assert not [d["kind"] for d in docs if password_hash in json.dumps(d)]
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        assert "basic_auth_users" not in json.dumps(cm)
    assert "basic_auth_users" not in json.dumps(c)


def test_webconfig_from_an_existing_secret_is_mounted_whole(chart: helm.Chart) -> None:
    values = VALUE_SETS["webconfig-existing-secret-values"]
    docs = render(chart, values)
    assert WEB_ARG in container(docs)["args"]
    assert web_config_secrets(docs) == []  # the chart creates none: the user's Secret is used
    sources = web_volume(docs)["sources"]
    # All keys, at the top of WEB_DIR, so web-config.yml can name its files there.
    assert sources[0]["secret"] == {"name": values["webConfig"]["existingSecret"]}
    annotations = workload(docs)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/web-config" not in annotations


def test_rendered_web_config_loads_in_the_exporter(chart: helm.Chart, tmp_path: Path) -> None:
    """The chart's web-config.yml is one the exporter accepts, naming the files the chart mounts."""
    import trustme

    from exporter.web.webconfig import WebConfig

    docs = render(chart, VALUE_SETS["webconfig-values"])
    text = web_config_text(docs)
    tls = yaml.safe_load(text)["tls_server_config"]
    mounted = projected_paths(docs)
    for key in ("cert_file", "key_file", "client_ca_file"):
        assert tls[key].startswith(f"{WEB_DIR}/"), key
        assert tls[key].removeprefix(f"{WEB_DIR}/") in mounted, key
    # Lay the mounted directory out locally, with throwaway certificates, and load it as the
    # exporter does at start (which also builds the TLS context from the files).
    ca = trustme.CA()
    server = ca.issue_cert("rel-mixpeek-exporter.mon.svc")
    (tmp_path / "tls").mkdir()
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "tls" / "tls.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "tls" / "tls.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "tls" / "ca.crt"))
    web_file = tmp_path / "web-config.yml"
    web_file.write_text(text.replace(WEB_DIR, str(tmp_path)), encoding="utf-8")
    web = WebConfig.load(web_file)
    assert web.tls_enabled

    def handler(password: str) -> Any:
        token = base64.b64encode(f"{CI_USER}:{password}".encode()).decode()
        return type("Handler", (), {"headers": {"Authorization": f"Basic {token}"},
                                    "client_address": ("127.0.0.1", 1), "connection": None})()

    assert web.authorize(handler(CI_PASSWORD)) is None
    denied = web.authorize(handler("wrong"))
    assert denied is not None and denied[0] == 401


def test_webconfig_change_rolls_the_pod(chart: helm.Chart) -> None:
    a = with_web(config={"basic_auth_users": {"prometheus": HASH}})
    b = with_web(config={"basic_auth_users": {"prometheus": HASH, "grafana": HASH}})
    ann_a, ann_b = (workload(render(chart, v))["spec"]["template"]["metadata"]["annotations"]
                    for v in (a, b))
    assert ann_a["checksum/web-config"] != ann_b["checksum/web-config"]
    assert ann_a["checksum/config"] == ann_b["checksum/config"]


TCP = "tcpSocket"
CLIENT_CERTS = {"tls_server_config": {"client_auth_type": "RequireAndVerifyClientCert",
                                      "client_ca_file": f"{WEB_DIR}/tls/ca.crt"}}
# webConfig -> (liveness, readiness): (scheme, path) of an httpGet probe, or TCP.
PROBE_CASES: dict[str, tuple[dict[str, Any], Any, Any]] = {
    "tls only": ({"tlsSecret": "tls"}, ("HTTPS", "/healthz"), ("HTTPS", "/readyz")),
    "tls from files in config": (
        {"config": {"tls_server_config": {"cert_file": "a.crt", "key_file": "a.key"}}},
        ("HTTPS", "/healthz"), ("HTTPS", "/readyz")),
    "basic auth over http": ({"config": {"basic_auth_users": {"prometheus": HASH}}},
                             (None, "/healthz"), (None, "/healthz")),
    "rate limit": ({"config": {"rate_limit": {"interval": "1s", "burst": 5}}},
                   (None, "/healthz"), (None, "/healthz")),
    "tls and basic auth": ({"tlsSecret": "tls", "config": {"basic_auth_users": {"p": HASH}}},
                           ("HTTPS", "/healthz"), ("HTTPS", "/healthz")),
    "client certificates": ({"tlsSecret": "tls", "config": CLIENT_CERTS}, TCP, TCP),
    "existing secret": ({"existingSecret": "web"}, (None, "/healthz"), (None, "/healthz")),
    "existing secret, tls": ({"existingSecret": "web", "tls": True},
                             ("HTTPS", "/healthz"), ("HTTPS", "/healthz")),
    "existing secret, client certificates": (
        {"existingSecret": "web", "tls": True, "clientCertRequired": True}, TCP, TCP),
}


@pytest.mark.parametrize("case", sorted(PROBE_CASES))
def test_probes_follow_the_web_config(chart: helm.Chart, case: str) -> None:
    web, want_live, want_ready = PROBE_CASES[case]
    c = container(render(chart, with_web(**web)))
    defaults = _load_values(CHART / "values.yaml")
    for probe, want, default in ((c["livenessProbe"], want_live, defaults["livenessProbe"]),
                                 (c["readinessProbe"], want_ready, defaults["readinessProbe"])):
        # Timings are the user's; only how the kubelet reaches the exporter changes.
        assert {k: v for k, v in probe.items() if k not in ("httpGet", TCP)} == {
            k: v for k, v in default.items() if k != "httpGet"}
        if want == TCP:
            assert "httpGet" not in probe
            assert probe[TCP] == {"port": "http-metrics"}
        else:
            scheme, path = want
            assert TCP not in probe
            assert probe["httpGet"].get("scheme") == scheme
            assert probe["httpGet"]["path"] == path
            assert "httpHeaders" not in probe["httpGet"]


@pytest.mark.parametrize("name", WEB_VALUE_SETS)
def test_monitor_scrapes_https_with_credentials(chart: helm.Chart, name: str) -> None:
    values = VALUE_SETS[name]
    ep = monitor_endpoint(render(chart, values))
    mon = values.get("serviceMonitor") or values["podMonitor"]
    assert ep["scheme"] == "https"
    assert ep["tlsConfig"] == mon["tlsConfig"]
    auth = mon["basicAuth"]
    assert ep["basicAuth"] == {
        "username": {"name": auth["secretName"], "key": auth.get("usernameKey", "username")},
        "password": {"name": auth["secretName"], "key": auth.get("passwordKey", "password")},
    }
    # Everything else about the endpoint is as without webConfig.
    assert ep["port"] == "http-metrics" and ep["path"] == "/metrics"
    assert ep["relabelings"][0]["targetLabel"] == "job"


def test_monitor_tls_config_only_with_tls(chart: helm.Chart) -> None:
    # tlsConfig means nothing over http; basicAuth is sent whenever a Secret is named (it may be
    # a proxy in front that checks it).
    sm = {"enabled": True, "tlsConfig": {"insecureSkipVerify": True},
          "basicAuth": {"secretName": "creds"}}
    for values in (MINIMAL | {"serviceMonitor": sm},
                   with_web(config={"basic_auth_users": {"prometheus": HASH}})
                   | {"serviceMonitor": sm}):
        ep = monitor_endpoint(render(chart, values))
        assert ep["scheme"] == "http"
        assert "tlsConfig" not in ep
        assert ep["basicAuth"]["password"] == {"name": "creds", "key": "password"}


WEB_REFUSALS: list[tuple[dict[str, Any], str]] = [
    (with_web(), r"webConfig\.enabled needs webConfig\.existingSecret"),
    (with_web(existingSecret="web", config={"basic_auth_users": {"p": HASH}}), "not both"),
    (MINIMAL | {"webConfig": {"config": {"basic_auth_users": {"p": HASH}}}},
     r"webConfig\.enabled is false"),
    (MINIMAL | {"webConfig": {"tlsSecret": "tls"}}, r"webConfig\.enabled is false"),
    (MINIMAL | {"webConfig": {"existingSecret": "web"}}, r"webConfig\.enabled is false"),
    (with_web(tls=True, config={"basic_auth_users": {"p": HASH}}),
     r"webConfig\.tls is true.*plain HTTP"),
    (with_web(config={"tls_server_config": {"min_version": "TLS13"}}),
     "needs cert_file and key_file"),
    (with_web(existingSecret="web") | {"extraArgs": ["--web.config.file=/tmp/w.yml"]},
     "do not pass --web.config.file"),
]


@pytest.mark.parametrize("values,message", WEB_REFUSALS,
                         ids=[m for _, m in WEB_REFUSALS])
def test_webconfig_mistakes_are_refused(chart: helm.Chart, values: dict[str, Any],
                                        message: str) -> None:
    chart.validate_schema(copy.deepcopy(values))  # well-formed: the templates catch these
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values=copy.deepcopy(values))


def test_plaintext_password_is_refused_without_showing_it(chart: helm.Chart) -> None:
    values = with_web(config={"basic_auth_users": {"prometheus": "hunter2-plaintext"}})
    with pytest.raises(helm.HelmRenderError, match=r"basic_auth_users\.prometheus is not a "
                       r"bcrypt hash") as e:
        chart.render(values=copy.deepcopy(values))
    assert "hunter2" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Alerts and dashboard: one source of truth in monitoring/


@pytest.mark.parametrize("name", ["alerts.yaml", "dashboard.json"])
def test_chart_copies_equal_monitoring_sources(name: str) -> None:
    src, copy_ = MONITORING / name, CHART / "files" / name
    assert src.exists(), f"{src} is missing"
    assert copy_.exists() and copy_.read_bytes() == src.read_bytes(), (
        f"{copy_} differs from {src}: run scripts/sync-chart-files.sh"
    )


def _alert_groups() -> list[dict[str, Any]]:
    return yaml.safe_load((MONITORING / "alerts.yaml").read_text(encoding="utf-8"))["groups"]


def test_prometheusrule_is_exactly_the_alerts_file(chart: helm.Chart) -> None:
    docs = render(chart, MINIMAL | {"prometheusRule": {"enabled": True}})
    rule = only(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == _alert_groups()


def test_prometheusrule_adaptations(chart: helm.Chart, tmp_path: Path) -> None:
    values = VALUE_SETS["full-values"]
    rule = only(render(chart, values), "PrometheusRule")
    groups = rule["spec"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    disabled = set(values["prometheusRule"]["disabledAlerts"])
    expected = [r for g in _alert_groups() for r in g["rules"]
                if r.get("alert") not in disabled]
    assert [r.get("alert") or r.get("record") for r in rules] == [
        r.get("alert") or r.get("record") for r in expected]
    for r in rules:
        if "alert" in r:
            assert r["labels"]["team"] == "search"
        assert 'job="mixpeek-exporter"' not in r["expr"]
    assert any(f'job="{values["scrapeJobName"]}"' in r["expr"] for r in rules)
    # Still valid Prometheus rules after the rewrite.
    promtool = require_tool("promtool")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    proc = subprocess.run([promtool, "check", "rules", str(rules_file)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheusrule_runbook_base_moves_every_link(chart: helm.Chart) -> None:
    """prometheusRule.runbookBase gives the same links as `alertrules.py --set runbook_base`
    (the README's way without Helm), and changes nothing else."""
    from tools.dashcheck import alertrules

    base = "https://git.example.com/ops/mixpeek-exporter/-/blob/main/README.md"
    docs = render(chart, MINIMAL | {"prometheusRule": {"enabled": True, "runbookBase": base}})
    groups = only(docs, "PrometheusRule")["spec"]["groups"]
    text = (MONITORING / "alerts.yaml").read_text(encoding="utf-8")
    expected = yaml.safe_load(alertrules.render_variant(text, {"runbook_base": base}))["groups"]
    assert groups == expected
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"


def test_dashboard_configmap_is_exactly_the_dashboard(chart: helm.Chart) -> None:
    docs = render(chart, MINIMAL | {"dashboard": {"enabled": True}})
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith(
        "-dashboard")]
    assert len(cms) == 1
    assert cms[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = cms[0]["data"].values()
    source = (MONITORING / "dashboard.json").read_text(encoding="utf-8")
    assert content.rstrip("\n") == source.rstrip("\n")
    assert json.loads(content) == json.loads(source)


# ---------------------------------------------------------------------------------------------
# Documentation in step with values.yaml


def _table_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "chart_values_table", ROOT / "scripts" / "chart_values_table.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    return mod


def test_values_table_matches_values_yaml_and_schema() -> None:
    mod = _table_module()
    values_text, schema = mod.load()
    rows = mod.parse_rows(values_text, schema)
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == mod.schema_rows(schema), "values.yaml and values.schema.json disagree"
    undocumented = [r.key for r in rows if not r.description]
    assert undocumented == [], "every value needs a '# --' comment in values.yaml"
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    table_keys = [line.split("`")[1] for line in readme.splitlines()
                  if line.startswith("| `")]
    assert table_keys == keys, "chart README values table is stale: run scripts/sync-chart-files.sh"
    assert mod.readme_with_table(readme, mod.render_table(rows)) == readme, (
        "chart README values table is stale: run scripts/sync-chart-files.sh")


def test_values_yaml_defaults_pass_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema(_load_values(CHART / "values.yaml"))
