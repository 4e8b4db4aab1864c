"""Create a job, wait for it and list its clips, against the built-in fake API.

Runs with no key and no network: ``python3 examples/quickstart.py``. To run it against the
real API, replace the fake with ``Client()`` and set ``SSEMBLE_API_KEY``.
"""

from __future__ import annotations

import asyncio

from ssemble_async import Client, PollPolicy, RequestStatus
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

DEMO_JOB = FakeJob(
    seconds_per_step=0.4,
    clips=(
        FakeClip(title="The Week Everything Broke", viral_score=91),
        FakeClip(title="Why Caching Saved Us", viral_score=78),
        FakeClip(title="Our Worst Launch", viral_score=64),
        FakeClip(title="A Clip That Failed", error=True, error_message="Render failed"),
    ),
)


def show(status: RequestStatus) -> None:
    print(f"  {status.progress or 0:>3.0f}%  {status.step or status.status_raw}")


async def main() -> None:
    async with (
        FakeSsembleAPI(auto_job=DEMO_JOB) as fake,
        Client(
            fake.api_key, base_url=fake.base_url, poll=PollPolicy(initial=0.25, maximum=0.5)
        ) as client,
    ):
        job = await client.create_short(
            url="https://www.youtube.com/watch?v=dQw4w9WgXcQ", start=0, end=600
        )
        print(f"created request {job.request_id} ({job.status})")
        request = await client.wait_for_completion(job.request_id, timeout=60, on_progress=show)
        print(f"\n{request.title!r}: {len(request.shorts)} clips, best first")
        for short in request.shorts_by_score():
            where = short.video_url if short.is_downloadable else f"error: {short.error_message}"
            print(f"  {short.viral_score or 0:>5.1f}  {short.title:<28} {where}")
        assert client.rate_limit is not None
        print(f"\ncalls left this hour: {client.rate_limit.remaining_hour}")


if __name__ == "__main__":
    asyncio.run(main())
