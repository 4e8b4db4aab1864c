"""The quota shared in Redis: many processes on one key never overshoot it together."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest
from cli._support import environment, ssemble

from ssemble_async import CallResult, Client, Priority, QuotaPolicy, Reach
from ssemble_async._ratelimit import RateLimit
from ssemble_async._redis_governor import RedisGovernor
from ssemble_async.testing import FakeJob, FakeSsembleAPI
from ssemble_async.testing._redis import RedisServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent.parent


async def run_workers(
    fake: FakeSsembleAPI,
    redis: RedisServer,
    rid: str,
    *,
    workers: int,
    calls: int,
    tasks: int = 4,
    skews: tuple[float, ...] = (0.0,),
) -> list[dict[str, int]]:
    """Start ``workers`` processes at once; return each one's tally."""
    results: list[dict[str, int]] = []

    async def one(number: int) -> None:
        skew = skews[number % len(skews)]
        argv = [sys.executable, "-m", "tests.distributed._worker", fake.base_url, fake.api_key]
        argv += [redis.url, rid, str(calls), str(tasks), str(skew)]
        done = await anyio.run_process(argv, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr.decode()
        results.append(json.loads(done.stdout.decode().splitlines()[-1]))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for number in range(workers):
                group.start_soon(one, number)
    return results


@pytest.mark.parametrize("skews", [(0.0,), (-900.0, 0.0, 900.0)])
async def test_worker_processes_on_one_key_spend_the_quota_exactly_once(
    redis_server: RedisServer, skews: tuple[float, ...]
) -> None:
    async with FakeSsembleAPI(hourly_limit=30) as fake:
        rid = fake.add_job(FakeJob())
        tallies = await run_workers(fake, redis_server, rid, workers=3, calls=25, skews=skews)
        answered = sum(t["answered"] for t in tallies)
        assert sum(t["refused_429"] for t in tallies) == 0
        assert sum(fake.rate_limited.values()) == 0
        assert sum(fake.calls.values()) == answered == 30  # all of it, and never more
        assert sum(t["held"] for t in tallies) >= 1


async def test_an_expired_lease_counts_as_spent(redis_server: RedisServer) -> None:
    policy = QuotaPolicy(on_exhausted="raise")
    first = RedisGovernor(redis_server.url, "sk_ssemble_k", policy, lease_seconds=0.5)
    second = RedisGovernor(redis_server.url, "sk_ssemble_k", policy)
    try:
        lease = await first.acquire()
        told = RateLimit(limit_hour=10, remaining_hour=5, remaining_day=None, reset=None)
        await first.settle(lease, CallResult(reach=Reach.YES, status=200, rate_limit=told))
        hung = await first.acquire()  # granted, then its worker hangs: never settled
        assert hung is not None
        await anyio.sleep(0.8)
        await second.acquire(Priority.URGENT)
        assert second.budget().remaining == 4  # the hung call was counted
        assert second.budget().in_flight == 0  # its lease is gone
    finally:
        await first.aclose()
        await second.aclose()


async def test_another_key_has_a_budget_of_its_own(redis_server: RedisServer) -> None:
    policy = QuotaPolicy(on_exhausted="raise")
    one = RedisGovernor(redis_server.url, "sk_ssemble_one", policy)
    other = RedisGovernor(redis_server.url, "sk_ssemble_other", policy)
    try:
        lease = await one.acquire()
        spent = RateLimit(limit_hour=10, remaining_hour=0, remaining_day=None, reset=None)
        await one.settle(lease, CallResult(reach=Reach.YES, status=200, rate_limit=spent))
        with anyio.fail_after(5):
            await other.acquire()  # nothing known of this key: its probe goes at once
        keys = await one._redis.keys("*")
        assert all(b"sk_ssemble" not in key for key in keys)
    finally:
        await one.aclose()
        await other.aclose()


@pytest.mark.parametrize("redis_server", [False, True], ids=["volatile", "aof"], indirect=True)
async def test_redis_down_or_restarted_never_lets_calls_overshoot(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeSsembleAPI(hourly_limit=40) as fake:
        rid = fake.add_job(FakeJob())
        quota = QuotaPolicy(on_exhausted="raise")
        async with Client(
            fake.api_key, base_url=fake.base_url, quota=quota, quota_url=redis_server.url
        ) as client:
            for _ in range(5):
                await client.get_status(rid)
            redis_server.stop()  # down: this process goes on alone, one call at a time
            for _ in range(5):
                await client.get_status(rid)
            assert any("cannot be reached" in r.getMessage() for r in caplog.records)
            redis_server.start()  # back: empty (probe, then the headers tell) or as it was
            looker = RedisGovernor(redis_server.url, fake.api_key, quota)
            try:
                kept = (await looker._read()).budget.remaining
            finally:
                await looker.aclose()
            assert (kept is not None) is redis_server.append_only
            for _ in range(5):
                await client.get_status(rid)
            assert any("answers again" in r.getMessage() for r in caplog.records)
        assert sum(fake.calls.values()) == 15
        assert sum(fake.rate_limited.values()) == 0
        tallies = await run_workers(fake, redis_server, rid, workers=2, calls=30)
        assert sum(t["answered"] for t in tallies) == 25  # what was left, not more
        assert sum(fake.rate_limited.values()) == 0
    assert not any("socket" in r.getMessage() and "@" in r.getMessage() for r in caplog.records)


async def test_the_command_line_shares_the_budget_through_quota_url(
    redis_server: RedisServer,
) -> None:
    async with FakeSsembleAPI(hourly_limit=50) as fake:
        env = environment(fake, SSEMBLE_QUOTA_URL=redis_server.url)
        for _ in range(2):
            result = await ssemble("templates", "-q", env=env)
            assert result.code == 0, result.err
        looker = RedisGovernor(redis_server.url, fake.api_key, QuotaPolicy())
        try:
            shared = (await looker._read()).budget
            keys = await looker._redis.keys("*")
        finally:
            await looker.aclose()
        assert shared.limit == 50
        assert shared.remaining == fake.quota_remaining == 48
        assert all(fake.api_key.encode() not in key for key in keys)
