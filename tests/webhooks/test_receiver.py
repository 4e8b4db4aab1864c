"""webhook_app against real servers on 127.0.0.1: the receiver, the fake API, its clip host.

Deliveries are POSTed here with aiohttp as Ssemble would (or forged); the receiver confirms
each id with the fake and downloads into a real folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from ssemble_async import Client, RequestState, RetryPolicy, ShortsRequest, _clock
from ssemble_async.testing import (
    ApiFault,
    ClipFault,
    FakeClip,
    FakeJob,
    FakeSsembleAPI,
    WebhookFault,
)
from ssemble_async.webhooks import (
    WebhookOutcome,
    WebhookReceiver,
    handled,
    parse_webhook,
    webhook_app,
)

pytestmark = pytest.mark.anyio

RETRY = RetryPolicy(attempts=3, initial_wait=0.1, max_wait=1, jitter=0)


class Receiver:
    """A webhook_app served on a free loopback port, with the outcomes it reported."""

    def __init__(self) -> None:
        self.outcomes: list[WebhookOutcome] = []
        self.url = ""
        self._changed: anyio.Event | None = None

    def record(self, outcome: WebhookOutcome) -> None:
        """The app's ``on_outcome``."""
        self.outcomes.append(outcome)
        if self._changed is not None:
            self._changed.set()

    async def post(
        self, payload: Any, *, content_type: str = "application/json", raw: bytes | None = None
    ) -> int:
        body = raw if raw is not None else json.dumps(payload).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url, data=io.BytesIO(body), headers={"Content-Type": content_type}
            ) as answer,
        ):
            return answer.status

    async def settle(self, count: int, seconds: float = 20) -> None:
        """Wait (real time, bounded) until ``count`` request ids were handled."""
        with anyio.fail_after(seconds):
            while len(self.outcomes) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


async def wait_for_part(folder: Path, size: int) -> Path:
    """The ``.part`` under ``folder`` once it holds ``size`` bytes (polled: a file grows)."""
    with anyio.fail_after(10):
        while True:
            parts = list(folder.rglob("*.part"))
            if parts and parts[0].stat().st_size >= size:
                return parts[0]
            await anyio.sleep(0.01)


@pytest.fixture
async def client(fake_ssemble: FakeSsembleAPI) -> AsyncIterator[Client]:
    async with Client(fake_ssemble.api_key, base_url=fake_ssemble.base_url, retry=RETRY) as c:
        yield c


async def serve(app: web.Application, receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve ``app`` on 127.0.0.1 while the caller's ``async for`` body runs."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/ssemble/webhook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver(client: Client, tmp_path: Path) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path / "clips", on_outcome=receiver.record)
    async for served in serve(app, receiver):
        yield served


def delivery(request_id: str, event: str = "shorts.completed", **data: Any) -> dict[str, Any]:
    status = "completed" if event == "shorts.completed" else "failed"
    return {
        "event": event,
        "requestId": request_id,
        "status": status,
        "timestamp": "2026-12-02T09:20:11.000Z",
        "data": data,
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_on_disk(fake: FakeSsembleAPI, folder: Path, request_id: str) -> None:
    for clip_id in fake.jobs[request_id].clips:
        path = folder / request_id / f"{clip_id}.mp4"
        assert sha(path.read_bytes()) == sha(fake.clip_bytes(request_id, clip_id))


async def test_a_delivery_becomes_clips_on_disk_with_one_call(
    fake_ssemble: FakeSsembleAPI, receiver: Receiver, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=[FakeClip(size=50_000) for _ in range(3)]))
    assert await receiver.post(delivery(rid)) == 202
    await receiver.settle(1)
    (outcome,) = receiver.outcomes
    assert outcome.status is RequestState.COMPLETED and outcome.error is None
    assert outcome.report is not None and outcome.report.ok
    assert_on_disk(fake_ssemble, tmp_path / "clips", rid)
    assert sum(fake_ssemble.calls.values()) == 1  # the confirmation; nothing else


async def test_duplicate_deliveries_cost_one_call_and_download_once(
    fake_ssemble: FakeSsembleAPI, receiver: Receiver
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=[FakeClip(size=80_000) for _ in range(2)]))
    async with anyio.create_task_group() as group:
        for _ in range(3):  # the three tries at once
            group.start_soon(receiver.post, delivery(rid))
    await receiver.settle(1)
    assert await receiver.post(delivery(rid)) == 202  # the same event, minutes later
    await anyio.sleep(0.2)
    assert len(receiver.outcomes) == 1
    assert fake_ssemble.calls["GET /shorts/:id"] == 1
    gets = [r for r in fake_ssemble.clip_requests if r.method == "GET"]
    assert len(gets) == 2  # each clip once


