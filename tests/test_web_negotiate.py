"""Content negotiation for /metrics as pure functions: q-values in Accept and Accept-Encoding,
the most specific range deciding, and unreadable headers getting the default answer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.web.negotiate import OPENMETRICS, TEXT, accepts_gzip, choose_format

PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
                "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
# scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0]
PROMETHEUS_3_TEXT_FIRST = ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;"
                           "version=1.0.0;escaping=allow-utf-8;q=0.4,*/*;q=0.3")


@pytest.mark.parametrize(("accept", "openmetrics"), [
    (None, False), ("", False), ("*/*", False), ("text/plain", False),
    ("application/openmetrics-text", True),
    ("application/openmetrics-text; version=1.0.0", True),
    (PROMETHEUS_2, True), (PROMETHEUS_3, True),
    (PROMETHEUS_3_TEXT_FIRST, False),  # q decides, not the order
    ("application/openmetrics-text;q=0, text/plain", False),
    ("application/openmetrics-text;q=0, */*", False),
    ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;q=0.5, text/plain;q=0.9", False),
    ("text/plain;q=0.1, application/openmetrics-text;q=0.2", True),
    ("application/openmetrics-text;version=0.0.1", False),  # a format we do not write
    ("application/openmetrics-text;version=2.0.0", False),
    ("application/*", True),  # the text format is not acceptable at all
    ("application/*, text/*", False),  # a tie: the default wins
    ("application/*;q=1, text/plain;q=0.5", True),
    ("APPLICATION/OpenMetrics-Text; Q=1", True),
    # A version that cannot be read: the entry is not about us.
    ("application/openmetrics-text; version=abc", False),
    ("text/plain;version=1.x, application/openmetrics-text;q=0.1", True),
    # A weight that cannot be read is q=0: never chosen, not even through a wildcard.
    ("application/openmetrics-text;q=high", False),
    ("application/openmetrics-text;q=2", False),
    ("application/openmetrics-text;q=-1", False),
    ("application/openmetrics-text;q=nan", False),
    ("application/openmetrics-text;q=1;q=1", False),
    ("application/openmetrics-text;q=0.0000, */*", False),
    ("application/*, application/openmetrics-text;q=0;q=1", False),
    (";;;,,,==", False), ("\x00\xff", False),
])
def test_format(accept: str | None, openmetrics: bool) -> None:
    assert choose_format(accept) == ((True, OPENMETRICS) if openmetrics else (False, TEXT))


@pytest.mark.parametrize(("header", "gzip"), [
    (None, False), ("", False), ("identity", False), ("gzip", True), ("GZIP", True),
    ("gzip, deflate, br", True), ("x-gzip", True), ("gzip;q=0.5", True),
    ("gzip;q=0", False), ("gzip;q=0.000", False), ("gzip; q=0, identity", False),
    ("deflate, gzip;q=0", False), ("*", True), ("*;q=0", False), ("*, gzip;q=0", False),
    ("gzip;q=0, *", False),  # named beats the wildcard
    ("br, *;q=0.1", True), ("gzip;q=oops", False), ("gzip;q=1.5", False),
    ("gzipped", False),
    # RFC 9110 §12.4.2: at most three decimals, one weight; anything else is q=0 for that
    # entry, so a wildcard beside it does not bring gzip back.
    ("gzip;q=0.000, *", False), ("gzip;q=0.0000, *", False), ("gzip;q=0.0000, *;q=1", False),
    ("gzip;q=0;q=1", False), ("gzip;q=1;q=0", False), ("gzip;q=0;q=1, *", False),
    ("gzip;q=1e0, *", False), ("gzip;q=0.001", True), ("gzip;q=1.000", True),
])
def test_gzip(header: str | None, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=200))
def test_any_header_gets_an_answer(header: str) -> None:
    assert choose_format(header)[1] in (OPENMETRICS, TEXT)
    assert accepts_gzip(header) in (True, False)
