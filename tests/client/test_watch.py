"""The one watcher and the quota governor, end to end on the fake API with a virtual clock.

Every test runs the real client against the fake on 127.0.0.1 with instant_waits() (the
autouse fixture of this folder): jobs finish on the virtual clock, the fake's quota window
runs on it too, and the fake counts every call and every 429 by endpoint.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from ssemble_async import (
    Client,
    ClipState,
    ConfigurationError,
    NotFoundError,
    QuotaPolicy,
    RateLimitError,
    RequestFailedError,
    RetryPolicy,
    ShortsRequest,
    WaitTimeoutError,
    _clock,
)
from ssemble_async.testing import ApiFault, FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio

RETRY = RetryPolicy(attempts=4, initial_wait=0.5, max_wait=5, jitter=0)
LIMIT = 100


@pytest.fixture
async def fake() -> AsyncIterator[FakeSsembleAPI]:
    """The fake with the standard tier's 100 calls an hour, a fresh window at start."""
    async with FakeSsembleAPI(hourly_limit=LIMIT) as api:
        api.set_quota(remaining_hour=LIMIT, reset=api.now() + dt.timedelta(hours=1))
        yield api


def client_of(fake: FakeSsembleAPI, **options: object) -> Client:
    options.setdefault("retry", RETRY)
    return Client(fake.api_key, base_url=fake.base_url, **options)  # type: ignore[arg-type]


def add_jobs(fake: FakeSsembleAPI, count: int, seed: int) -> dict[str, float]:
    """``count`` jobs finishing 5-30 minutes from now; returns id -> finish (package clock)."""
    rng = random.Random(seed)
    finishes: dict[str, float] = {}
    for _ in range(count):
        after = rng.uniform(5 * 60, 30 * 60)
        rid = fake.add_job(FakeJob(finishes_after=after, clips=(FakeClip(size=40_000),)))
        finishes[rid] = _clock.monotonic() + after
    return finishes


def total(fake: FakeSsembleAPI) -> int:
    return sum(fake.calls.values())


async def test_twenty_waits_share_one_watcher(fake: FakeSsembleAPI) -> None:
    finishes = add_jobs(fake, 20, seed=1)
    latencies: list[float] = []
    async with client_of(fake) as client:

        async def wait(rid: str) -> None:
            request = await client.wait_for_completion(rid, timeout=3600)
            assert request.request_id == rid and len(request.shorts) == 1
            latencies.append(_clock.monotonic() - finishes[rid])

        async with anyio.create_task_group() as group:
            for rid in finishes:
                group.start_soon(wait, rid)
    assert len(latencies) == 20
    assert sum(fake.rate_limited.values()) == 0  # not one 429 provoked
    assert fake.calls["GET /shorts/:id"] == 20  # one read per finished job
    # one list call a round (a status call when one job is left: the same cost), the
    # budget spread until the reset: not one poll per job
    rounds = fake.calls["GET /shorts"] + fake.calls["GET /shorts/:id/status"]
    assert rounds <= 60 and total(fake) == 20 + rounds
    # found within about one round (3600 s / (100 - 20 - 7) calls ~ 49 s)
    assert sum(latencies) / len(latencies) <= 50
    assert max(latencies) <= 100


async def test_wait_for_many_yields_each_id_once_as_it_ends(fake: FakeSsembleAPI) -> None:
    early = fake.add_job(FakeJob(finishes_after=300))
    late = fake.add_job(FakeJob(finishes_after=900))
    broken = fake.add_job(FakeJob(finishes_after=600, outcome="failed", failure_reason="dark"))
    endless = fake.add_job(FakeJob(finishes_after=20_000))
    missing = "0123456789abcdef01234567"
    async with client_of(fake) as client:
        results = [
            result
            async for result in client.wait_for_many(
                [late, early.upper(), broken, endless, missing, early], timeout=1800
            )
        ]
    ids = [r.request_id for r in results]
    assert sorted(ids) == sorted([early, late, broken, endless, missing])
    assert isinstance(results[0], NotFoundError) and results[0].request_id == missing
    assert [r.request_id for r in results[1:]] == [early, broken, late, endless]
    assert isinstance(results[1], ShortsRequest) and isinstance(results[3], ShortsRequest)
    assert isinstance(results[2], RequestFailedError) and results[2].failure_reason == "dark"
    assert isinstance(results[4], WaitTimeoutError)
    assert sum(fake.rate_limited.values()) == 0


