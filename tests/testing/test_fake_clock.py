"""The fake API on the SDK's clock: Date and skew, the quota window, counters, job times."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest

import ssemble_async
from ssemble_async import _clock
from ssemble_async.testing import ApiFault, ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from ._api import UNKNOWN_ID, VALID_BODY, iso, running

pytestmark = pytest.mark.anyio

TWO_STEPS = FakeJob().steps[:2]


def close_to(moment: datetime, expected: datetime, slack: float = 2.0) -> bool:
    return abs((moment - expected).total_seconds()) <= slack


# -- Date and clock skew -------------------------------------------------------------------


@pytest.mark.parametrize("skew", [0.0, 5400.0, -7200.0])
async def test_every_answer_carries_a_date_from_the_fakes_clock(skew: float) -> None:
    async with running(clock_skew=skew) as api:
        fake = api.fake
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(clip_id="c1", size=1000)]))
        expected = datetime.now(timezone.utc) + timedelta(seconds=skew)
        fake.inject_api_fault(ApiFault(status=502, path_prefix="/music"))
        replies = [
            await api.call("GET", "/templates"),
            await api.call("GET", "/templates", headers={}),  # 401
            await api.call("GET", "/nothing-here"),  # 404
            await api.call("GET", "/music"),  # the injected proxy error
        ]
        assert [r.status for r in replies] == [200, 401, 404, 502]
        for reply in replies:
            assert reply.headers["Date"].endswith(" GMT")
            assert close_to(reply.date, expected)
        assert close_to(fake.now(), expected)
        async with api.session.get(fake.clip_url(rid, "c1")) as resp:
            assert close_to(parsedate_to_datetime(resp.headers["Date"]), expected)
            assert close_to(parsedate_to_datetime(resp.headers["Last-Modified"]), expected)
        async with api.session.get(fake.clip_url(rid, "c1"), headers={"Range": "bytes=5000-"}) as r:
            assert r.status == 416
            assert close_to(parsedate_to_datetime(r.headers["Date"]), expected)
        (item,) = await api.listed()
        assert close_to(iso(item["createdAt"]), expected)
        # The first reset is the next full hour of the fake's own clock.
        reset = replies[0].reset
        assert (reset.minute, reset.second, reset.microsecond) == (0, 0, 0)
        assert timedelta(0) < reset - replies[0].date <= timedelta(hours=1)


async def test_an_injected_date_header_wins() -> None:
    async with running() as api:
        date = "Wed, 01 Jan 2020 00:00:00 GMT"
        api.fake.inject_api_fault(ApiFault(headers={"Date": date}))
        assert (await api.call("GET", "/templates")).headers["Date"] == date


async def test_the_date_follows_the_virtual_clock() -> None:
    with ssemble_async.instant_waits():
        async with running(clock_skew=-30) as api:
            before = await api.call("GET", "/templates")
            await _clock.sleep(3 * 86400)
            after = await api.call("GET", "/templates")
            assert close_to(after.date, before.date + timedelta(days=3))
            assert close_to(after.date, _clock.utcnow() - timedelta(seconds=30))


async def test_the_reset_header_is_in_the_fakes_clock() -> None:
    async with running(quota_window=600, clock_skew=-3000) as api:
        reply = await api.call("GET", "/templates")
        real_now = datetime.now(timezone.utc)
        assert close_to(reply.reset, real_now - timedelta(seconds=3000 - 600))
        assert reply.reset == api.fake.quota_reset
        assert close_to(reply.reset, reply.date + timedelta(seconds=600))


# -- the quota window ----------------------------------------------------------------------


async def test_the_window_refills_after_quota_window_on_the_virtual_clock() -> None:
    with ssemble_async.instant_waits():
        async with running(hourly_limit=2, daily_limit=100, quota_window=60) as api:
            fake = api.fake
            first_reset = fake.quota_reset
            assert close_to(first_reset, fake.now() + timedelta(seconds=60), 1.0)
            replies = [await api.call("GET", "/templates") for _ in range(3)]
            assert [r.status for r in replies] == [200, 200, 429]
            assert [r.headers["X-RateLimit-Remaining-Hour"] for r in replies] == ["1", "0", "0"]
            assert {r.reset for r in replies} == {first_reset}
            assert fake.quota_remaining == 0

            await _clock.sleep(30)  # still in the first window
            assert (await api.call("GET", "/templates")).status == 429

            await _clock.sleep(31)  # past the reset: a new window of 60 s
            refilled = await api.call("GET", "/templates")
            assert refilled.status == 200
            assert refilled.headers["X-RateLimit-Remaining-Hour"] == "1"
            assert refilled.headers["X-RateLimit-Remaining-Day"] == str(100 - 3)
            assert refilled.reset == first_reset + timedelta(seconds=60)

            await _clock.sleep(200)  # three whole windows pass without a call
            assert fake.quota_remaining == 2
            assert fake.quota_reset == first_reset + timedelta(seconds=240)
            late = await api.call("GET", "/templates")
            assert (late.status, late.headers["X-RateLimit-Remaining-Hour"]) == (200, "1")
            assert late.reset == first_reset + timedelta(seconds=240)


async def test_the_sdk_waits_out_a_short_window() -> None:
    with ssemble_async.instant_waits():
        async with (
            FakeSsembleAPI(hourly_limit=3, quota_window=120) as fake,
            ssemble_async.Client(fake.api_key, base_url=fake.base_url) as client,
        ):
            started = _clock.utcnow()
            for _ in range(7):
                await client.list_templates()
            # 7 calls at 3 a window need two refills: the client saw 4 minutes pass.
            assert _clock.utcnow() - started >= timedelta(seconds=239)
            assert fake.calls["GET /templates"] - fake.rate_limited["GET /templates"] == 7


async def test_set_quota_scripts_the_window_and_the_limit() -> None:
    with ssemble_async.instant_waits():
        async with running(hourly_limit=10, quota_window=100) as api:
            fake = api.fake
            reset = (fake.now() + timedelta(seconds=10)).replace(microsecond=0)
            fake.set_quota(remaining_hour=0, reset=reset.replace(tzinfo=None), hourly_limit=4)
            assert fake.quota_reset == reset
            limited = await api.call("GET", "/templates")
            assert limited.status == 429
            assert limited.headers["X-RateLimit-Limit-Hour"] == "4"
            await _clock.sleep(11)
            again = await api.call("GET", "/templates")
            assert again.status == 200
            assert again.headers["X-RateLimit-Remaining-Hour"] == "3"  # the new limit, less 1
            assert again.reset == reset + timedelta(seconds=100)


def test_the_quota_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="quota_window"):
        FakeSsembleAPI(quota_window=0)


# -- counters ------------------------------------------------------------------------------


async def test_calls_are_counted_by_endpoint_template() -> None:
    async with running() as api:
        fake = api.fake
        rid = fake.add_job(FakeJob())
        gone = fake.add_job(FakeJob())
        fake.inject_api_fault(ApiFault(status=503, path_prefix="/music"))
        await api.call("POST", "/shorts/create", json=VALID_BODY)
        await api.call("POST", "/shorts/create", data=b"not json")  # a 400 counts too
        await api.call("GET", "/shorts")
        await api.call("GET", f"/shorts/{rid}")
        await api.call("GET", f"/shorts/{rid}/status")
        await api.call("GET", f"/shorts/{UNKNOWN_ID}/status")  # a 404 counts too
        await api.call("GET", "/shorts/not-an-id/status")  # a 400 counts too
        await api.call("DELETE", f"/shorts/{gone}")
        await api.call("GET", "/templates", headers={})  # a 401 counts too
        await api.call("GET", "/templates")
        assert (await api.call("GET", "/music")).status == 503  # the fault counts too
        await api.call("GET", "/music")
        await api.call("GET", "/game-videos")
        await api.call("GET", "/meme-hooks")
        await api.call("PUT", "/templates")
        await api.call("GET", "/nothing-here")
        assert fake.calls == Counter(
            {
                "POST /shorts/create": 2,
                "GET /shorts": 1,
                "GET /shorts/:id": 1,
                "GET /shorts/:id/status": 3,
                "DELETE /shorts/:id": 1,
                "GET /templates": 2,
                "GET /music": 2,
                "GET /game-videos": 1,
                "GET /meme-hooks": 1,
                "PUT /templates": 1,
                "GET /nothing-here": 1,
            }
        )
        assert fake.rate_limited == Counter()
        assert sum(fake.calls.values()) == len(fake.api_requests)


async def test_quota_429s_are_counted_apart() -> None:
    async with running(hourly_limit=2) as api:
        fake = api.fake
        rid = fake.add_job(FakeJob())
        fake.inject_api_fault(
            ApiFault(status=429, body=b"{}", content_type="application/json", path_prefix="/m")
        )
        assert (await api.call("GET", "/music")).status == 429  # the fault's, not the quota's
        for _ in range(3):
            await api.call("GET", f"/shorts/{rid}/status")
        assert (await api.call("GET", "/templates")).status == 429
        assert (await api.call("GET", "/templates", headers={})).status == 401
        assert fake.rate_limited == Counter({"GET /shorts/:id/status": 1, "GET /templates": 1})
        assert fake.calls == Counter(
            {"GET /music": 1, "GET /shorts/:id/status": 3, "GET /templates": 2}
        )
        fake.reset_counters()
        assert (fake.calls, fake.rate_limited) == (Counter(), Counter())
        assert len(fake.api_requests) == 6  # the recorded requests stay
        await api.call("DELETE", f"/shorts/{rid}")
        assert fake.calls == fake.rate_limited == Counter({"DELETE /shorts/:id": 1})


async def test_pending_faults_can_be_cleared() -> None:
    async with running() as api:
        fake = api.fake
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(clip_id="c1", size=1000)]))
        fake.inject_api_fault(ApiFault(times=5))
        fake.inject_clip_fault(ClipFault(status=500, times=5))
        assert (await api.call("GET", "/templates")).status == 502
        async with api.session.get(fake.clip_url(rid, "c1")) as resp:
            assert resp.status == 500
        fake.clear_api_faults()
        fake.clear_clip_faults()
        assert (await api.call("GET", "/templates")).status == 200
        async with api.session.get(fake.clip_url(rid, "c1")) as resp:
            assert (resp.status, len(await resp.read())) == (200, 1000)


# -- listing reads jobs --------------------------------------------------------------------


async def test_a_listing_reads_the_read_driven_jobs_it_shows() -> None:
    with ssemble_async.instant_waits():
        async with running() as api:
            fake = api.fake
            listed_job = fake.add_job(FakeJob(steps=TWO_STEPS))
            slow = fake.add_job(FakeJob(steps=TWO_STEPS, reads_per_step=2))
            timed = fake.add_job(FakeJob(steps=TWO_STEPS, seconds_per_step=3600))
            off_page = fake.add_job(FakeJob(steps=TWO_STEPS))  # newest first: on page 1 only
            await _clock.sleep(5)
            first = {i["requestId"]: i for i in await api.listed(limit=3, page=2)}
            assert list(first) == [listed_job]
            assert first[listed_job]["progress"] == 0  # the state before the read
            assert first[listed_job]["createdAt"] == first[listed_job]["updatedAt"]
            assert fake.jobs[listed_job].phase == 1
            assert (fake.jobs[slow].phase, fake.jobs[off_page].phase) == (0, 0)

            second = {i["requestId"]: i for i in await api.listed(sortOrder="asc")}
            assert [i["progress"] for i in second.values()] == [15, 0, 0, 0]
            moved = iso(second[listed_job]["updatedAt"]) - iso(second[listed_job]["createdAt"])
            assert timedelta(seconds=5) <= moved < timedelta(seconds=6)
            third = {i["requestId"]: i for i in await api.listed(sortOrder="asc")}
            assert {k: (i["status"], i["progress"]) for k, i in third.items()} == {
                listed_job: ("completed", 100),
                slow: ("queued", 0),  # two reads on the queued step: moves on the next read
                timed: ("queued", 0),  # time-driven: reads do not move it
                off_page: ("processing", 15),
            }
            assert (fake.jobs[slow].phase, fake.jobs[slow].reads_on_phase) == (1, 0)
            finished = await api.listed(status="completed")
            assert {i["requestId"] for i in finished} == {listed_job, off_page}
            assert fake.jobs[slow].reads_on_phase == 0  # filtered out: not read
            (processing,) = await api.listed(status="processing")
            assert processing["requestId"] == slow
            assert fake.jobs[slow].reads_on_phase == 1


async def test_an_sdk_watching_through_the_list_sees_jobs_move() -> None:
    async with (
        FakeSsembleAPI() as fake,
        ssemble_async.Client(fake.api_key, base_url=fake.base_url) as client,
    ):
        rids = {fake.add_job(FakeJob(reads_per_step=2)) for _ in range(3)}
        seen: list[set[str]] = []
        for _ in range(20):
            states = {str(item.status) async for item in client.list_requests(page_size=100)}
            seen.append(states)
            if states == {"completed"}:
                break
        assert seen[0] == {"queued"}
        assert seen[-1] == {"completed"}
        assert len(seen) == 2 * len(FakeJob().steps) + 1
        assert fake.calls == Counter({"GET /shorts": len(seen)})
        assert {fake.jobs[rid].status for rid in rids} == {"completed"}


# -- time-driven jobs ----------------------------------------------------------------------


def test_finishes_after_spreads_the_time_over_the_steps() -> None:
    job = FakeJob(finishes_after=17 * 60)
    assert job.time_driven
    assert [job.seconds_to_step(k) for k in range(6)] == [0, 204, 408, 612, 816, 1020]
    assert FakeJob(seconds_per_step=60).seconds_to_step(5) == 300
    assert not FakeJob().time_driven
    with pytest.raises(ValueError, match="not both"):
        FakeJob(finishes_after=60, seconds_per_step=10)
    with pytest.raises(ValueError, match="at least one step"):
        FakeJob(steps=(), finishes_after=60)
    with pytest.raises(ValueError, match="finishes_after"):
        FakeJob(finishes_after=0)
    with pytest.raises(ValueError, match="seconds_per_step"):
        FakeJob(seconds_per_step=0)
    with pytest.raises(ValueError, match="read-driven"):
        FakeJob().seconds_to_step(1)


async def test_time_driven_jobs_finish_on_the_virtual_clock_unread() -> None:
    with ssemble_async.instant_waits():
        async with running() as api:
            fake = api.fake
            seventeen = fake.add_job(FakeJob(finishes_after=17 * 60))
            five = fake.add_job(FakeJob(seconds_per_step=60))
            twenty = fake.add_job(FakeJob(steps=TWO_STEPS, seconds_per_step=600))
            thirds = fake.add_job(FakeJob(steps=FakeJob().steps[:3], finishes_after=1000))
            created = {rid: fake.jobs[rid].created_at for rid in fake.jobs}

            def at(rid: str, seconds: float) -> str:
                moment = created[rid] + timedelta(seconds=seconds)
                return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

            await _clock.sleep(10 * 60 + 1)
            status = await api.data("GET", f"/shorts/{seventeen}/status")
            assert (status["step"], status["progress"]) == ("transcribing_audio", 35)
            again = await api.data("GET", f"/shorts/{seventeen}/status")
            assert again["step"] == "transcribing_audio"  # reads do not move it
            midway = {i["requestId"]: i for i in await api.listed()}
            assert midway[seventeen]["updatedAt"] == at(seventeen, 2 * 204)
            assert (midway[five]["status"], midway[five]["updatedAt"]) == (
                "completed",
                at(five, 300),  # when it finished, not when it was first read
            )
            assert midway[twenty]["updatedAt"] == at(twenty, 600)

            await _clock.sleep(20 * 60)
            by_update = await api.listed(sortBy="updatedAt", sortOrder="asc")
            assert [i["requestId"] for i in by_update] == [five, thirds, seventeen, twenty]
            assert {i["status"] for i in by_update} == {"completed"}
            assert [i["updatedAt"] for i in by_update] == [
                at(five, 300),
                at(thirds, 1000),
                at(seventeen, 1020),
                at(twenty, 1200),
            ]
            full = await api.data("GET", f"/shorts/{thirds}")
            assert full["updatedAt"] == at(thirds, 1000)
            assert len(full["shorts"]) == 3


async def test_a_time_driven_job_finishes_without_any_request() -> None:
    async with running() as api:
        fake = api.fake
        with ssemble_async.instant_waits():
            rid = fake.add_job(FakeJob(finishes_after=17 * 60))
            state = fake.jobs[rid]
            await _clock.sleep(17 * 60 - 2)
            state.sync_clock()
            assert (state.status, state.phase) == ("processing", 4)
            await _clock.sleep(3)
            state.sync_clock()
            assert state.status == "completed"
            assert state.updated_at == state.created_at + timedelta(seconds=17 * 60)
            assert fake.api_requests == []
        # Leaving instant_waits sets the clock back 17 minutes: the job stays finished.
        (item,) = await api.listed()
        assert item["status"] == "completed"
        assert iso(item["updatedAt"]) > datetime.now(timezone.utc) + timedelta(minutes=16)


def test_time_driven_jobs_finish_exactly_on_time() -> None:
    fake = FakeSsembleAPI()
    rid = fake.add_job(FakeJob(finishes_after=1000))
    state = fake.jobs[rid]
    assert state.step_reached_at(5) == state.created_at + timedelta(seconds=1000)
    state.sync_clock(state.created_at + timedelta(seconds=999.999))
    assert (state.status, state.phase) == ("processing", 4)
    assert state.updated_at == state.created_at + timedelta(seconds=800)
    state.sync_clock(state.created_at + timedelta(seconds=1000))
    assert state.status == "completed"
    assert state.updated_at == state.created_at + timedelta(seconds=1000)
    state.sync_clock(state.created_at)  # the clock going back moves nothing
    assert state.status == "completed"
