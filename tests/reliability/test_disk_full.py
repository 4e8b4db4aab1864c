"""A disk that fills up under a multi-request download with several transfers at once.

The destination is a 1.5 MiB tmpfs (mounting one needs root and mount(8); the test is
skipped, saying why, where the machine does not allow it) and the clips add up to 2.7 MB.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from ssemble_async import Client, ClipState, RetryPolicy, instant_waits
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import FinalNameWatch, sha

pytestmark = pytest.mark.anyio

CLIP_SIZE = 300_000
REQUESTS, CLIPS = 3, 3


@pytest.fixture
def small_disk(make_tmpfs: Callable[[str], Path]) -> Path:
    """A 1.5 MiB tmpfs."""
    return make_tmpfs("1536k")


async def test_full_disk_under_concurrent_requests(
    fake_ssemble: FakeSsembleAPI, small_disk: Path
) -> None:
    fake = fake_ssemble
    rids = [
        fake.add_job(FakeJob(steps=(), clips=tuple(FakeClip(size=CLIP_SIZE) for _ in range(CLIPS))))
        for _ in range(REQUESTS)
    ]
    expected = {
        small_disk / rid / f"{clip.clip_id}.mp4": fake.clip_bytes(rid, clip.clip_id)
        for rid in rids
        for clip in fake.jobs[rid].job.clips
    }
    total = sum(len(data) for data in expected.values())
    with instant_waits():
        async with Client(
            fake.api_key,
            base_url=fake.base_url,
            retry=RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1, jitter=0),
        ) as client:
            with FinalNameWatch(small_disk, expected) as watch:
                report = await client.download_many(
                    rids, small_disk, concurrency=3, chunk_size=64 * 1024
                )
            assert watch.problems == []

            assert not report.ok
            assert len(report.outcomes) == REQUESTS * CLIPS
            failed = report.by_state(ClipState.FAILED)
            downloaded = report.by_state(ClipState.DOWNLOADED)
            assert failed, "the disk never filled up"
            assert downloaded, "nothing finished before the disk filled up"
            assert len(failed) + len(downloaded) == len(report.outcomes)
            for outcome in failed:
                assert "disk is full" in (outcome.message or ""), outcome.message
                assert isinstance(outcome.error, OSError)
                assert outcome.path is not None and not outcome.path.exists()
            for outcome in downloaded:  # finished files are intact
                assert outcome.path is not None
                assert sha(outcome.path.read_bytes()) == sha(expected[outcome.path])
                assert outcome.message is None or "disk is full" in outcome.message
            finished_before = {o.path for o in downloaded}

            await anyio.run_process(["mount", "-o", "remount,size=8m", str(small_disk)])
            with FinalNameWatch(small_disk, expected) as watch:
                again = await client.download_many(rids, small_disk, concurrency=3)
            assert watch.problems == []

    assert again.ok
    assert {o.state for o in again.outcomes} <= {ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT}
    for path, data in expected.items():
        assert sha(path.read_bytes()) == sha(data)
    assert not list(small_disk.rglob("*.part"))
    assert not list(small_disk.rglob("*.tmp"))
    present = {o.path for o in again.by_state(ClipState.ALREADY_PRESENT)}
    assert present and present <= finished_before  # what finished is not fetched again
    assert again.transferred <= total - len(present) * CLIP_SIZE