async def test_a_forged_id_costs_one_call_and_downloads_nothing(
    fake_ssemble: FakeSsembleAPI, receiver: Receiver, tmp_path: Path
) -> None:
    forged = "0123456789abcdef01234567"
    assert await receiver.post(delivery(forged, shorts=[{"id": "x", "video_url": "http://evil"}]))
    await receiver.settle(1)
    (outcome,) = receiver.outcomes
    assert outcome.status is RequestState.UNKNOWN and outcome.error is not None
    assert sum(fake_ssemble.calls.values()) == 1
    assert not fake_ssemble.clip_requests
    assert not (tmp_path / "clips").exists()


async def test_a_failed_event_is_confirmed_reported_and_nothing_downloaded(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), outcome="failed", failure_reason="too dark"))
    seen: list[ShortsRequest] = []
    receiver = Receiver()
    app = webhook_app(
        client,
        dest=tmp_path,
        on_request=seen.append,
        on_outcome=receiver.record,
    )
    async for _ in serve(app, receiver):
        assert await receiver.post(delivery(rid, "shorts.failed", failureReason="too dark")) == 202
        await receiver.settle(1)
    (request,) = seen
    assert request.status is RequestState.FAILED and request.failure_reason == "too dark"
    assert not fake_ssemble.clip_requests
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"event": "shorts.completed", "requestId": "../../etc"}', "application/json", 400),
        (b'{"requestId": "0123456789abcdef01234567"}', "application/json", 400),
        (b"{}", "text/plain", 415),
        (b'{"event": "' + b"x" * 300_000 + b'"}', "application/json", 413),
    ],
)
async def test_a_malformed_delivery_is_refused_and_nothing_happens(
    fake_ssemble: FakeSsembleAPI, receiver: Receiver, body: bytes, content_type: str, status: int
) -> None:
    assert await receiver.post(None, raw=body, content_type=content_type) == status
    await anyio.sleep(0.1)
    assert not receiver.outcomes
    assert not fake_ssemble.api_requests


async def test_many_jobs_at_once_are_bounded_and_every_clip_verified(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rids = [
        fake_ssemble.add_job(FakeJob(steps=(), clips=[FakeClip(size=30_000) for _ in range(3)]))
        for _ in range(12)
    ]
    active = peak = 0

    async def on_request(_: ShortsRequest) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.02)
        active -= 1

    receiver = Receiver()
    app = webhook_app(
        client,
        dest=tmp_path,
        on_request=on_request,
        on_outcome=receiver.record,
        concurrency=3,
    )
    async for _ in serve(app, receiver):
        async with anyio.create_task_group() as group:
            for rid in rids:
                group.start_soon(receiver.post, delivery(rid))
        await receiver.settle(12)
    assert peak <= 3
    assert fake_ssemble.calls["GET /shorts/:id"] == 12
    for rid in rids:
        assert_on_disk(fake_ssemble, tmp_path, rid)


