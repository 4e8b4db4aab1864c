"""Configuration values (frozen, keyword-only) and the pure retry and polling decisions."""

from __future__ import annotations

import datetime as dt
import random
from typing import Literal

import aiohttp
import attrs

from ssemble_async._ratelimit import RateLimit

__all__ = [
    "DEFAULT_BASE_URL",
    "PollPolicy",
    "QuotaPolicy",
    "RetryPolicy",
    "Timeouts",
    "backoff_delay",
    "poll_delay",
    "retry_delay",
]

DEFAULT_BASE_URL = "https://aiclipping.ssemble.com/api/v1"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed API calls are retried: capped exponential backoff with jitter.

    GET and DELETE are retried after connection errors, timeouts, 408, 429 and 5xx;
    ``create_short`` only when the server certainly did not act (connection refused, 429).

    Attributes:
        attempts: total tries of one call, the first included (1 disables retries).
        initial_wait: the wait before the second try, seconds.
        max_wait: no backoff wait is longer than this, seconds.
        jitter: random extra of up to this fraction of each wait (0 disables it).
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    initial_wait: float = attrs.field(default=0.5, validator=_positive)
    max_wait: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Time limits of each API call, in seconds (None: no limit).

    Attributes:
        connect: to open a connection (DNS, TCP and TLS).
        read: between two reads of the response.
        total: for the whole call, one try (None by default: ``read`` bounds a silent server).
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    total: float | None = None

    def to_aiohttp(self) -> aiohttp.ClientTimeout:
        """The equivalent ``aiohttp.ClientTimeout``."""
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.read
        )


@attrs.frozen(kw_only=True)
class QuotaPolicy:
    """What the client does when the hourly quota is spent (``X-RateLimit-Remaining-Hour: 0``).

    Attributes:
        on_exhausted: ``"wait"`` for the reset before sending, or ``"raise"``
            :class:`RateLimitError` at once. Either way no call the server would refuse is sent.
        max_wait: the longest quota wait, seconds; a longer one raises instead.
    """

    on_exhausted: Literal["wait", "raise"] = "wait"
    max_wait: float = attrs.field(default=3600.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How :meth:`Client.wait_for_completion` spaces its status calls.

    The interval starts at ``initial``, grows by ``factor`` each poll up to ``maximum``, and
    is stretched further when the hourly quota would not last until its reset otherwise.

    Attributes:
        initial: first interval, seconds.
        maximum: longest interval while the quota is healthy, seconds.
        factor: growth per poll.
        reserve: calls of the hourly quota kept back for what follows the wait.
    """

    initial: float = attrs.field(default=10.0, validator=_positive)
    maximum: float = attrs.field(default=60.0, validator=_positive)
    factor: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))
    reserve: int = attrs.field(default=5, validator=attrs.validators.ge(0))


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """The backoff wait after failed try number ``attempt`` (1-based), within bounds.

    Always between ``min(initial_wait, max_wait)`` and ``max_wait``.
    """
    base = min(policy.max_wait, policy.initial_wait * 2.0 ** min(attempt - 1, 64))
    extra = base * policy.jitter * (rng or random).random()
    return min(policy.max_wait, base + extra)


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    status: int | None,
    retry_after: float | None,
    rate_limit: RateLimit | None,
    now: dt.datetime,
    rng: random.Random | None = None,
) -> float:
    """The wait before retrying a call whose try number ``attempt`` failed.

    On a 429: the ``Retry-After`` value, else the time to ``X-RateLimit-Reset`` when the
    hourly quota is spent, else the backoff. On a 503 with ``Retry-After``: that value, capped
    at ``max_wait``. Anything else (a 5xx never waits for the quota reset): the backoff.
    """
    if status == 429:
        if retry_after is not None:
            return retry_after
        if rate_limit is not None and rate_limit.exhausted:
            until_reset = rate_limit.seconds_until_reset(now)
            if until_reset is not None:
                return until_reset
    elif retry_after is not None and status is not None and status >= 500:
        return min(retry_after, policy.max_wait)
    return backoff_delay(policy, attempt, rng)


def poll_delay(
    policy: PollPolicy,
    polls: int,
    rate_limit: RateLimit | None,
    now: dt.datetime,
    pollers: int = 1,
) -> float:
    """The wait before status poll number ``polls + 1``, given the quota last reported.

    Grows geometrically to ``maximum``; when the remaining hourly calls (less the reserve),
    shared by ``pollers`` concurrent waits, would not last until the reset, waits long
    enough that they do.
    """
    delay = min(policy.maximum, policy.initial * policy.factor ** min(polls, 64))
    if rate_limit is not None and rate_limit.remaining_hour is not None:
        until_reset = rate_limit.seconds_until_reset(now)
        if until_reset is not None:
            budget = max(1, rate_limit.remaining_hour - policy.reserve)
            delay = max(delay, until_reset * max(1, pollers) / budget)
    return delay
