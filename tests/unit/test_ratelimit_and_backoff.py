"""Quota headers, Retry-After, backoff bounds and poll spacing (pure; Hypothesis)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from ssemble_async import RateLimit, RetryPolicy
from ssemble_async._config import backoff_delay, retry_delay
from ssemble_async._ratelimit import parse_rate_limit, parse_retry_after, parse_timestamp

NOW = dt.datetime(2025, 1, 15, 10, 30, tzinfo=dt.timezone.utc)


def test_all_headers_case_insensitive() -> None:
    headers = CIMultiDict(
        {
            "x-ratelimit-limit-hour": "100",
            "X-RATELIMIT-REMAINING-HOUR": "95",
            "X-RateLimit-Limit-Day": "1000",
            "X-RateLimit-Remaining-Day": "950",
            "X-RateLimit-Reset": "2025-01-15T11:00:00Z",
        }
    )
    limit = parse_rate_limit(headers)
    assert limit == RateLimit(
        limit_hour=100,
        remaining_hour=95,
        limit_day=1000,
        remaining_day=950,
        reset=dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc),
    )
    assert not limit.exhausted
    assert limit.seconds_until_reset(NOW) == 1800


def test_partial_and_garbage_headers() -> None:
    assert parse_rate_limit(CIMultiDict()) is None
    assert parse_rate_limit(CIMultiDict({"X-RateLimit-Remaining-Hour": "lots"})) is None
    limit = parse_rate_limit(CIMultiDict({"X-RateLimit-Remaining-Hour": "0"}))
    assert limit is not None and limit.exhausted and limit.reset is None
    assert limit.seconds_until_reset(NOW) is None
    assert parse_rate_limit(CIMultiDict({"X-RateLimit-Limit-Hour": "100.0"})) == RateLimit(
        limit_hour=100
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-01-15T11:00:00Z", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("2025-01-15T11:00:00.000Z", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("2025-01-15T12:00:00+01:00", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("2025-01-15T11:00:00", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("1736938800", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("1736938800000", dt.datetime(2025, 1, 15, 11, tzinfo=dt.timezone.utc)),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("1e400", None),
        ("1e300", None),
    ],
)
def test_reset_formats(raw: str, expected: dt.datetime | None) -> None:
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("120", 120.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 15 Jan 2025 10:31:00 GMT", 60.0),
        ("Wed, 15 Jan 2025 10:00:00 GMT", 0.0),
        ("whenever", None),
        ("inf", None),
    ],
)
def test_retry_after(raw: str | None, expected: float | None) -> None:
    assert parse_retry_after(raw, NOW) == expected


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0.001, max_value=100),
    maximum=st.floats(min_value=0.001, max_value=1000),
    jitter=st.floats(min_value=0, max_value=5),
    seed=st.integers(),
)
def test_backoff_always_within_bounds(
    attempt: int, initial: float, maximum: float, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(initial_wait=initial, max_wait=maximum, jitter=jitter)
    delay = backoff_delay(policy, attempt, random.Random(seed))
    assert min(initial, maximum) <= delay <= maximum


def test_backoff_grows_then_caps() -> None:
    policy = RetryPolicy(initial_wait=1, max_wait=10, jitter=0)
    assert [backoff_delay(policy, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_retry_delay_order_on_429() -> None:
    policy = RetryPolicy(initial_wait=1, max_wait=10, jitter=0)
    spent = RateLimit(remaining_hour=0, reset=NOW + dt.timedelta(seconds=600))
    assert retry_delay(policy, 1, status=429, retry_after=7, rate_limit=spent, now=NOW) == 7
    assert retry_delay(policy, 1, status=429, retry_after=None, rate_limit=spent, now=NOW) == 600
    healthy = RateLimit(remaining_hour=5, reset=NOW + dt.timedelta(seconds=600))
    assert retry_delay(policy, 2, status=429, retry_after=None, rate_limit=healthy, now=NOW) == 2
    no_reset = RateLimit(remaining_hour=0)
    assert retry_delay(policy, 3, status=429, retry_after=None, rate_limit=no_reset, now=NOW) == 4


def test_server_errors_never_wait_for_the_quota_reset() -> None:
    policy = RetryPolicy(initial_wait=1, max_wait=10, jitter=0)
    spent = RateLimit(remaining_hour=0, reset=NOW + dt.timedelta(seconds=600))
    assert retry_delay(policy, 1, status=503, retry_after=None, rate_limit=spent, now=NOW) == 1
    assert retry_delay(policy, 1, status=503, retry_after=3, rate_limit=spent, now=NOW) == 3
    assert retry_delay(policy, 1, status=503, retry_after=300, rate_limit=None, now=NOW) == 10
    assert retry_delay(policy, 2, status=None, retry_after=None, rate_limit=spent, now=NOW) == 2


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"initial_wait": 0}, {"max_wait": -1}, {"jitter": -0.1}],
)
def test_retry_policy_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - attrs validators raise plain ValueError
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
