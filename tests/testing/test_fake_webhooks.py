"""The fake delivers webhooks like the real service (API reference, section 2.10).

Every test runs a real receiver (an ``aiohttp.web`` app on 127.0.0.1) and the real fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
import attrs
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ssemble_async import Client, RetryPolicy, _clock
from ssemble_async.testing import (
    WEBHOOK_USER_AGENT,
    FakeClip,
    FakeJob,
    FakeSsembleAPI,
    WebhookDelivery,
    WebhookFault,
)

from ._api import VALID_BODY, running

pytestmark = pytest.mark.anyio

ONE_STEP = (("queued", 0, "Waiting in queue..."),)
ISO_MS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@attrs.frozen
class Received:
    headers: CIMultiDictProxy[str]
    body: bytes
    at: datetime  # on the package clock

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@attrs.define
class Receiver:
    """A webhook receiver: answers the scripted statuses in turn, then 200."""

    statuses: list[int]
    received: list[Received] = attrs.field(factory=list)
    url: str = ""
    hold: asyncio.Event | None = None  # when set: answer only once it is set

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            Received(CIMultiDictProxy(CIMultiDict(request.headers)), body, _clock.utcnow())
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@contextlib.asynccontextmanager
async def receiving(
    statuses: tuple[int, ...] = (), port: int = 0, hold: asyncio.Event | None = None
) -> AsyncIterator[Receiver]:
    receiver = Receiver(list(statuses), hold=hold)
    app = web.Application()
    app.router.add_post("/hooks/ssemble", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/ssemble"
        yield receiver
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):  # 10 s at most
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition was not met in time")


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def attempts(fake: FakeSsembleAPI) -> list[tuple[str, int, int | None]]:
    return [(d.request_id, d.attempt, d.status) for d in fake.webhook_deliveries]


# -- the payload -----------------------------------------------------------------------------


async def test_a_completed_job_delivers_once_with_the_documented_payload() -> None:
    clips = [
        FakeClip(clip_id="c1", title="First", viral_score=85, duration=43),
        FakeClip(clip_id="c2", title="Second", viral_score=72, duration=55.5),
        FakeClip(clip_id="c3", title="Broken", viral_score=40, error=True),
    ]
    async with receiving() as hook, running() as api:
        fake = api.fake
        rid = fake.add_job(FakeJob(steps=ONE_STEP, clips=clips, webhook_url=hook.url))
        silent = fake.add_job(FakeJob(steps=ONE_STEP))  # no webhook URL: nothing is sent
        await api.call("GET", f"/shorts/{silent}/status")  # ends it
        assert fake.jobs[silent].status == "completed"
        await api.call("GET", f"/shorts/{rid}/status")  # the read that ends the job
        await fake.deliveries_settled()
        await asyncio.sleep(0.05)
        (received,) = hook.received
        state = fake.jobs[rid]
        assert received.payload == {
            "event": "shorts.completed",
            "requestId": rid,
            "status": "completed",
            "timestamp": state.updated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "data": {
                "shorts": [
                    {
                        "id": "c1",
                        "title": "First",
                        "video_url": fake.clip_url(rid, "c1"),
                        "duration": 43,
                        "viral_score": 8.5,
                    },
                    {
                        "id": "c2",
                        "title": "Second",
                        "video_url": fake.clip_url(rid, "c2"),
                        "duration": 55.5,
                        "viral_score": 7.2,
                    },
                    {
                        "id": "c3",
                        "title": "Broken",
                        "video_url": "",
                        "duration": 43,
                        "viral_score": 4,
                    },
                ]
            },
        }
        assert ISO_MS_Z.fullmatch(received.payload["timestamp"])
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["User-Agent"] == WEBHOOK_USER_AGENT == "Ssemble-Webhooks/1.0"
        assert "X-API-Key" not in received.headers
        assert "Authorization" not in received.headers
        assert all(fake.api_key not in value for value in received.headers.values())
        (delivery,) = fake.webhook_deliveries
        assert delivery == WebhookDelivery(
            request_id=rid,
            url=hook.url,
            event="shorts.completed",
            attempt=1,
            status=200,
            payload=received.payload,
            at=delivery.at,
        )
        assert delivery.acknowledged
        assert abs(seconds(delivery.at, state.updated_at)) < 2


async def test_a_failed_job_delivers_shorts_failed_and_a_cancelled_one_nothing() -> None:
    async with receiving() as hook, FakeSsembleAPI() as fake:
        failed = FakeJob(steps=(), outcome="failed", failure_reason="Video download failed: 404")
        rid = fake.add_job(attrs.evolve(failed, webhook_url=hook.url))
        fake.add_job(FakeJob(steps=(), outcome="cancelled", webhook_url=hook.url))
        await fake.deliveries_settled()
        await asyncio.sleep(0.05)
        (received,) = hook.received
        assert received.payload == {
            "event": "shorts.failed",
            "requestId": rid,
            "status": "failed",
            "timestamp": received.payload["timestamp"],
            "data": {"failureReason": "Video download failed: 404"},
        }
        assert ISO_MS_Z.fullmatch(received.payload["timestamp"])
        assert attempts(fake) == [(rid, 1, 200)]
        assert fake.webhook_deliveries[0].event == "shorts.failed"


async def test_the_read_that_ends_a_job_is_answered_without_waiting_for_the_delivery() -> None:
    release = asyncio.Event()
    async with receiving(hold=release) as hook, running() as api:
        rid = api.fake.add_job(FakeJob(steps=ONE_STEP, webhook_url=hook.url))
        try:
            with anyio.fail_after(3):  # the receiver holds its answer until released
                reply = await api.call("GET", f"/shorts/{rid}")
            assert reply.status == 200
            assert api.fake.jobs[rid].status == "completed"  # this read ended the job
            await until(lambda: len(hook.received) == 1)
            assert api.fake.webhook_deliveries == []  # the attempt still waits for its answer
        finally:
            release.set()
        await api.fake.deliveries_settled()
        assert attempts(api.fake) == [(rid, 1, 200)]


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("instant")
async def test_two_500s_then_200_make_three_attempts_spaced_1_and_3_seconds() -> None:
    async with receiving(statuses=(500, 500)) as hook, FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(finishes_after=30, webhook_url=hook.url))
        end = fake.jobs[rid].step_reached_at(len(fake.jobs[rid].job.steps))
        await _clock.sleep(31)
        await fake.deliveries_settled()
        assert attempts(fake) == [(rid, 1, 500), (rid, 2, 500), (rid, 3, 200)]
        first, second, third = (d.at for d in fake.webhook_deliveries)
        assert abs(seconds(first, end)) < 0.25  # at the job's end, though nobody read it
        assert abs(seconds(second, first) - 1) < 0.25
        assert abs(seconds(third, second) - 3) < 0.25
        assert len(hook.received) == 3
        assert len({r.body for r in hook.received}) == 1  # every attempt sends the same body
        assert fake.calls["GET /shorts/:id"] == fake.calls["GET /shorts/:id/status"] == 0


@pytest.mark.usefixtures("instant")
async def test_a_delivery_gives_up_after_three_attempts() -> None:
    async with receiving(statuses=(503,) * 10) as hook, FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        await fake.deliveries_settled()
        await _clock.sleep(600)
        assert attempts(fake) == [(rid, 1, 503), (rid, 2, 503), (rid, 3, 503)]
        assert len(hook.received) == 3
        assert not any(d.acknowledged for d in fake.webhook_deliveries)


@pytest.mark.usefixtures("instant")
async def test_a_receiver_down_for_the_first_attempt_gets_the_retry() -> None:
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(FakeSsembleAPI())
        url = f"http://127.0.0.1:{port}/hooks/ssemble"
        with _clock.real_work():  # the virtual clock stands still until the receiver is up
            rid = fake.add_job(FakeJob(steps=(), webhook_url=url))
            await until(lambda: len(fake.webhook_deliveries) == 1)
            hook = await stack.enter_async_context(receiving(port=port))
        await fake.deliveries_settled()
        refused, retry = fake.webhook_deliveries
        assert (refused.attempt, refused.status) == (1, None)
        assert refused.error is not None
        assert (retry.attempt, retry.status) == (2, 200)
        assert abs(seconds(retry.at, refused.at) - 1) < 0.25
        (received,) = hook.received
        assert received.payload["requestId"] == rid


# -- faults ----------------------------------------------------------------------------------


async def test_a_lost_delivery_sends_nothing_and_is_used_up() -> None:
    async with receiving() as hook, FakeSsembleAPI() as fake:
        fake.inject_webhook_fault(WebhookFault(lost=True))
        lost = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        await fake.deliveries_settled()
        kept = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        await fake.deliveries_settled()
        await asyncio.sleep(0.05)
        assert fake.jobs[lost].status == "completed"
        assert [r.payload["requestId"] for r in hook.received] == [kept]
        assert attempts(fake) == [(kept, 1, 200)]


async def test_a_fault_for_one_request_id_spares_the_others() -> None:
    async with receiving() as hook, FakeSsembleAPI() as fake:
        target = FakeJob(steps=ONE_STEP, webhook_url=hook.url)
        fake.inject_webhook_fault(WebhookFault(lost=True, request_id=target.request_id))
        other = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        await fake.deliveries_settled()
        fake.add_job(target)
        fake.jobs[target.request_id].count_read()  # ends it
        await fake.deliveries_settled()
        assert [r.payload["requestId"] for r in hook.received] == [other]


@pytest.mark.usefixtures("instant")
async def test_a_duplicated_delivery_is_sent_again_apart() -> None:
    async with receiving() as hook, FakeSsembleAPI() as fake:
        fake.inject_webhook_fault(WebhookFault(duplicate=2, duplicate_after=180))
        rid = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        await fake.deliveries_settled()
        assert attempts(fake) == [(rid, 1, 200)] * 3
        assert [d.copy for d in fake.webhook_deliveries] == [0, 1, 2]
        first, second, third = (d.at for d in fake.webhook_deliveries)
        assert abs(seconds(second, first) - 180) < 0.25
        assert abs(seconds(third, second) - 180) < 0.25
        assert len(hook.received) == 3
        assert len({r.body for r in hook.received}) == 1


@pytest.mark.usefixtures("instant")
async def test_a_delayed_delivery_waits_before_its_first_attempt() -> None:
    async with receiving(statuses=(500,)) as hook, FakeSsembleAPI() as fake:
        fake.inject_webhook_fault(WebhookFault(delay=45))
        rid = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        created = fake.jobs[rid].created_at
        await fake.deliveries_settled()
        first, retry = fake.webhook_deliveries
        assert abs(seconds(first.at, created) - 45) < 0.25
        assert abs(seconds(retry.at, first.at) - 1) < 0.25  # retries keep their spacing
        assert len(hook.received) == 2


@pytest.mark.usefixtures("instant")
async def test_deliveries_settled_is_bounded() -> None:
    async with receiving() as hook, FakeSsembleAPI() as fake:
        fake.inject_webhook_fault(WebhookFault(delay=100))
        fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        with pytest.raises(TimeoutError):
            await fake.deliveries_settled(timeout=10)
        assert hook.received == []
        await fake.deliveries_settled()
        assert len(hook.received) == 1


async def test_a_forged_delivery_names_a_job_the_fake_does_not_have() -> None:
    async with receiving(statuses=(202,)) as hook, running() as api:
        fake = api.fake
        assert await fake.forge_webhook(hook.url) == 202
        (received,) = hook.received
        payload = received.payload
        assert set(payload) == {"event", "requestId", "status", "timestamp", "data"}
        assert (payload["event"], payload["status"]) == ("shorts.completed", "completed")
        assert payload["requestId"] not in fake.jobs
        assert (await api.call("GET", f"/shorts/{payload['requestId']}")).status == 404
        for clip in payload["data"]["shorts"]:
            assert set(clip) == {"id", "title", "video_url", "duration", "viral_score"}
            assert 0 <= clip["viral_score"] <= 10
            async with api.session.get(clip["video_url"]) as resp:
                assert resp.status == 404
        failed = await fake.forge_webhook(
            hook.url, request_id="ab" * 12, event="shorts.failed", failure_reason="nope"
        )
        assert failed == 200
        assert hook.received[1].payload["data"] == {"failureReason": "nope"}
        assert [(d.request_id, d.forged, d.status) for d in fake.webhook_deliveries] == [
            (payload["requestId"], True, 202),
            ("ab" * 12, True, 200),
        ]
        assert await fake.send_webhook(f"http://127.0.0.1:{free_port()}/", {"x": 1}) is None
        assert fake.webhook_deliveries[-1].error is not None


# -- jobs created through the API ------------------------------------------------------------


@pytest.mark.usefixtures("instant")
async def test_a_job_created_with_a_webhook_url_delivers_when_it_ends() -> None:
    auto_job = FakeJob(finishes_after=600, webhook_url="http://ignored.example/")
    async with (
        receiving() as hook,
        FakeSsembleAPI(auto_job=auto_job) as fake,
        Client(fake.api_key, base_url=fake.base_url, retry=RetryPolicy(attempts=1)) as client,
    ):
        created = await client.create_short(
            url=VALID_BODY["url"], start=0, end=60, webhook_url=hook.url
        )
        rid = created.request_id
        assert fake.jobs[rid].create_body == {**VALID_BODY, "end": 60, "webhookUrl": hook.url}
        assert fake.jobs[rid].job.webhook_url == hook.url
        await _clock.sleep(590)
        await fake.deliveries_settled()
        assert hook.received == []
        await _clock.sleep(20)
        await fake.deliveries_settled()
        (received,) = hook.received
        assert received.payload["requestId"] == rid
        assert received.payload["event"] == "shorts.completed"
        assert len(received.payload["data"]["shorts"]) == 3
        (delivery,) = fake.webhook_deliveries
        assert abs(seconds(delivery.at, fake.jobs[rid].created_at) - 600) < 0.25
        assert "X-API-Key" not in received.headers
        assert "Authorization" not in received.headers
        assert all(fake.api_key not in value for value in received.headers.values())
        # Nobody read the job: the fake's clock alone ended it.
        assert fake.calls["GET /shorts/:id"] == fake.calls["GET /shorts/:id/status"] == 0


async def test_a_job_created_without_a_webhook_url_sends_nothing() -> None:
    async with receiving() as hook, running(auto_job=FakeJob(steps=ONE_STEP)) as api:
        api.fake.auto_job = attrs.evolve(FakeJob(steps=ONE_STEP), webhook_url=hook.url)
        reply = await api.call("POST", "/shorts/create", json=VALID_BODY)
        rid = reply.body["data"]["requestId"]
        await api.call("GET", f"/shorts/{rid}/status")
        assert api.fake.jobs[rid].status == "completed"
        await api.fake.deliveries_settled()
        assert hook.received == []
        assert api.fake.webhook_deliveries == []


@pytest.mark.parametrize(
    "webhook_url", ["ftp://hooks.example.org/x", "hooks.example.org/x", "http://", "not a url"]
)
async def test_create_refuses_a_webhook_url_that_is_not_http(webhook_url: str) -> None:
    async with running() as api:
        reply = await api.call(
            "POST", "/shorts/create", json={**VALID_BODY, "webhookUrl": webhook_url}
        )
        assert reply.status == 400
        assert reply.code == "invalid_request"
        assert reply.body["error"]["details"] == {"field": "webhookUrl"}
        assert api.fake.jobs == {}
        ok = await api.call(
            "POST", "/shorts/create", json={**VALID_BODY, "webhookUrl": "https://h.example/x"}
        )
        assert ok.status == 201


# -- lifecycle -------------------------------------------------------------------------------


async def test_close_leaves_no_task_running() -> None:
    before = asyncio.all_tasks()
    async with receiving() as hook:
        fake = FakeSsembleAPI()
        await fake.start()
        fake.inject_webhook_fault(WebhookFault(delay=3600))
        fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        fake.add_job(FakeJob(finishes_after=3600, webhook_url=hook.url))
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks() - before) >= 2  # the scheduler and the waiting delivery
        with anyio.fail_after(5):
            await fake.close()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()
        assert hook.received == []
        await fake.close()  # again: nothing to do
    with pytest.raises(RuntimeError):
        await fake.send_webhook("http://127.0.0.1:1/", {})


async def test_jobs_added_before_start_deliver_once_started() -> None:
    async with receiving() as hook:
        fake = FakeSsembleAPI()
        rid = fake.add_job(FakeJob(steps=(), webhook_url=hook.url))
        async with fake:
            await fake.deliveries_settled()
            assert attempts(fake) == [(rid, 1, 200)]
            assert timedelta(0) <= fake.now() - fake.jobs[rid].created_at
