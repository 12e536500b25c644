"""The retry policy as a pure function: which outcomes are tried again, how long to wait,
Retry-After in seconds, as a date and over the cap, and the shared budget's pause on a 429."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.mixpeek import retry
from exporter.mixpeek.retry import Decision, Outcome, RetryPolicy, parse_retry_after

NOW = 1445412470.0  # Wed, 21 Oct 2015 07:27:50 GMT
POLICY = RetryPolicy(max_retries=3, backoff_seconds=1.0, retry_after_max_seconds=30.0)


def top(a: float, b: float) -> float:
    """A jitter that always draws the ceiling, so the backoff bound itself is visible."""
    return b


def decide(outcome: Outcome, attempts: int = 1, backoffs: int = 0, **kw: object) -> Decision:
    return POLICY.decide(outcome, attempts, backoffs, NOW, jitter=top, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("outcome", "retried"), [
    (Outcome("timeout", transport=retry.TIMEOUT), True),
    (Outcome("connection", transport=retry.BROKEN), True),
    (Outcome("connection", transport=retry.TLS), False),
    (Outcome("connection", transport=retry.REQUEST), False),
    (Outcome("rate_limited", 429), True),
    (Outcome("rate_limited", 429, api_retryable=False), False),
    (Outcome("server_error", 503), True),
    (Outcome("server_error", 500), False),
    (Outcome("server_error", 502), False),
    (Outcome("unauthorized", 401), False),
    (Outcome("forbidden", 403), False),
    (Outcome("not_found", 404), False),
    (Outcome("client_error", 422), False),
    (Outcome("invalid_response", 200), False),
    (Outcome("exporter_error"), False),
    (Outcome(None, 200), False),
])
def test_which_outcomes_are_retried(outcome: Outcome, retried: bool) -> None:
    assert decide(outcome).retry is retried


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    broken = Outcome("connection", transport=retry.BROKEN)
    ceilings = [decide(broken, attempts=1, backoffs=k).wait for k in range(3)]
    assert ceilings == [1.0, 2.0, 4.0]
    assert all(decide(broken, backoffs=k).backoff for k in range(3))
    capped = RetryPolicy(max_retries=9, backoff_seconds=20.0, retry_after_max_seconds=30.0)
    waits = [capped.decide(broken, 1, k, NOW, jitter=top).wait for k in range(3)]
    assert waits == [20.0, 30.0, 30.0]
    # The draw is between 0 and the ceiling, whatever the random source gives.
    seen = [POLICY.decide(broken, 1, 2, NOW).wait for _ in range(200)]
    assert all(0 <= w <= 4.0 for w in seen) and len(set(seen)) > 1


def test_gives_up_after_max_retries_and_when_stopping() -> None:
    busy = Outcome("server_error", 503)
    assert [decide(busy, attempts=n).retry for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert decide(busy, stopping=True).retry is False


def test_retry_after_seconds_and_date_replace_the_backoff() -> None:
    d = decide(Outcome("rate_limited", 429, retry_after_header="7"))
    assert (d.retry, d.wait, d.pause_budget, d.backoff) == (True, 7.0, 7.0, False)
    d = decide(Outcome("rate_limited", 429,
                       retry_after_header="Wed, 21 Oct 2015 07:28:00 GMT"))
    assert (d.retry, d.wait) == (True, 10.0)
    d = decide(Outcome("server_error", 503, retry_after_header="2"))
    assert (d.retry, d.wait, d.pause_budget) == (True, 2.0, None), "only a 429 pauses the key"


def test_header_wins_over_the_body_hint_which_beats_backoff() -> None:
    both = Outcome("rate_limited", 429, retry_after_header="4", retry_after_hint=9.0)
    assert decide(both).wait == 4.0
    assert decide(Outcome("rate_limited", 429, retry_after_hint=3.0)).wait == 3.0
    assert decide(Outcome("rate_limited", 429)).backoff is True
    assert decide(Outcome("server_error", 503, retry_after_hint=3.0)).backoff is True


def test_retry_after_beyond_the_cap_gives_up_now_and_pauses_the_budget_for_the_cap() -> None:
    d = decide(Outcome("rate_limited", 429, retry_after_header="3600"))
    assert d.retry is False and d.pause_budget == 30.0
    assert "Retry-After 3600s exceeds retry_after_max_seconds (30s)" in d.note
    # Not retryable, or out of attempts: the key is still limited, so the budget still pauses.
    d = decide(Outcome("rate_limited", 429, retry_after_header="5", api_retryable=False))
    assert (d.retry, d.pause_budget) == (False, 5.0)
    d = decide(Outcome("rate_limited", 429, retry_after_header="5"), attempts=9)
    assert (d.retry, d.pause_budget) == (False, 5.0)


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5.0),
    (" 12 ", 12.0),
    (None, None),
    ("", None),
    ("soon", None),
    ("-3", None),
    ("1.5", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
    ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP date
    ("Wed, 21 Oct 99999 07:28:00 GMT", None),
    ("\xb2", None),  # superscript two: str.isdigit() says yes, float() says no
    ("1\u0663", None),  # Arabic-Indic three
    ("\uff15", None),  # fullwidth five
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@given(st.one_of(st.text(), st.text(alphabet="0123456789 \t,:GMTWedOct\xb2\u0663\uff15+-.")))
def test_parse_retry_after_never_raises(value: str) -> None:
    """Whatever the header holds, it is a number of seconds or unreadable, never an error
    (an exception here made the poll an exporter_error and skipped the 429 handling)."""
    out = parse_retry_after(value, now=NOW)
    assert out is None or out >= 0


def test_a_retry_after_longer_than_a_worker_waits_ends_the_poll_now() -> None:
    policy = RetryPolicy(max_retries=3, backoff_seconds=1.0, retry_after_max_seconds=30.0,
                         sleep_max_seconds=10.0)
    d = policy.decide(Outcome("server_error", 503, retry_after_header="30"), 1, 0, NOW)
    assert d.retry is False and d.pause_budget is None
    assert "asked to retry in 30s" in d.note and "next poll" in d.note
    # A 429's Retry-After still pauses the key's budget, though the poll gives up now.
    d = policy.decide(Outcome("rate_limited", 429, retry_after_header="20"), 1, 0, NOW)
    assert (d.retry, d.pause_budget) == (False, 20.0)
    # Within the bound it is still waited for; a backoff never exceeds the bound.
    assert policy.decide(Outcome("server_error", 503, retry_after_header="7"), 1, 0,
                         NOW).wait == 7.0
    assert policy.decide(Outcome("server_error", 503), 3, 5, NOW, jitter=top).wait == 10.0
