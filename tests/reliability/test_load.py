"""Load: ``download_many`` over 200 requests x 10 small clips with concurrency 32.

The fake API runs in the test's event loop; the client runs in a child process
(``_load_child.py``) so that its memory, file descriptors and tasks are measured alone,
with nothing of the fake or of pytest mixed in.

Memory is checked two ways. The peak RSS of the whole run (``VmHWM``) minus the RSS before
it must stay under a fixed bound; and, since a fixed bound alone says little when the
clips add up to only 8 MB, the same download at a tenth of the size runs first, and the
large run's peak growth may exceed the small one's only by what a report and manifests of
ten times more clips take (a few MiB): memory must not grow with the bytes downloaded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import sha

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("_load_child.py")
CLIPS_PER_REQUEST = 10
CLIP_SIZE = 4_000
CONCURRENCY = 32
MiB = 1024


def add_requests(fake: FakeSsembleAPI, count: int) -> list[str]:
    return [
        fake.add_job(
            FakeJob(
                steps=(),
                clips=tuple(
                    FakeClip(size=CLIP_SIZE + i, viral_score=i) for i in range(CLIPS_PER_REQUEST)
                ),
            )
        )
        for _ in range(count)
    ]


async def run_child(fake: FakeSsembleAPI, dest: Path, rids: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    command = [
        *(sys.executable, "-W", "always::ResourceWarning", str(CHILD)),
        *(fake.base_url, fake.api_key, str(dest), str(CONCURRENCY), *rids),
    ]
    done = await anyio.run_process(command, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    # Nothing was left for the garbage collector to close (an unclosed session, a file).
    assert "ResourceWarning" not in done.stderr.decode()
    assert "Unclosed" not in done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_200_requests_of_10_clips(fake_ssemble: FakeSsembleAPI, tmp_path: Path) -> None:
    fake = fake_ssemble
    small = await run_child(fake, tmp_path / "small", add_requests(fake, 20))
    rids = add_requests(fake, 200)
    with anyio.fail_after(60):
        large = await run_child(fake, tmp_path / "large", rids)

    # All complete, byte-identical.
    assert large["ok"], large["request_errors"]
    assert large["counts"]["downloaded"] == 200 * CLIPS_PER_REQUEST
    assert large["transferred"] == sum(
        len(fake.clip_bytes(rid, c)) for rid in rids for c in fake.jobs[rid].clips
    )
    for rid in rids:
        for clip_id in fake.jobs[rid].clips:
            path = tmp_path / "large" / rid / f"{clip_id}.mp4"
            assert sha(path.read_bytes()) == sha(fake.clip_bytes(rid, clip_id))
    assert not list((tmp_path / "large").rglob("*.part"))

    # No descriptor, no task left behind once the client is closed.
    assert large["fds_after"] == large["fds_before"]
    assert large["tasks_after"] == large["tasks_before"] == []

    # Memory: bounded, and flat in the bytes downloaded.
    growth = large["peak_kib"] - large["rss_before_kib"]
    small_growth = small["peak_kib"] - small["rss_before_kib"]
    assert growth < 48 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert growth < small_growth + 10 * MiB, (growth, small_growth)
    assert small["ok"] and small["fds_after"] == small["fds_before"]
