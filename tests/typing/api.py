"""Never run: type-checked with mypy --strict to prove the public API types as users see it."""

from __future__ import annotations

import datetime as dt

import aiohttp

import ssemble_async
from ssemble_async import (
    Client,
    ConnectionSettings,
    CreatedRequest,
    PollPolicy,
    QuotaBudget,
    QuotaGovernor,
    QuotaPolicy,
    RateLimit,
    RequestState,
    RequestStatus,
    RetryPolicy,
    Short,
    ShortsRequest,
    SsembleError,
    Template,
    Timeouts,
)


async def use_everything(session: aiohttp.ClientSession) -> None:
    async with Client(
        "sk_ssemble_x",
        base_url="http://127.0.0.1:1/api/v1",
        session=session,
        retry=RetryPolicy(attempts=3),
        timeouts=Timeouts(read=30),
        quota=QuotaPolicy(on_exhausted="raise"),
        poll=PollPolicy(initial=5),
        connection=ConnectionSettings(trust_env=False),
        download_connection=ConnectionSettings(proxy="http://proxy:3128", limit_per_host=4),
    ) as client:
        created: CreatedRequest = await client.create_short(
            url="https://youtu.be/x", start=0, end=60
        )
        status: RequestStatus = await client.get_status(created.request_id)
        done: bool = status.status is RequestState.COMPLETED
        request: ShortsRequest = await client.wait_for_completion(
            created.request_id, timeout=600, on_progress=lambda s: None
        )
        async for result in client.wait_for_many([created.request_id, request], timeout=60):
            ended: ShortsRequest | SsembleError = result
            assert ended is not None
        budget: QuotaBudget = client.quota
        left: int | None = budget.remaining
        governor: QuotaGovernor = client.quota_governor
        assert left is None or governor is not None
        best: list[Short] = request.shorts_by_score()
        score: float | None = best[0].viral_score
        async for summary in client.list_requests(status="completed", page_size=50):
            when: dt.datetime | None = summary.created_at
        templates: list[Template] = await client.list_templates()
        async for track in client.list_music():
            name: str = track.name
        await client.delete_request(created.request_id, missing_ok=True)
        limit: RateLimit | None = client.rate_limit
        with ssemble_async.instant_waits():
            pass
        del done, score, when, templates, name, limit