async def test_shutdown_mid_download_leaves_resumable_state(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=2_000_000),)))
    fake_ssemble.inject_clip_fault(ClipFault(stall_at=600_000, stall_seconds=30))
    app = webhook_app(client, dest=tmp_path, chunk_size=64 * 1024)
    receiver = Receiver()
    async for served in serve(app, receiver):
        assert await served.post(delivery(rid)) == 202
        await wait_for_part(tmp_path, 589_824)  # 9 x 64 KiB written, then the host stalls
    # the app's cleanup cancelled the download and waited for it: a resumable .part stays
    (part,) = tmp_path.rglob("*.part")
    kept = part.stat().st_size
    assert 589_824 <= kept <= 600_000
    sent = sum(fake_ssemble.clip_bytes_sent.values())
    report = await client.download_many([rid], tmp_path)
    assert report.ok
    assert_on_disk(fake_ssemble, tmp_path, rid)
    assert sum(fake_ssemble.clip_bytes_sent.values()) - sent <= 2_000_000 - kept + 65_536


async def test_a_lost_delivery_is_reconciled(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    receiver = Receiver()
    app = webhook_app(
        client,
        dest=tmp_path,
        reconcile=60,
        on_outcome=receiver.record,
    )
    with _clock.instant_waits():
        async for _ in serve(app, receiver):
            rid = fake_ssemble.add_job(FakeJob(finishes_after=120, clips=(FakeClip(size=9000),)))
            await receiver.settle(1, seconds=30)  # no delivery: found by a look at the list
    (outcome,) = receiver.outcomes
    assert outcome.request_id == rid and outcome.source == "reconcile"
    assert_on_disk(fake_ssemble, tmp_path, rid)
    assert fake_ssemble.calls["GET /shorts/:id"] == 1
    assert rid in handled(app)


async def test_mounted_as_a_sub_app(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    service = web.Application()
    receiver = Receiver()
    service.add_subapp("/hooks", webhook_app(client, dest=tmp_path, on_outcome=receiver.record))
    async for served in serve(service, receiver):
        served.url = served.url.replace("/ssemble/webhook", "/hooks/ssemble/webhook")
        assert await served.post(delivery(rid)) == 202
        await served.settle(1)
    assert_on_disk(fake_ssemble, tmp_path, rid)


def test_parse_webhook_accepts_the_documented_payload() -> None:
    body = json.dumps(
        {
            "event": "shorts.completed",
            "requestId": "67D1F0A2B3C4D5E6F7A8B9C0",
            "status": "completed",
            "timestamp": "2025-03-02T09:20:11.000Z",
            "data": {
                "shorts": [
                    {
                        "id": "c1",
                        "title": "T",
                        "video_url": "https://x/1.mp4",
                        "duration": 31,
                        "viral_score": 8.7,
                        "new": True,
                    }
                ],
                "later": 1,
            },
            "version": 2,
        }
    ).encode()
    event = parse_webhook(body)
    assert event.request_id == "67d1f0a2b3c4d5e6f7a8b9c0"
    assert event.status is RequestState.COMPLETED
    assert event.timestamp == dt.datetime(2025, 3, 2, 9, 20, 11, tzinfo=dt.timezone.utc)
    (clip,) = event.shorts
    assert (clip.id, clip.viral_score, clip.duration, clip.extra) == (
        "c1",
        8.7,
        31.0,
        {"new": True},
    )
    assert event.extra == {"version": 2, "data": {"later": 1}}


def test_parse_webhook_failed_payload() -> None:
    body = (
        b'{"event":"shorts.failed","requestId":"67d1f0a2b3c4d5e6f7a8b9c0","status":"failed",'
        b'"data":{"failureReason":"404"}}'
    )
    event = parse_webhook(body)
    assert event.status is RequestState.FAILED and event.failure_reason == "404"
    assert event.shorts == ()


async def test_the_receiver_without_aiohttp_web(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    outcomes = Receiver()
    hook = WebhookReceiver(client, dest=tmp_path, on_outcome=outcomes.record)
    body = json.dumps(delivery(rid)).encode()
    assert hook.deliver(body, "application/json")[0] == 503  # not running yet
    async with hook:
        status, answer = hook.deliver(body, "application/json; charset=utf-8")
        assert (status, answer) == (202, {"received": rid})
        assert hook.deliver(body, "text/plain")[0] == 415
        await outcomes.settle(1)
    assert hook.deliver(body, "application/json")[0] == 503  # stopped
    assert rid in hook.handled
    assert_on_disk(fake_ssemble, tmp_path, rid)


# -- with the fake delivering, as Ssemble does -------------------------------------------------


async def test_end_to_end_create_with_a_webhook_url_then_clips_on_disk(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    fake_ssemble.auto_job = FakeJob(
        finishes_after=2, clips=(FakeClip(size=30_000), FakeClip(size=30_000))
    )
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record)
    async for served in serve(app, receiver):
        created = await client.create_short(
            url="https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            start=0,
            end=60,
            webhook_url=served.url,
        )
        await served.settle(1)  # no polling: the fake calls the receiver when the job ends
    rid = created.request_id
    assert_on_disk(fake_ssemble, tmp_path, rid)
    assert fake_ssemble.calls["GET /shorts/:id"] == 1
    assert fake_ssemble.calls["GET /shorts"] + fake_ssemble.calls["GET /shorts/:id/status"] == 0
    (sent,) = fake_ssemble.webhook_deliveries
    assert sent.acknowledged and sent.status == 202


async def test_a_receiver_down_for_the_first_try_gets_the_retry(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await site.stop()  # down: the first try finds nothing listening
    url = f"http://127.0.0.1:{port}/ssemble/webhook"
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=20_000),), webhook_url=url))
    await client.get_status(rid)  # the read that ends the job sends the delivery
    try:
        with anyio.fail_after(10):
            while not fake_ssemble.webhook_deliveries:  # noqa: ASYNC110 - a record, no event
                await anyio.sleep(0.01)
        assert fake_ssemble.webhook_deliveries[0].status is None  # refused
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()  # back up within the second before the retry
        await receiver.settle(1)
    finally:
        await runner.cleanup()
    assert [d.attempt for d in fake_ssemble.webhook_deliveries] == [1, 2]
    assert_on_disk(fake_ssemble, tmp_path, rid)