async def test_a_completed_request_object_costs_nothing(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(steps=()))
    async with client_of(fake) as client:
        request = await client.get_shorts(rid)
        before = total(fake)
        (result,) = [r async for r in client.wait_for_many([request], timeout=10)]
    assert result is request
    assert total(fake) == before


async def test_the_first_poll_after_a_create_is_one_interval_later(fake: FakeSsembleAPI) -> None:
    fake.auto_job = FakeJob(finishes_after=400)
    async with client_of(fake) as client:
        created = await client.create_short(
            url="https://www.youtube.com/watch?v=abc", start=0, end=60
        )
        async with anyio.create_task_group() as group:
            group.start_soon(client.wait_for_completion, created.request_id)
            await _clock.sleep(5)
            assert total(fake) == 1  # only the create: its status is already known
        assert fake.calls["GET /shorts/:id"] == 1


async def test_a_timeout_bounds_a_quota_wait(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(finishes_after=600))
    fake.set_quota(remaining_hour=0, reset=fake.now() + dt.timedelta(minutes=30))
    async with client_of(fake) as client:
        started = _clock.monotonic()
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_completion(rid, timeout=3)
        assert 3 <= _clock.monotonic() - started < 4
    assert total(fake) == 1  # the first call learnt the quota was spent; nothing after


async def test_concurrent_waits_time_out_on_their_own_deadlines(fake: FakeSsembleAPI) -> None:
    rids = [fake.add_job(FakeJob(finishes_after=20_000)) for _ in range(3)]
    ended: dict[str, float] = {}
    async with client_of(fake) as client:
        started = _clock.monotonic()

        async def wait(rid: str, patience: float) -> None:
            with pytest.raises(WaitTimeoutError):
                await client.wait_for_completion(rid, timeout=patience)
            ended[rid] = _clock.monotonic() - started

        async with anyio.create_task_group() as group:
            for rid, patience in zip(rids, (100, 700, 400), strict=True):
                group.start_soon(wait, rid, patience)
    assert [round(ended[rid]) for rid in rids] == [100, 700, 400]


async def test_a_refused_connection_does_not_spend_the_quota(fake: FakeSsembleAPI) -> None:
    async with client_of(fake, retry=RetryPolicy(attempts=3, initial_wait=0.1, jitter=0)) as client:
        await client.list_templates()
        known = client.quota.remaining
        await fake.pause_api()
        try:
            with pytest.raises(Exception, match="cannot connect"):
                await client.list_templates()
        finally:
            await fake.resume_api()
        assert client.quota.remaining == known  # three refused tries, none counted
        assert client.quota.in_flight == 0
        before = _clock.monotonic()
        await client.list_templates()  # and no wait for a quota believed spent
        assert _clock.monotonic() - before < 1


@pytest.mark.parametrize("skew", [-900.0, 0.0, 900.0])
async def test_a_skewed_server_clock_waits_exactly_for_the_reset(skew: float) -> None:
    async with FakeSsembleAPI(hourly_limit=LIMIT, clock_skew=skew) as fake:
        fake.set_quota(remaining_hour=1, reset=fake.now() + dt.timedelta(minutes=5))
        async with client_of(fake) as client:
            await client.list_templates()  # the last call of the window
            started = _clock.monotonic()
            await client.list_templates()  # held until the reset, on the server's clock
            waited = _clock.monotonic() - started
        assert 300 <= waited <= 303
        assert sum(fake.rate_limited.values()) == 0


async def test_a_quota_spent_by_another_user_of_the_key(fake: FakeSsembleAPI) -> None:
    finishes = add_jobs(fake, 6, seed=2)
    async with client_of(fake) as client:
        results: list[object] = []

        async def spend_elsewhere() -> None:
            await _clock.sleep(8 * 60)
            fake.set_quota(remaining_hour=3)  # someone else used the key meanwhile

        async def wait() -> None:
            async for result in client.wait_for_many(finishes, timeout=3 * 3600):
                results.append(result)

        async with anyio.create_task_group() as group:
            group.start_soon(spend_elsewhere)
            group.start_soon(wait)
    assert all(isinstance(r, ShortsRequest) for r in results) and len(results) == 6
    # at most the one call that learnt of it may be refused; then it waits for the reset
    assert sum(fake.rate_limited.values()) <= 1


async def test_no_wait_for_quota_fails_at_once_without_sending(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(finishes_after=600))
    async with client_of(fake, quota=QuotaPolicy(on_exhausted="raise")) as client:
        await client.list_templates()
        fake.set_quota(remaining_hour=0)
        with pytest.raises(RateLimitError) as info:
            await client.wait_for_completion(rid, timeout=3600)
    assert info.value.code in ("quota_exhausted", "rate_limit_exceeded")


