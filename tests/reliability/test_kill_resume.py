"""Kill and resume: ``ssemble download`` SIGKILLed mid-transfer, then run again.

The fake runs in the test's event loop with a throttled clip host, so the first run is
caught with every large clip half-way. A SIGKILL gives the process no chance to clean up:
what it left (``.part`` files, manifests) is all the second run has. The second run must end
with byte-identical files while fetching only what was missing, resuming each ``.part`` from
its size with ``Range`` (and ``If-Range``).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from ssemble_async._manifest import load_manifest
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import FinalNameWatch, environment, resumable_parts, sha

pytestmark = pytest.mark.anyio

SIZES = (1_600_000, 1_200_000, 30_000)
LARGE = 2  # the first two clips of each request are still in flight at the kill


async def test_sigkill_mid_transfer_then_resume(tmp_path: Path) -> None:
    dest = tmp_path / "clips"
    async with FakeSsembleAPI(clip_bytes_per_second=600_000) as fake:
        rids = [
            fake.add_job(FakeJob(steps=(), clips=tuple(FakeClip(size=s) for s in SIZES)))
            for _ in range(2)
        ]
        clips = {rid: [c.clip_id for c in fake.jobs[rid].job.clips] for rid in rids}
        expected = {
            dest / rid / f"{clip_id}.mp4": fake.clip_bytes(rid, clip_id)
            for rid in rids
            for clip_id in clips[rid]
        }
        large_parts = [
            dest / rid / f"{clip_id}.mp4.part" for rid in rids for clip_id in clips[rid][:LARGE]
        ]
        command = [
            *(sys.executable, "-m", "ssemble_async", "download", *rids),
            *("-o", str(dest), "--json", "--chunk-size", "64k"),
        ]

        def has_bytes(path: Path) -> bool:
            try:
                return path.stat().st_size >= 64 * 1024
            except FileNotFoundError:
                return False

        with FinalNameWatch(dest, expected) as watch:
            async with await anyio.open_process(command, env=environment(fake)) as process:
                with anyio.fail_after(30):
                    while not all(has_bytes(part) for part in large_parts):
                        assert process.returncode is None, "the download ended before the kill"
                        await anyio.sleep(0.02)
                process.send_signal(signal.SIGKILL)
                with anyio.fail_after(10):
                    assert await process.wait() == -signal.SIGKILL
        assert watch.problems == []  # nothing partial under a final name, even at the kill

        # What the killed run left: parts of the large clips, recorded as resumable with
        # the validator their bytes came with. A clip no larger than one write is never
        # resumable (it is fetched again whole), whatever .part it left.
        parts = resumable_parts(dest)
        assert set(large_parts) <= set(parts)
        for rid in rids:
            state = load_manifest(dest / rid)
            for clip_id in clips[rid][:LARGE]:
                partial = state.clips[clip_id].partial
                assert partial is not None
                assert partial.validator == fake.jobs[rid].clips[clip_id].etag
        done_before = {path for path in expected if path.exists()}
        assert sum(parts.values()) < sum(len(data) for data in expected.values())

        fake.clip_bytes_per_second = None
        seen = len(fake.clip_requests)
        with anyio.fail_after(60):
            again = await anyio.run_process(command, env=environment(fake), check=False)
        resumed_requests = [r for r in fake.clip_requests[seen:] if r.method == "GET"]

    assert again.returncode == 0, again.stderr.decode()
    report = json.loads(again.stdout)
    assert report["ok"] is True
    for path, data in expected.items():
        assert sha(path.read_bytes()) == sha(data)
    assert not list(dest.rglob("*.part"))

    # Each clip fetched exactly what was missing: the rest of its .part, all of it, or none.
    by_path = {Path(o["path"]): o for o in report["outcomes"]}
    assert set(by_path) == set(expected)
    total = sum(len(data) for data in expected.values())
    want_transferred = 0
    for path, data in expected.items():
        outcome = by_path[path]
        part = path.with_name(path.name + ".part")
        if path in done_before and outcome["state"] == "already_present":
            assert outcome["transferred"] == 0
        elif part in parts:
            assert outcome["state"] == "downloaded"
            assert outcome["transferred"] == len(data) - parts[part]
        else:
            assert outcome["transferred"] == len(data)
        want_transferred += outcome["transferred"]
    assert report["transferred"] == want_transferred
    assert report["transferred"] <= total - sum(parts.values())
    assert report["transferred"] < total

    # ... and asked for it with Range, validated by If-Range.
    resumed = {
        r.path.rsplit("/", 1)[1]: (r.headers.get("Range"), r.headers.get("If-Range"))
        for r in resumed_requests
    }
    for part, size in parts.items():
        if size == 0:
            continue
        rid, clip_id = part.parent.name, part.name.removesuffix(".mp4.part")
        assert resumed[f"{clip_id}.mp4"] == (f"bytes={size}-", fake.jobs[rid].clips[clip_id].etag)
    assert len(resumed_requests) == len(resumed)  # one request per clip fetched, no retries
