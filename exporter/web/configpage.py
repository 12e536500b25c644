"""``/config``: the effective configuration (the file with environment overrides applied, or
the defaults when there is no file) as YAML, for a person checking what the exporter runs with.

The API key is never part of the configuration (only where it is read from is), and the
``--web.config.file`` is named but not shown: its basic-auth hashes stay on disk. The text is
scrubbed of registered secrets all the same before it is escaped.
"""

from __future__ import annotations

import yaml

from exporter.web.page import (
    Page,
    PageSource,
    QueryError,
    bad_request,
    document,
    query_params,
    text,
)

_TEXT_MAX = 2_000_000  # characters; 10,000 listed namespaces are about 300 KB of YAML


def config_yaml(source: PageSource) -> str:
    """The running configuration as YAML, headed by comments saying where the API key comes
    from and which web config file applies."""
    running = source.running()
    web = running.web_config_file
    head = [
        "# The effective configuration: the config file (or the defaults, when there is none)",
        "# with MIXPEEK_EXPORTER_* environment overrides applied.",
        f"# API key: {running.key_source} (where it is read from; the key is never shown).",
        (f"# Web config (--web.config.file): {web} (TLS and basic-auth settings, and the "
         "password hashes, are not shown)." if web is not None
         else "# Web config (--web.config.file): none (no TLS, no authentication)."),
    ]
    doc = running.config.model_dump(mode="json")
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(head) + "\n" + body


def config_page(source: PageSource, query: str) -> Page:
    """The page; 400 when a query string is given (the page takes none)."""
    try:
        query_params(query, ())
    except QueryError as e:
        return bad_request(f"bad query string for /config: {e}")
    body = f"<pre id=\"config\">{text(config_yaml(source), _TEXT_MAX)}</pre>"
    return Page(200, document("Mixpeek exporter: configuration", body))
