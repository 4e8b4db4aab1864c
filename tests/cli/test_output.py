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


@pytest.mark.parametrize("command", [["get", "--json"], ["download", "-q"]])
async def test_a_reader_that_stops_early_ends_the_command_quietly(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, command: list[str]
) -> None:
    """``ssemble get ID --json | head -1``: ``head`` takes its line and is gone while the
    rest of the output is still being written. Before: ``ssemble: error: [Errno 32] Broken
    pipe`` and exit 1 (or Python's "Exception ignored ... BrokenPipeError"). Now the
    command stops like any tool ended by SIGPIPE: nothing on stderr, exit 141; a download
    keeps the clips it finished (the same command resumes)."""
    sentences = tuple((i, i + 1.0, f"sentence {i} " + "word " * 12) for i in range(4000))
    clips = tuple(FakeClip(size=20_000) for _ in range(700)) if "download" in command else ()
    rid = fake_ssemble.add_job(FakeJob(steps=(), sentences=sentences, **_maybe(clips=clips)))
    argv = [sys.executable, "-m", "ssemble_async", command[0], rid, *command[1:]]
    if "download" in command:
        argv += ["-o", str(tmp_path)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "stdin": subprocess.DEVNULL}
    env = environment(fake_ssemble)
    del env["PYTHONUNBUFFERED"]  # as a user runs it: stdout buffered into the pipe
    run = subprocess.Popen(argv, env=env, **pipes)  # type: ignore[call-overload]  # noqa: ASYNC220
    assert run.stdout is not None
    try:
        with anyio.fail_after(60):  # blocking reads in a thread: the fake serves on this loop
            first = await anyio.to_thread.run_sync(run.stdout.read1, 4096)
            run.stdout.close()  # `head -1` has its line and is gone
            errors = await anyio.to_thread.run_sync(run.stderr.read)  # type: ignore[union-attr]
            code = await anyio.to_thread.run_sync(run.wait)
    finally:
        run.kill()
        run.wait()
        for pipe in (run.stdout, run.stderr):
            pipe.close()  # type: ignore[union-attr]
    assert first
    assert errors == b"", errors.decode()
    assert code == 141
    if "download" in command:
        again = await ssemble(*command, rid, "-o", str(tmp_path), fake=fake_ssemble)
        assert again.code == 0, again.err
        assert len(again.out.splitlines()) == len(clips)


def _maybe(**fields: object) -> dict[str, object]:
    """The fields that are not empty (a job without clips keeps the fake's default ones)."""
    return {name: value for name, value in fields.items() if value}