async def test_duplicated_and_forged_deliveries_from_the_fake(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record)
    async for served in serve(app, receiver):
        fake_ssemble.inject_webhook_fault(WebhookFault(duplicate=2, duplicate_after=0.05))
        rid = fake_ssemble.add_job(
            FakeJob(steps=(), clips=(FakeClip(size=20_000),), webhook_url=served.url)
        )
        await client.get_status(rid)
        assert await fake_ssemble.forge_webhook(served.url) == 202
        await fake_ssemble.deliveries_settled(timeout=30)
        await served.settle(2)
    by_source = {o.request_id: o for o in receiver.outcomes}
    assert by_source[rid].status is RequestState.COMPLETED
    forged = [o for o in receiver.outcomes if o.request_id != rid]
    assert len(forged) == 1 and forged[0].error is not None
    assert len([d for d in fake_ssemble.webhook_deliveries if not d.forged]) == 3
    assert fake_ssemble.calls["GET /shorts/:id"] == 2  # one for the job, one for the forgery
    gets = [r for r in fake_ssemble.clip_requests if r.method == "GET"]
    assert len(gets) == 1  # the real clip, once; the forged clips never


# -- what the review found ---------------------------------------------------------------------


async def test_a_confirmation_the_api_fails_is_tried_again(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    fake_ssemble.inject_api_fault(ApiFault(status=502, times=6, path_prefix=f"/shorts/{rid}"))
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record)
    with _clock.instant_waits():
        async for served in serve(app, receiver):
            assert await served.post(delivery(rid)) == 202
            assert await served.post(delivery(rid)) == 202  # while it fails: the same work
            await served.settle(1)
    (outcome,) = receiver.outcomes
    assert outcome.status is RequestState.COMPLETED and outcome.report is not None
    assert_on_disk(fake_ssemble, tmp_path, rid)


