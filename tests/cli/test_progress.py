"""Progress a person can trust: the live display's rate and ETA on a real terminal, the
lines of a log when stdout is a pipe, and what the program waits for on stderr."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import ESC, assert_one_line_error, environment, ssemble

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
#: An escape sequence that does not move the cursor to a new line (colours, styles).
STYLE = re.compile(r"\x1b\[[0-9;]*m")
#: What ends a line on a terminal: a new line, a return, a cursor movement.
LINE_BREAK = re.compile(r"\r\n|\r|\n|\x1b\[[0-9;?]*[A-Za-z]")
RATE = re.compile(r"\d+(\.\d)? (MiB|KiB|B)/s")


def run_on_terminal(
    args: Sequence[str], env: Mapping[str, str], *, columns: int = 80, timeout: float = 60
) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal of ``columns`` columns; return its exit code
    and everything it drew. Killed after ``timeout`` seconds."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    command = [sys.executable, "-m", "ssemble_async", *args]
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=dict(env))
    os.close(slave)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the program ended
                break
            if not data:
                break
            drawn.extend(data)
    finally:
        if process.poll() is None:
            process.kill()
        code = process.wait(timeout=10)
        os.close(master)
    return code, drawn.decode(errors="replace")


def screen_lines(drawn: str) -> list[str]:
    """The lines a terminal showed, in the order drawn (styles removed)."""
    return LINE_BREAK.split(STYLE.sub("", drawn))


async def test_live_rate_and_eta_hold_while_sizes_become_known(tmp_path: Path) -> None:
    """Eight clips, two at a time: their sizes are learnt one by one as each transfer
    starts. Once the rate is known it never turns back into ``?``, speeds are in MiB/s,
    and every line fits 80 columns. A retry of a clip says so above the display."""
    async with FakeSsembleAPI(clip_bytes_per_second=1.5 * MiB) as fake:
        clips = tuple(FakeClip(size=900_000, title=f"clip {n} " + "x" * 50) for n in range(4))
        rids = [fake.add_job(FakeJob(steps=(), clips=clips)) for _ in range(2)]
        first = next(iter(fake.jobs[rids[0]].clips))
        fake.inject_clip_fault(ClipFault(clip_id=first, status=503))
        env = environment(fake, TERM="xterm-256color", COLUMNS="80", LINES="40")
        args = ["download", *rids, "-o", str(tmp_path), "--concurrency", "2"]
        code, drawn = await anyio.to_thread.run_sync(run_on_terminal, args, env)
    assert code == 0, drawn
    lines = screen_lines(drawn)
    overall = [line for line in lines if line.startswith("all clips")]
    rated = [n for n, line in enumerate(overall) if re.search(r"\d\.\d MiB/s", line)]
    assert rated, overall
    for line in overall[rated[0] :]:  # from the first rate on: a rate and an ETA, always
        assert RATE.search(line), line
        assert re.search(r"ETA (\d+:\d\d|stalled|waiting)$", line.rstrip()), line
    assert re.search(r"/~?\d+\.\d MiB", overall[-1])
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    # said above the display (and wrapped at 80 columns like any line there)
    told = rf"ssemble: clip {first}: retry 1/4 in [\d.]+ s: the clip host answered 503"
    assert re.search(told.replace(" ", r"\s+"), " ".join(lines)), lines


async def test_piped_output_is_a_log(fake_ssemble: FakeSsembleAPI, tmp_path: Path) -> None:
    """Stdout a pipe: a start line, progress lines at the interval asked for, a line per
    clip, then the summary; no escape sequences."""
    fake_ssemble.clip_bytes_per_second = 1 * MiB  # each clip takes about half a second
    clips = tuple(FakeClip(size=500_000) for _ in range(3))
    rids = [fake_ssemble.add_job(FakeJob(steps=(), clips=clips)) for _ in range(2)]
    env = environment(fake_ssemble, SSEMBLE_PROGRESS_INTERVAL="0.2")
    args = ["download", *rids, "-o", str(tmp_path), "--concurrency", "2"]
    result = await ssemble(*args, env=env)
    assert result.code == 0, result.err
    assert ESC not in result.out and ESC not in result.err
    lines = result.out.splitlines()
    assert re.fullmatch(
        r"downloading 6 clips from 2 requests, (.+ known, \d sizes not known yet"
        r"|sizes not known yet)",
        lines[0],
    )
    progress = [line for line in lines if line.startswith("progress: ")]
    assert progress, result.out
    for line in progress:
        assert re.fullmatch(
            r"progress: [\d.]+/~?[\d.]+ (MiB|KiB|B), (\? MiB|[\d.]+ (MiB|KiB|B))/s,"
            r" ETA (\?|\d+:\d\d|stalled|waiting); \d of 6 clips done.*",
            line,
        ), line
    files = sorted(str(path) for path in tmp_path.rglob("*.mp4"))
    assert len(files) == 6
    clip_lines = sorted(line.split()[1] for line in lines if line.startswith("downloaded  "))
    assert clip_lines == files
    assert re.fullmatch(
        r"downloaded 6 · 2\.9 MiB transferred in \d+:\d\d \([\d.]+ (MiB|KiB)/s\)", lines[-1]
    )


async def test_a_bad_progress_interval_stops_before_any_call(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    env = environment(fake_ssemble, SSEMBLE_PROGRESS_INTERVAL="soon")
    result = await ssemble("download", rid, "-o", str(tmp_path), env=env)
    assert result.code == 2
    assert_one_line_error(result, "SSEMBLE_PROGRESS_INTERVAL='soon'")
    assert not fake_ssemble.api_requests


async def test_an_api_retry_says_what_it_waits_for(tmp_path: Path) -> None:
    """The API refuses connections: stderr says ``retry 1/4 in ... s: connection refused``
    (and nothing of the key); once it serves again the download completes."""
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
        await fake.pause_api()
        command = [sys.executable, "-m", "ssemble_async", "download", rid, "-o", str(tmp_path)]
        told: list[str] = []
        with anyio.fail_after(60):
            async with await anyio.open_process(command, env=environment(fake)) as process:
                assert process.stderr is not None
                async for chunk in TextReceiveStream(process.stderr):
                    told.append(chunk)
                    if "retry 1/4" in "".join(told):
                        await fake.resume_api()
                code = await process.wait()
    err = "".join(told)
    assert code == 0, err
    first = err.splitlines()[0]
    assert re.fullmatch(
        rf"ssemble: retry 1/4 in [\d.]+ s: connection refused \(GET /shorts/{rid}\)", first
    ), err
    assert fake.api_key not in err


async def test_a_clip_retry_says_what_it_waits_for(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=9000),)))
    (clip_id,) = fake_ssemble.jobs[rid].clips
    fake_ssemble.inject_clip_fault(ClipFault(status=503, times=2))
    result = await ssemble("download", rid, "-o", str(tmp_path), fake=fake_ssemble)
    assert result.code == 0, result.err
    assert re.fullmatch(
        rf"ssemble: clip {clip_id}: retry 1/4 in [\d.]+ s: the clip host answered 503\n"
        rf"ssemble: clip {clip_id}: retry 2/4 in [\d.]+ s: the clip host answered 503\n",
        result.err,
    )
    assert fake_ssemble.clip_base_url not in result.err  # clip URLs are credentials


async def test_piped_wait_says_what_the_server_said_of_the_job(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    """``download --wait`` into a log: while the job runs, each progress line says its
    state, step and percent as last read (was: only "waiting for 1 request")."""
    steps = (("queued", 0, "In queue"), ("finding_highlights", 40, "Finding highlights"))
    # polls at 0.2, 0.5, 0.95, 1.6, 2.7 s...: the second step (2 to 4 s) is read, with room
    rid = fake_ssemble.add_job(FakeJob(steps=steps, finishes_after=4.0))
    env = environment(fake_ssemble, SSEMBLE_PROGRESS_INTERVAL="0.1")
    args = ["download", rid, "-o", str(tmp_path), "--wait", "--poll-interval", "0.2"]
    result = await ssemble(*args, env=env)
    assert result.code == 0, result.err
    waiting = [line for line in result.out.splitlines() if "waiting for 1 request" in line]
    said = {line.partition("(")[2].rstrip(")") for line in waiting}
    assert "processing, finding_highlights, 40%" in said, waiting
    assert said <= {"", "queued, queued, 0%", "processing, finding_highlights, 40%"}, waiting
