"""Idempotent re-runs, resuming what an earlier run left, cancellation and a full disk."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from ssemble_async import Client, ClipState
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from .conftest import assert_files_match, final_files, sha

pytestmark = pytest.mark.anyio


def job(fake: FakeSsembleAPI, *sizes: int) -> str:
    return fake.add_job(FakeJob(steps=(), clips=tuple(FakeClip(size=s) for s in sizes)))


def clip_gets(fake: FakeSsembleAPI) -> list[dict[str, str]]:
    return [dict(r.headers) for r in fake.clip_requests if r.method == "GET"]


async def test_second_run_downloads_nothing(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 100_000, 200_000, 300_000)
    first = await client.download_shorts(rid, tmp_path)
    assert first.counts()[ClipState.DOWNLOADED] == 3
    fetched = len(fake_ssemble.clip_requests)
    second = await client.download_shorts(rid, tmp_path)
    assert second.counts()[ClipState.ALREADY_PRESENT] == 3
    assert second.ok
    assert second.transferred == 0
    assert len(fake_ssemble.clip_requests) == fetched
    assert_files_match(fake_ssemble, second)
    assert {o.size for o in second.outcomes} == {100_000, 200_000, 300_000}


async def test_changed_or_missing_files_are_fetched_again(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 100_000, 200_000, 300_000)
    first = await client.download_shorts(rid, tmp_path)
    damaged, removed, kept = (o.path for o in first.outcomes)
    assert damaged is not None and removed is not None and kept is not None
    with damaged.open("r+b") as file:  # same size, other bytes, newer mtime
        file.seek(1000)
        file.write(b"XXXX")
    os.utime(damaged, ns=(1, 1))
    removed.unlink()
    second = await client.download_shorts(rid, tmp_path)
    states = {o.path: o.state for o in second.outcomes}
    assert states == {
        damaged: ClipState.DOWNLOADED,
        removed: ClipState.DOWNLOADED,
        kept: ClipState.ALREADY_PRESENT,
    }
    assert_files_match(fake_ssemble, second)


async def test_overwrite_downloads_again(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 50_000, 60_000)
    await client.download_shorts(rid, tmp_path)
    again = await client.download_shorts(rid, tmp_path, overwrite=True)
    assert again.counts()[ClipState.DOWNLOADED] == 2
    assert again.transferred == 110_000


async def test_cancelled_run_leaves_no_partial_final_file_and_resumes(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 40_000, 3_000_000, 3_000_000)
    big = [c.clip_id for c in fake_ssemble.jobs[rid].job.clips[1:]]
    for clip_id in big:
        fake_ssemble.inject_clip_fault(
            ClipFault(clip_id=clip_id, stall_at=1_000_000, stall_seconds=60)
        )
    with anyio.move_on_after(1):
        await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    for path in final_files(tmp_path):  # whatever is under a final name is complete
        served = fake_ssemble.clip_bytes(rid, path.stem)
        assert sha(path.read_bytes()) == sha(served)
    parts = sorted(tmp_path.rglob("*.part"))
    assert len(parts) == 2
    assert all(p.stat().st_size == 1_000_000 for p in parts)
    manifest = json.loads((tmp_path / rid / "manifest.json").read_text())
    assert all(manifest["clips"][c]["partial"]["validator"] for c in big)
    before = len(clip_gets(fake_ssemble))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    resumed = clip_gets(fake_ssemble)[before:]
    assert sorted(h["Range"] for h in resumed) == ["bytes=1000000-"] * 2
    assert all(h["If-Range"] for h in resumed)
    assert report.transferred == 2 * 2_000_000
    assert not list(tmp_path.rglob("*.part"))


async def test_resumed_part_with_a_corrupt_start_is_fetched_again(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 3_000_000)
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, stall_at=1_000_000, stall_seconds=60))
    with anyio.move_on_after(1):
        await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    (part,) = tmp_path.rglob("*.part")
    with part.open("r+b") as file:  # damage the start of what the first run kept
        file.write(b"JUNKJUNKJUNK")
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    ranges = [h.get("Range") for h in clip_gets(fake_ssemble)[1:]]
    assert ranges == ["bytes=1000000-", None]  # resumed, found the start bad, started over


async def test_stray_part_without_a_validator_is_discarded(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 100_000)
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    (tmp_path / rid).mkdir()
    (tmp_path / rid / f"{clip_id}.mp4.part").write_bytes(b"junk" * 1000)
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert "Range" not in clip_gets(fake_ssemble)[0]


async def test_corrupt_manifest_is_ignored(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble, 10_000)
    await client.download_shorts(rid, tmp_path)
    (tmp_path / rid / "manifest.json").write_text("{not json")
    report = await client.download_shorts(rid, tmp_path)
    assert report.counts()[ClipState.DOWNLOADED] == 1
    assert json.loads((tmp_path / rid / "manifest.json").read_text())["clips"]


@pytest.fixture
def small_disk(make_tmpfs: Callable[[str], Path]) -> Path:
    """A 1 MiB tmpfs."""
    return make_tmpfs("1m")


async def test_full_disk_fails_clips_clearly_and_a_rerun_completes(
    fake_ssemble: FakeSsembleAPI, client: Client, small_disk: Path
) -> None:
    rid = job(fake_ssemble, 300_000, 300_000, 300_000, 300_000, 300_000)
    report = await client.download_shorts(rid, small_disk, concurrency=1, chunk_size=64 * 1024)
    failed = report.by_state(ClipState.FAILED)
    assert failed
    assert all("disk is full" in (o.message or "") for o in failed)
    finished = [o for o in report.outcomes if o.state is ClipState.DOWNLOADED]
    assert finished
    assert_files_match(fake_ssemble, report)  # what finished is intact
    for path in final_files(small_disk):
        assert sha(path.read_bytes()) == sha(fake_ssemble.clip_bytes(rid, path.stem))
    await anyio.run_process(["mount", "-o", "remount,size=4m", str(small_disk)])
    again = await client.download_shorts(rid, small_disk)
    assert again.ok
    assert_files_match(fake_ssemble, again)
    assert len(final_files(small_disk)) == 5