async def test_a_flood_of_ids_is_bounded(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    gate = anyio.Event()
    rid = fake_ssemble.add_job(FakeJob(steps=()))

    async def hold(_: ShortsRequest) -> None:
        await gate.wait()

    hook = WebhookReceiver(client, on_request=hold, concurrency=1)
    async with hook:
        assert hook.deliver(json.dumps(delivery(rid)).encode(), "application/json")[0] == 202
        statuses = [
            hook.deliver(json.dumps(delivery(f"{n:024x}")).encode(), "application/json")[0]
            for n in range(1, 200)
        ]
        assert statuses.count(202) == hook.max_pending - 1
        assert set(statuses[hook.max_pending - 1 :]) == {503}
        assert len(hook.running) == hook.max_pending
        gate.set()


async def test_a_delivery_for_a_running_job_holds_nothing(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    running = fake_ssemble.add_job(FakeJob(finishes_after=600))
    done = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record, concurrency=1)
    async for served in serve(app, receiver):
        assert await served.post(delivery(running)) == 202  # forged, or replayed early
        assert await served.post(delivery(done)) == 202
        await served.settle(1, seconds=5)
        assert [o.request_id for o in receiver.outcomes] == [done]
        assert running not in handled(app)  # its real delivery, when it ends, is handled
    assert fake_ssemble.calls["GET /shorts/:id"] == 2
    assert fake_ssemble.calls["GET /shorts/:id/status"] + fake_ssemble.calls["GET /shorts"] == 0


async def test_the_next_run_resumes_a_download_cut_at_shutdown(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=2_000_000),)))
    fake_ssemble.inject_clip_fault(ClipFault(stall_at=600_000, stall_seconds=30))
    first = Receiver()
    async for served in serve(webhook_app(client, dest=tmp_path, chunk_size=64 * 1024), first):
        assert await served.post(delivery(rid)) == 202
        await wait_for_part(tmp_path, 589_824)
    # a new receiver on the same folder, no delivery, no reconciliation: it takes it up
    second = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=second.record)
    async for served in serve(app, second):
        await served.settle(1)
    (outcome,) = second.outcomes
    assert outcome.source == "resume" and outcome.report is not None and outcome.report.ok
    assert_on_disk(fake_ssemble, tmp_path, rid)


async def test_a_failed_download_is_tried_again_by_a_later_delivery(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    fake_ssemble.inject_clip_fault(ClipFault(status=410, times=20))  # the host refuses it all
    receiver = Receiver()
    app = webhook_app(client, dest=tmp_path, on_outcome=receiver.record)
    async for served in serve(app, receiver):
        assert await served.post(delivery(rid)) == 202
        await served.settle(1)
        assert receiver.outcomes[0].report is not None and not receiver.outcomes[0].report.ok
        fake_ssemble.clear_clip_faults()
        assert await served.post(delivery(rid)) == 202
        await served.settle(2)
    assert receiver.outcomes[1].report is not None and receiver.outcomes[1].report.ok
    assert_on_disk(fake_ssemble, tmp_path, rid)


async def test_reconcile_must_be_a_positive_interval(client: Client) -> None:
    for bad in (-1, 0.0):
        with pytest.raises(ValueError, match="reconcile"):
            WebhookReceiver(client, reconcile=bad)


async def test_a_sub_app_refuses_a_huge_body_whatever_the_parent_allows(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    service = web.Application(client_max_size=50 * 1024 * 1024)
    service.add_subapp("/hooks", webhook_app(client))
    receiver = Receiver()
    async for served in serve(service, receiver):
        served.url = served.url.replace("/ssemble/webhook", "/hooks/ssemble/webhook")
        assert await served.post(None, raw=b"{" + b" " * 600_000 + b"}") == 413
    assert not fake_ssemble.api_requests