async def test_download_many_with_wait_spends_one_watcher(
    fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    finishes = add_jobs(fake, 20, seed=3)
    async with client_of(fake) as client:
        report = await client.download_many(finishes, tmp_path, wait=True, wait_timeout=3600)
    assert report.ok and len(report.outcomes) == 20
    assert sum(fake.rate_limited.values()) == 0
    assert fake.calls["GET /shorts/:id"] == 20
    assert total(fake) <= 20 + 60


async def test_a_rerun_reads_only_requests_with_work_left(
    fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    done = [fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=30_000),) * 1)) for _ in range(3)]
    stuck = fake.add_job(
        FakeJob(steps=(), clips=(FakeClip(size=30_000), FakeClip(recompiling_reads=1000)))
    )
    async with client_of(fake) as client:
        first = await client.download_many([*done, stuck], tmp_path, recompile_wait=60)
        assert {o.state for o in first.outcomes} == {ClipState.DOWNLOADED, ClipState.NOT_READY}
        seen = len(fake.api_requests)
        second = await client.download_many([*done, stuck], tmp_path, recompile_wait=60)
    present = [o for o in second.outcomes if o.request_id in done]
    assert len(present) == 3 and all(o.state is ClipState.ALREADY_PRESENT for o in present)
    # the finished requests are not read again; the one with a clip left is
    read = [r.path.rsplit("/", 1)[-1] for r in fake.api_requests[seen:]]
    assert read and set(read) == {stuck}


async def test_overwrite_reads_finished_requests_again(
    fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=30_000),)))
    async with client_of(fake) as client:
        await client.download_many([rid], tmp_path)
        fake.reset_counters()
        report = await client.download_many([rid], tmp_path, overwrite=True)
    assert report.outcomes[0].state is ClipState.DOWNLOADED
    assert fake.calls["GET /shorts/:id"] == 1


