"""The quota shared in Redis under attack: leaked secrets, stale budgets, cancellation, outages."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

import anyio
import pytest

from ssemble_async import (
    CallResult,
    Client,
    ConfigurationError,
    QuotaPolicy,
    RateLimitError,
    Reach,
    _clock,
)
from ssemble_async._governor import LocalGovernor
from ssemble_async._ratelimit import RateLimit

pytest.importorskip("redis", reason="the distributed extra is not installed")

from ssemble_async._redis_governor import RedisGovernor
from ssemble_async.testing._redis import RedisServer

pytestmark = pytest.mark.anyio


async def test_a_password_in_the_query_string_is_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # redis-py takes ?password=... (any query argument) as a connection setting
    governor = RedisGovernor("redis://127.0.0.1:1?password=hunter2", "sk_ssemble_k", QuotaPolicy())
    try:
        with caplog.at_level(logging.DEBUG), anyio.fail_after(10):
            lease = await governor.acquire()  # nothing listens on port 1: probe mode
            await governor.settle(lease, CallResult(reach=Reach.NO))
    finally:
        await governor.aclose()
    assert any("cannot be reached" in r.getMessage() for r in caplog.records)
    assert not any("hunter2" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "url",
    ["redis://:abc#def@cache:6379/0", "redis://:s3cr/et@cache:6379/0"],
)
def test_a_password_that_is_not_percent_encoded_is_a_configuration_error_without_it(
    url: str,
) -> None:
    # a generated password often holds # or /: the URL then does not parse, and the error
    # must neither be an unexpected ValueError nor quote a piece of the password
    with pytest.raises(ConfigurationError) as info:
        Client("sk_ssemble_k", quota_url=url)
    assert "abc" not in str(info.value) and "s3cr" not in str(info.value)


async def told_and_settled(governor: Any) -> None:
    """One call answered: 5 of 10 left, the reset in 600 s (the server's clock is right,
    this process's clock is 900 s ahead)."""
    real = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    told = RateLimit(
        limit_hour=10,
        remaining_hour=5,
        remaining_day=None,
        reset=real + dt.timedelta(seconds=600),
    )
    lease = await governor.acquire()
    now = _clock.utcnow()
    await governor.settle(
        lease,
        CallResult(
            reach=Reach.YES, status=200, rate_limit=told, date=real, sent_at=now, received_at=now
        ),
    )


async def test_the_budget_is_up_to_date_after_a_settle(redis_server: RedisServer) -> None:
    governor = RedisGovernor(redis_server.url, "sk_ssemble_k", QuotaPolicy())
    try:
        await told_and_settled(governor)
        budget = governor.budget()  # what Client.quota_budget() and the watcher read
    finally:
        await governor.aclose()
    assert (budget.limit, budget.remaining) == (10, 5)


async def test_a_worker_with_a_wrong_clock_sees_the_reset_where_it_is(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_clock._State, "skipped", 900.0)  # this process's clock: 15 min ahead
    local = LocalGovernor(QuotaPolicy())
    shared = RedisGovernor(redis_server.url, "sk_ssemble_k", QuotaPolicy())
    try:
        for governor in (local, shared):
            await told_and_settled(governor)
            # a call that never left: the shared budget is read again, nothing else changes
            await governor.settle(await governor.acquire(), CallResult(reach=Reach.NO))
        now = _clock.utcnow()
        until_local = local.budget().seconds_until_reset(now)
        until_shared = shared.budget().seconds_until_reset(now)
    finally:
        await shared.aclose()
    assert until_local is not None and abs(until_local - 600) < 5
    # the watcher, _http's retry wait and Client.quota_budget() all read the budget with
    # this process's clock: the shared budget must say the same as the local one
    assert until_shared is not None and abs(until_shared - 600) < 5, until_shared


async def test_an_acquire_cancelled_after_its_grant_was_written_holds_nothing(
    redis_server: RedisServer,
) -> None:
    policy = QuotaPolicy(on_exhausted="raise")
    first = RedisGovernor(redis_server.url, "sk_ssemble_k", policy)  # lease: 120 s
    second = RedisGovernor(redis_server.url, "sk_ssemble_k", policy)
    written = anyio.Event()
    real_write = first._write

    async def slow_answer(*args: Any, **kwargs: Any) -> bool:
        done = await real_write(*args, **kwargs)  # the grant lands in Redis...
        written.set()
        await anyio.sleep(30)  # ...and its answer is slow to come back
        return done

    first._write = slow_answer  # type: ignore[method-assign]
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(first.acquire)
                await written.wait()
                group.cancel_scope.cancel()  # e.g. the caller's timeout: nothing was sent
            # nothing known yet, so one probe at a time: the cancelled grant must not be
            # that probe for the next 120 s
            lease = await second.acquire(deadline=_clock.monotonic() + 3)
            await second.settle(lease, CallResult(reach=Reach.NO))
    finally:
        await first.aclose()
        await second.aclose()


async def test_with_redis_down_a_deadline_still_bounds_the_wait_for_the_probe() -> None:
    # nothing listens on port 1: probe mode, one call at a time in this process
    governor = RedisGovernor("redis://127.0.0.1:1", "sk_ssemble_k", QuotaPolicy())
    try:
        with anyio.fail_after(10):
            slow = await governor.acquire()  # a call that takes its time (not settled yet)
            started = _clock.monotonic()
            with pytest.raises(RateLimitError) as info:
                # e.g. wait_for_quota=False, or a wait_for_completion(timeout=...) near its end
                await governor.acquire(deadline=_clock.monotonic() + 0.5)
            assert info.value.code == "quota_past_deadline"
            assert _clock.monotonic() - started < 3
            await governor.settle(slow, CallResult(reach=Reach.NO))
    finally:
        await governor.aclose()


@pytest.mark.parametrize("redis_server", [True], ids=["aof"], indirect=True)
async def test_calls_made_alone_while_redis_was_down_are_not_forgotten_when_it_is_back(
    redis_server: RedisServer,
) -> None:
    server = redis_server  # keeps its data across a restart
    governor = RedisGovernor(server.url, "sk_ssemble_k", QuotaPolicy(on_exhausted="raise"))
    reset = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=900)

    async def answered(left: int) -> None:
        told = RateLimit(limit_hour=40, remaining_hour=left, remaining_day=None, reset=reset)
        lease = await governor.acquire()
        await governor.settle(lease, CallResult(reach=Reach.YES, status=200, rate_limit=told))

    try:
        with anyio.fail_after(30):
            await answered(35)  # kept in Redis: 35 left
            server.stop()
            for left in range(34, 14, -1):
                await answered(left)  # alone, one at a time: the server says 15 left
            server.start()  # back, and it still says 35
            granted = 0
            with contextlib.suppress(RateLimitError):
                for _ in range(20):
                    await governor.acquire()  # calls going out together, none answered yet
                    granted += 1
    finally:
        await governor.aclose()
        server.stop()
    assert granted <= 15  # what the server said was left, not what Redis remembered
