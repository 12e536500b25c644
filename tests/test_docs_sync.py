"""README, config.example.yaml, --help and the code name the same keys, flags and metrics."""

from __future__ import annotations

import re
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from exporter.app import App
from exporter.cli import build_parser
from exporter.render.families import FAMILIES, sample_names
from exporter.settings.load import parse_config
from exporter.settings.schema import Config, DiscoveryConfig, MixpeekConfig, PollConfig
from exporter.settings.secrets import Credentials, Secret
from exporter.simulator import DEMO_KEY, Simulator
from tests.harness import ROOT

README = (ROOT / "README.md").read_text()


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= model_keys(ann, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def yaml_keys(node: Any, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in node.items():
        if isinstance(v, dict):
            keys |= yaml_keys(v, f"{prefix}{k}.")
        else:
            keys.add(prefix + k)
    return keys


def readme_table(first_header: str) -> list[str]:
    """First-column backticked names of the README table whose header starts so."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        m = re.match(r"\|\s*`([^`]+)`", line)
        if m:
            names.append(m.group(1))
    return names


def test_config_keys_everywhere() -> None:
    code = model_keys(Config)
    example = yaml_keys(yaml.safe_load((ROOT / "config.example.yaml").read_text()))
    readme = set(readme_table("key"))
    assert example == code, f"config.example.yaml vs models: {example ^ code}"
    assert readme == code, f"README table vs models: {readme ^ code}"


def test_example_config_is_the_defaults() -> None:
    """config.example.yaml says "every key, with its default": hold it to that."""
    cfg = parse_config((ROOT / "config.example.yaml").read_text(), environ={})
    assert cfg == Config(namespaces=cfg.namespaces)


def test_cli_flags_in_readme_and_help() -> None:
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings
             if s.startswith("--") and s != "--help"}
    readme = set(readme_table("flag"))
    assert readme == flags, readme ^ flags
    help_text = parser.format_help()
    for flag in flags:
        assert flag in help_text


def emitted_metric_names() -> set[str]:
    """Run the app once in-process against the simulator with every optional feature on,
    so that every family the exporter can emit shows up."""
    sim = Simulator(DEMO_KEY, stats_batch=False, rate_limit_rpm=100_000)
    url = sim.start()
    cfg = Config(mixpeek=MixpeekConfig(base_url=url, max_requests_per_minute=0),
                 poll=PollConfig(interval_seconds=1, stale_after_seconds=10,
                                 counts_source="stats_batch"),
                 discovery=DiscoveryConfig(enabled=True, refresh_interval_seconds=1),
                 namespaces=["demo_catalog"])
    app = App(lambda: (cfg, Credentials(Secret(DEMO_KEY), "test")), total_shards=1)
    app.store.set_exporter(shard_ordinal=0, total_shards=1)
    try:
        app.poller.run_cycle()  # stats/batch is missing on this API: the fallback gauge too
        app.poller.run_cycle()
        text = app.cache.render_now(force=True).text.decode()
    finally:
        app.client.close()
        sim.stop()
    names = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name + ("_total" if fam.type == "counter" else ""))
    return names


def test_readme_metrics_table_matches_the_catalogue() -> None:
    documented = set(readme_table("metric"))
    catalogue = set(sample_names())
    assert documented == catalogue, f"only in README: {documented - catalogue}; " \
                                    f"only in the catalogue: {catalogue - documented}"
    rows = {m.group(1): {x.strip() for x in m.group(2).split(",") if x.strip()}
            for m in re.finditer(r"^\| `(mixpeek_\w+)` \| \w+ \|([^|]*)\|", README, re.M)}
    for family in FAMILIES:
        assert rows[family.sample_name] == set(family.labels), family.sample_name


def test_the_exporter_emits_only_catalogued_families() -> None:
    emitted = emitted_metric_names()
    assert emitted <= set(sample_names()), emitted - set(sample_names())
