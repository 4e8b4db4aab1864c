"""wait_for_completion: polling, progress, terminal states, timeouts and the quota."""

from __future__ import annotations

import datetime as dt

import anyio
import pytest

import ssemble_async
from ssemble_async import (
    Client,
    PollPolicy,
    RequestFailedError,
    RequestState,
    RequestStatus,
    WaitTimeoutError,
)
from ssemble_async.testing import FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio


async def test_waits_until_completed(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=2))
    seen: list[RequestStatus] = []
    request = await client.wait_for_completion(rid, on_progress=seen.append)
    assert request.status is RequestState.COMPLETED
    assert request.request_id == rid
    assert len(request.shorts) == 3
    steps = [s.step for s in seen]
    assert steps[0] == "queued"
    assert "finding_highlights" in steps
    assert seen[-1].status is RequestState.COMPLETED
    assert [s.progress for s in seen] == sorted(s.progress or 0 for s in seen)


async def test_async_progress_callback(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    seen: list[str] = []

    async def record(status: RequestStatus) -> None:
        seen.append(status.status_raw)

    await client.wait_for_completion(rid, on_progress=record)
    assert seen[-1] == "completed"


async def test_legacy_task_complete_counts_as_completed(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    rid = fake_ssemble.add_job(FakeJob(status_word_completed="TASK_COMPLETE"))
    request = await client.wait_for_completion(rid)
    assert request.status is RequestState.COMPLETED


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
async def test_failed_or_cancelled_raises_with_reason(
    fake_ssemble: FakeSsembleAPI, client: Client, outcome: str
) -> None:
    rid = fake_ssemble.add_job(FakeJob(outcome=outcome, failure_reason="Video too dark"))  # type: ignore[arg-type]
    with pytest.raises(RequestFailedError) as info:
        await client.wait_for_completion(rid)
    assert info.value.status == outcome
    assert info.value.request_id == rid
    if outcome == "failed":
        assert info.value.failure_reason == "Video too dark"
        assert "Video too dark" in str(info.value)


async def test_timeout_is_clean(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1000))
    with pytest.raises(WaitTimeoutError) as info:
        await client.wait_for_completion(rid, timeout=120)
    assert isinstance(info.value, TimeoutError)
    assert info.value.last_status == "queued"
    polls = sum(1 for r in fake_ssemble.api_requests if r.path.endswith("/status"))
    # 10 + 15 + 22.5 + 33.75 = 81.25 s, then 38.75 s left: 6 polls in 120 s at most
    assert 4 <= polls <= 6


async def test_polling_spreads_the_remaining_quota(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1000))
    reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3600)
    fake_ssemble.set_quota(remaining_hour=16, reset=reset)
    async with Client(
        fake_ssemble.api_key, base_url=fake_ssemble.base_url, poll=PollPolicy(reserve=5)
    ) as client:
        with pytest.raises(WaitTimeoutError):
            await client.wait_for_completion(rid, timeout=1800)
    polls = sum(1 for r in fake_ssemble.api_requests if r.path.endswith("/status"))
    # ~11 spendable calls spread over the hour: half an hour sees about half of them
    assert polls <= 8
    assert fake_ssemble.api_requests  # and the quota was never exhausted
    assert all(r.path.endswith("/status") for r in fake_ssemble.api_requests)


async def test_concurrent_waits_share_the_quota(fake_ssemble: FakeSsembleAPI) -> None:
    rids = [fake_ssemble.add_job(FakeJob(reads_per_step=1000)) for _ in range(4)]
    reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3600)
    fake_ssemble.set_quota(remaining_hour=45, reset=reset)
    async with Client(
        fake_ssemble.api_key, base_url=fake_ssemble.base_url, poll=PollPolicy(reserve=5)
    ) as client:

        async def wait(rid: str) -> None:
            with pytest.raises(WaitTimeoutError):
                await client.wait_for_completion(rid, timeout=1800)

        async with anyio.create_task_group() as task_group:
            for rid in rids:
                task_group.start_soon(wait, rid)
    # four waits share ~40 spendable calls over the hour: half an hour sees about half
    assert len(fake_ssemble.api_requests) <= 28
    assert client.rate_limit is not None and not client.rate_limit.exhausted


async def test_instant_waits_switch_restores() -> None:
    with ssemble_async.instant_waits(False):
        assert not ssemble_async.instant_waits.active()
        with ssemble_async.instant_waits():
            assert ssemble_async.instant_waits.active()
        assert not ssemble_async.instant_waits.active()
