"""Output a person can copy: unwrapped export lines, ``-q`` printing the essential results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import environment, run_in_pty, ssemble

pytestmark = pytest.mark.anyio


def test_fake_server_export_lines_are_whole_on_an_80_column_terminal() -> None:
    master, slave = os.openpty()
    env = environment(None, TERM="xterm-256color", COLUMNS="80", LINES="24")
    key = "sk_ssemble_" + "k" * 60  # long enough to be wrapped at 80 columns
    command = [sys.executable, "-m", "ssemble_async", "fake-server", "--api-key", key]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    drawn = b""
    try:
        deadline = time.monotonic() + 20
        while b"Ctrl-C" not in drawn and time.monotonic() < deadline:
            drawn += os.read(master, 65536)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        os.close(master)
    lines = drawn.decode(errors="replace").replace("\r", "").splitlines()
    assert f"export SSEMBLE_API_KEY={key}" in lines
    assert any(line.startswith("export SSEMBLE_BASE_URL=http://127.0.0.1:") for line in lines)


async def test_quiet_create_prints_the_new_id(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble(
        "create",
        "--url",
        "https://www.youtube.com/watch?v=abc",
        "--start",
        "0",
        "--end",
        "60",
        "-q",
        fake=fake_ssemble,
    )
    assert result.code == 0, result.err
    (line,) = result.out.splitlines()
    assert line in fake_ssemble.jobs


async def test_quiet_list_prints_the_ids(fake_ssemble: FakeSsembleAPI) -> None:
    rids = {fake_ssemble.add_job(FakeJob(steps=())) for _ in range(3)}
    result = await ssemble("list", "-q", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert set(result.out.splitlines()) == rids


async def test_quiet_download_prints_the_file_paths(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    clips = (FakeClip(size=9000), FakeClip(size=9000), FakeClip(error=True))
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=clips))
    result = await ssemble("download", rid, "-o", str(tmp_path), "-q", fake=fake_ssemble)
    assert result.code == 0, result.err
    paths = result.out.splitlines()
    assert sorted(paths) == sorted(str(p) for p in tmp_path.rglob("*.mp4"))
    assert len(paths) == 2  # the error clip has no file


async def test_ids_are_never_cut_on_an_80_column_terminal() -> None:
    long_title = "A Very Long Clip Title That Goes On And On Past Any Reasonable Width"
    async with FakeSsembleAPI() as fake:
        clips = tuple(FakeClip(title=long_title, size=4096) for _ in range(3))
        rids = [
            fake.add_job(
                FakeJob(steps=(), clips=clips, url="https://www.youtube.com/watch?v=" + "x" * 60)
            )
            for _ in range(3)
        ]
        env = environment(fake, TERM="xterm-256color", COLUMNS="80", LINES="40")
        code, listed = await anyio.to_thread.run_sync(run_in_pty, ["list"], env)
        assert code == 0, listed
        code, shown = await anyio.to_thread.run_sync(run_in_pty, ["get", rids[0]], env)
        assert code == 0, shown
    for rid in rids:
        assert rid in listed  # whole, on one line
    for clip_id in fake.jobs[rids[0]].clips:
        assert clip_id in shown
    assert "…" in listed or "..." in listed  # the URLs gave way instead
