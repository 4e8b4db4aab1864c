"""``plan_downloads``: what a download would fetch, where and how many bytes; nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from ssemble_async import (
    Client,
    ClipState,
    PlannedAction,
    RequestNotReadyError,
)
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            stat = (Path(folder) / name).stat()
            found[str((Path(folder) / name).relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def sizes_job(fake: FakeSsembleAPI, *sizes: int, **clip: object) -> str:
    clips = tuple(
        FakeClip(size=size, viral_score=90 - n, **clip)  # type: ignore[arg-type]
        for n, size in enumerate(sizes)
    )
    return fake.add_job(FakeJob(steps=(), clips=clips))


async def test_a_plan_writes_nothing_and_matches_the_download_that_follows(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    first = sizes_job(fake_ssemble, 70_001, 130_003, 90_007)
    second = sizes_job(fake_ssemble, 65_537)
    dest = tmp_path / "clips"
    fake_ssemble.reset_counters()
    plan = await client.plan_downloads([first, second], dest, name="{rank}-{title}")
    assert not dest.exists()  # not even the folder
    assert sum(fake_ssemble.calls.values()) == 2  # one read per request, no more
    assert {clip.action for clip in plan.clips} == {PlannedAction.DOWNLOAD}
    assert plan.to_fetch == 70_001 + 130_003 + 90_007 + 65_537
    assert plan.unknown_sizes == 0 and not plan.request_errors
    report = await client.download_many([first, second], dest, name="{rank}-{title}")
    planned = {(c.request_id, c.clip_id): (c.path, c.size) for c in plan.clips}
    done = {(o.request_id, o.clip_id): (o.path, o.size) for o in report.outcomes}
    assert planned == done
    assert report.transferred == plan.to_fetch


async def test_after_a_download_the_plan_is_present_without_an_api_call(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = sizes_job(fake_ssemble, 70_001, 80_021)
    await client.download_many([rid], tmp_path)
    before = tree(tmp_path)
    fake_ssemble.reset_counters()
    plan = await client.plan_downloads([rid], tmp_path)
    assert sum(fake_ssemble.calls.values()) == 0
    assert [clip.action for clip in plan.clips] == [PlannedAction.PRESENT] * 2
    assert plan.to_fetch == 0
    assert sorted(c.size or 0 for c in plan.clips) == [70_001, 80_021]
    assert tree(tmp_path) == before
    # overwrite plans every clip again, still without writing
    plan = await client.plan_downloads([rid], tmp_path, overwrite=True)
    assert [clip.action for clip in plan.clips] == [PlannedAction.DOWNLOAD] * 2
    assert plan.to_fetch == 70_001 + 80_021
    assert tree(tmp_path) == before


async def test_a_cut_transfer_is_planned_as_a_resume_of_what_is_left(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = sizes_job(fake_ssemble, 40_000, 3_000_000)
    big = fake_ssemble.jobs[rid].job.clips[1].clip_id
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=big, stall_at=1_000_000, stall_seconds=60))
    with anyio.move_on_after(1):
        await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    before = tree(tmp_path)
    plan = await client.plan_downloads([rid], tmp_path)
    actions = {clip.clip_id: clip for clip in plan.clips}
    assert actions[big].action is PlannedAction.RESUME
    assert actions[big].size == 3_000_000
    assert actions[big].to_fetch == 2_000_000
    assert plan.to_fetch == 2_000_000
    assert tree(tmp_path) == before
    report = await client.download_shorts(rid, tmp_path)
    assert report.transferred == plan.to_fetch


async def test_error_and_rerendering_clips_and_unready_requests_are_told_apart(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(
        FakeJob(
            steps=(),
            clips=(
                FakeClip(viral_score=80),
                FakeClip(viral_score=70, error=True, error_message="render failed"),
                FakeClip(viral_score=60, recompiling_reads=5),
            ),
        )
    )
    queued = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    plan = await client.plan_downloads([rid, queued], tmp_path)
    assert [c.action for c in plan.clips] == [
        PlannedAction.DOWNLOAD,
        PlannedAction.SKIP_ERROR,
        PlannedAction.NOT_READY,
    ]
    assert [c.to_fetch for c in plan.clips] == [64 * 1024, 0, 0]
    assert isinstance(plan.request_errors[queued], RequestNotReadyError)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


async def test_a_host_that_says_no_size_leaves_the_size_unknown(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = sizes_job(fake_ssemble, 70_001, 80_021)
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, status=405, body=b"no HEAD"))
    plan = await client.plan_downloads([rid], tmp_path)
    unknown = [c for c in plan.clips if c.to_fetch is None]
    assert [c.clip_id for c in unknown] == [clip_id]
    assert plan.unknown_sizes == 1 and plan.to_fetch == 80_021
    report = await client.download_many([rid], tmp_path)
    assert report.counts()[ClipState.DOWNLOADED] == 2