async def test_rechecks_of_rerendering_clips_stay_within_the_quota(
    fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    rids = [
        fake.add_job(FakeJob(steps=(), clips=(FakeClip(recompiling_reads=10_000),)))
        for _ in range(15)
    ]
    fake.set_quota(remaining_hour=40)
    async with client_of(fake) as client:
        started = _clock.monotonic()
        report = await client.download_many(rids, tmp_path, recompile_wait=600)
        elapsed = _clock.monotonic() - started
    assert {o.state for o in report.outcomes} == {ClipState.NOT_READY}
    assert sum(fake.rate_limited.values()) == 0
    assert total(fake) <= 40  # within what was left, the reads included
    assert elapsed <= 600 + 5  # never blocked past recompile_wait


async def test_quota_url_schemes() -> None:
    with pytest.raises(ConfigurationError, match="mongodb://"):
        Client("sk_ssemble_x", quota_url="mongodb://127.0.0.1:6379/0")
    Client("sk_ssemble_x", quota_url="")  # unset: this process's own budget


async def test_two_clients_sharing_a_governor_share_one_budget(fake: FakeSsembleAPI) -> None:
    fake.set_quota(remaining_hour=4)
    async with (
        client_of(fake) as first,
        client_of(fake, quota_governor=first.quota_governor) as second,
    ):
        await first.list_templates()
        await second.list_templates()
        await first.list_templates()
        assert second.quota.remaining == 1
        await second.list_templates()
        started = _clock.monotonic()
        await first.list_templates()  # both spent it: held until the reset, not refused
        assert _clock.monotonic() - started > 60
    assert sum(fake.rate_limited.values()) == 0


async def test_a_spent_day_is_asked_again_after_the_hourly_reset(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(steps=()))
    fake.set_quota(remaining_day=1)
    async with client_of(fake) as client:
        await client.get_status(rid)  # the answer says: nothing left today
        fake.set_quota(remaining_day=1000)  # a new day on the server, unknown to the client
        started = _clock.monotonic()
        await client.get_status(rid)  # held until the hourly reset, then it asks
        assert _clock.monotonic() - started <= 3600 + 5
    assert sum(fake.rate_limited.values()) == 0


async def test_a_short_window_is_learnt_without_429s() -> None:
    async with FakeSsembleAPI(hourly_limit=5, quota_window=60) as fake:
        rid = fake.add_job(FakeJob(steps=()))
        async with client_of(fake) as client:
            for _ in range(40):
                await client.get_status(rid)
                await _clock.sleep(3)
        assert sum(fake.rate_limited.values()) <= 1  # at most the call that found it out


async def test_jobs_pushed_down_a_busy_list_are_still_found() -> None:
    async with FakeSsembleAPI(max_page_size=10) as fake:
        a = fake.add_job(FakeJob(finishes_after=600, clips=(FakeClip(size=1000),)))
        b = fake.add_job(FakeJob(finishes_after=900, clips=(FakeClip(size=1000),)))
        steps = tuple((f"s{i}", i // 5, "x") for i in range(500))
        for _ in range(120):  # an account whose other jobs keep moving to the top
            fake.add_job(FakeJob(steps=steps, reads_per_step=1))
        async with client_of(fake) as client:
            got = [r async for r in client.wait_for_many([a, b], timeout=3000)]
    assert all(isinstance(r, ShortsRequest) for r in got) and len(got) == 2


async def test_a_slow_api_call_does_not_let_the_virtual_clock_run(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(steps=()))
    fake.inject_api_fault(ApiFault(status=503, delay=0.05, method="GET"))
    async with client_of(fake) as client:
        with _clock.cancel_at(_clock.monotonic() + 30) as scope:
            await client.get_status(rid)  # 50 ms of real time, then a retry
    assert not scope.cancelled_caught


async def test_concurrent_calls_never_overshoot_what_is_left(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(steps=()))
    async with client_of(fake) as client:
        await client.get_status(rid)  # the quota is known from here
        fake.set_quota(remaining_hour=3)
        await client.get_status(rid)  # 2 left now, as this answer says
        sent_before = fake.calls["GET /shorts/:id/status"]
        finished: list[float] = []
        started = _clock.monotonic()

        async def call() -> None:
            await client.get_status(rid)
            finished.append(_clock.monotonic() - started)

        async with anyio.create_task_group() as group:
            for _ in range(30):
                group.start_soon(call)
    assert sum(fake.rate_limited.values()) == 0
    assert fake.calls["GET /shorts/:id/status"] == sent_before + 30
    early = [t for t in finished if t < 60]
    assert len(early) == 2  # what was left; the 28 others after the reset


async def test_unknown_quota_sends_one_probe_before_the_others(fake: FakeSsembleAPI) -> None:
    rid = fake.add_job(FakeJob(steps=()))
    fake.inject_api_fault(
        ApiFault(status=503, delay=0.2, path_prefix=f"/shorts/{rid}/status", times=1)
    )
    async with client_of(fake) as client, anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(client.get_status, rid)
        await anyio.sleep(0.1)  # real time: the probe is held by the fault
        assert len(fake.api_requests) == 1  # the others wait for its answer
    assert fake.calls["GET /shorts/:id/status"] == 11  # the refused probe, then ten


async def test_a_wait_past_a_spent_quota_is_logged_once_per_reset(
    fake: FakeSsembleAPI, caplog: pytest.LogCaptureFixture
) -> None:
    rids = [fake.add_job(FakeJob(finishes_after=600)) for _ in range(5)]
    fake.set_quota(remaining_hour=0, reset=fake.now() + dt.timedelta(minutes=19, seconds=30))
    async with client_of(fake) as client:
        results = [r async for r in client.wait_for_many(rids, timeout=3600)]
    assert all(isinstance(r, ShortsRequest) for r in results)
    waits = [r.getMessage() for r in caplog.records if "quota spent" in r.getMessage()]
    assert len(waits) == 1, waits
    assert re.fullmatch(r"quota spent; waiting until \d\d:\d\d UTC \(20 min\)", waits[0])


def test_a_quota_url_is_never_repeated_in_the_error() -> None:
    for url in ("user:secret@somewhere", "mongodb://:secret@127.0.0.1:6379/0"):
        with pytest.raises(ConfigurationError) as info:
            Client("sk_ssemble_x", quota_url=url)
        assert "secret" not in str(info.value)


async def test_leaving_wait_for_many_early_ends_its_waits(fake: FakeSsembleAPI) -> None:
    early = fake.add_job(FakeJob(finishes_after=300))
    rest = [fake.add_job(FakeJob(finishes_after=20_000)) for _ in range(3)]
    async with client_of(fake) as client:
        waits = client.wait_for_many([early, *rest], timeout=30_000)
        async with contextlib.aclosing(waits):
            async for result in waits:
                assert result.request_id == early
                break
        assert not client._watcher.entries  # nothing left counting in the budget
        calls = total(fake)
        await _clock.sleep(3600)
        assert total(fake) == calls  # and nobody polls for them
