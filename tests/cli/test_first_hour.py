"""The first hour of a new user, tried by an adversary: each test failed before its fix, a
defect a new user met that the issue's own tests did not, driven as a subprocess (on a real
pseudo-terminal of 80 columns where the terminal matters)."""

from __future__ import annotations

import functools
import os
import platform
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import Result, assert_one_line_error, environment
from ._support import ssemble as run_ssemble

pytestmark = pytest.mark.anyio

RID = "0123456789abcdef01234567"
#: Styles and cursor movements a terminal draws between the text.
STYLE = re.compile(r"\x1b\[[0-9;]*m")
LINE_BREAK = re.compile(r"\r\n|\r|\n|\x1b\[[0-9;?]*[A-Za-z]")
#: The number of the read() system call, as /proc/PID/syscall shows it.
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())

#: Starts the command on the terminal named by argv[1] as its controlling terminal (a new
#: session opening a terminal takes it), so that Ctrl-C typed there is a SIGINT, as in a shell.
LAUNCHER = """
import os, sys
os.setsid()
fd = os.open(sys.argv[1], os.O_RDWR)
for n in (0, 1, 2):
    os.dup2(fd, n)
os.chdir(sys.argv[2])
os.execv(sys.executable, [sys.executable, "-m", "ssemble_async", *sys.argv[3:]])
"""


async def ssemble(*args: str, **options: Any) -> Result:
    """The command, killed if it runs for more than a minute (a server that should have
    refused to start, a bound that does not hold)."""
    with anyio.fail_after(60):
        return await run_ssemble(*args, **options)


def blocked_reading(pid: int, fd: int | None = None) -> bool:
    """Whether the process ``pid`` waits in read() (on ``fd`` when given)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    if not fields or fields[0] != READ_SYSCALL:
        return False
    return fd is None or int(fields[1], 16) == fd


def on_terminal(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path,
    type_when: Callable[[str, int], bool] | None = None,
    typed: bytes = b"\x03",
    timeout: float = 30.0,
) -> tuple[int, str]:
    """Run the CLI on an 80-column terminal; once ``type_when(drawn, pid)`` holds, type
    ``typed`` (Ctrl-C by default). Return its exit code (-9: killed at ``timeout``) and
    everything it drew, styles removed."""
    if sys.platform != "linux" or READ_SYSCALL is None:
        pytest.skip("needs Linux's /proc/PID/syscall")
    master, slave = os.openpty()
    command = [sys.executable, "-c", LAUNCHER, os.ttyname(slave), str(cwd), *args]
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "40"}
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    os.close(slave)
    drawn = bytearray()
    done_typing = type_when is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if (
                type_when is not None
                and not done_typing
                and type_when(drawn.decode(errors="replace"), process.pid)
            ):
                time.sleep(0.2)  # still there: it waits for the terminal
                if type_when(drawn.decode(errors="replace"), process.pid):
                    os.write(master, typed)
                    done_typing = True
            ready, _, _ = select.select([master], [], [], 0.05)
            try:
                data = os.read(master, 65536) if ready else b""
            except OSError:  # no one has the terminal open: not yet, or no longer
                data = b""
            drawn.extend(data)
            if not data and process.poll() is not None:
                break
            if not data:
                time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        code = process.wait(timeout=10)
        os.close(master)
    return code, STYLE.sub("", drawn.decode(errors="replace"))


def screen_lines(drawn: str) -> list[str]:
    return LINE_BREAK.split(drawn)


# -- Ctrl-C while the command line reads the terminal ----------------------------------------


def test_ctrl_c_at_the_auth_login_prompt_exits_130(tmp_path: Path) -> None:
    """Ctrl-C at the hidden prompt was swallowed (the event loop only cancelled its task,
    which a blocking read never sees); Enter then said "the key typed is empty", exit 2."""
    env = environment(None, XDG_CONFIG_HOME=str(tmp_path / "config"))
    code, drawn = on_terminal(
        ["auth", "login"],
        env,
        cwd=tmp_path,
        type_when=lambda drawn, pid: "API key" in drawn and blocked_reading(pid),
        timeout=20,
    )
    assert code == 130, drawn
    assert "ssemble: interrupted" in drawn
    assert "Traceback" not in drawn
    assert not (tmp_path / "config" / "ssemble" / "credentials").exists()


def test_ctrl_c_while_download_reads_ids_from_the_terminal_exits_130(tmp_path: Path) -> None:
    """``download -i -`` on a terminal: Ctrl-C was ignored; only Ctrl-D ended it, with a
    usage error (exit 2)."""
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_" + "k" * 32)
    code, drawn = on_terminal(
        ["download", "-i", "-", "-o", "clips"],
        env,
        cwd=tmp_path,
        type_when=lambda _, pid: blocked_reading(pid, 0),
        timeout=20,
    )
    assert code == 130, drawn
    assert "no request id given" not in drawn
    assert "Traceback" not in drawn


# -- numbers and words of the command line ---------------------------------------------------


async def test_concurrency_has_an_upper_bound(tmp_path: Path) -> None:
    """``--concurrency 100000`` took 10 s and 760 MB before the first byte; a few more
    zeros never ended."""
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_" + "k" * 32)
    env["SSEMBLE_BASE_URL"] = "http://127.0.0.1:1/api/v1"  # nothing is sent anyway
    for args in (
        ["download", RID, "-o", str(tmp_path), "--concurrency", "100000"],
        ["worker", "--concurrency", "99999999999", "--queue", "redis://127.0.0.1:1/0"],
    ):
        result = await ssemble(*args, env=env)
        assert result.code == 2, (args, result.err)
        assert_one_line_error(result, "argument --concurrency: must be 1 or more (at most 1000)")


async def test_an_unknown_option_of_a_command_points_at_that_command() -> None:
    result = await ssemble("quota", "--limit", "3", env=environment(None))
    assert result.code == 2
    assert_one_line_error(result, "unrecognized arguments: --limit 3")
    assert "(ssemble quota --help lists the options)" in result.err
    result = await ssemble("auth", "status", "--bogus", env=environment(None))
    assert "(ssemble auth status --help lists the options)" in result.err


async def test_an_empty_output_folder_is_a_usage_error(tmp_path: Path) -> None:
    """``-o "$DEST"`` with DEST unset wrote into the current folder."""
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=()))
        result = await ssemble("download", rid, "-o", "", fake=fake, cwd=tmp_path)
        assert fake.api_requests == []
    assert result.code == 2, result.err
    assert_one_line_error(result, "-o")
    assert list(tmp_path.iterdir()) == []


async def test_fake_server_refuses_a_key_that_would_not_paste() -> None:
    """The export line is pasted into a shell: a key with a space or ``$(...)`` in it
    exported the wrong key (and ran the command substitution)."""
    result = await ssemble("fake-server", "--api-key", "my key$(id)", env=environment(None))
    assert result.code == 2
    assert_one_line_error(result, "argument --api-key")


async def test_help_says_what_quiet_and_name_do() -> None:
    listing = await ssemble("list", "--help", env=environment(None))
    assert "essential result" in " ".join(listing.out.split())
    download = await ssemble("download", "--help", env=environment(None))
    assert "ASCII letters" in " ".join(download.out.split())  # é and 日本 become _ too


# -- -q: the essential result of every command -------------------------------------------------


async def test_quiet_prints_the_essential_result_of_each_command(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    clips = fake_ssemble.jobs[rid].clips
    by_score = sorted(clips, key=lambda clip_id: -clips[clip_id].clip.viral_score)
    got = await ssemble("get", rid, "-q", fake=fake_ssemble)
    assert got.out.splitlines() == by_score, got.out
    waited = await ssemble("wait", rid, "-q", fake=fake_ssemble)
    assert waited.out.splitlines() == by_score, waited.out
    status = await ssemble("status", rid, "-q", fake=fake_ssemble)
    assert status.out == "completed\n"
    templates = await ssemble("templates", "-q", fake=fake_ssemble)
    ids = templates.out.splitlines()
    assert ids and all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids), templates.out
    music = await ssemble("music", "-q", fake=fake_ssemble)
    assert len(music.out.splitlines()) > 1 and "┃" not in music.out


# -- errors in the command line's terms --------------------------------------------------------


async def test_a_web_page_at_the_base_url_is_named_as_such(tmp_path: Path) -> None:
    """A web app answers every path with 200 and its HTML page: that was "the response body
    is not JSON (JSONDecodeError)", with nothing about --base-url."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><html>app</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = environment(None, SSEMBLE_API_KEY="sk_ssemble_" + "k" * 32)
        result = await ssemble("list", "--base-url", f"http://127.0.0.1:{port}/api/v1", env=env)
    finally:
        await runner.cleanup()
    assert result.code == 1
    assert_one_line_error(result, "--base-url")


async def test_a_failed_request_of_a_download_is_an_error_line(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    """Every other error is ``ssemble: error: ...``; a request that ended failed was
    ``ssemble: request ... ended failed`` (scripts grep for the first)."""
    rid = fake_ssemble.add_job(FakeJob(steps=(), outcome="failed"))
    for extra in ([], ["--dry-run"]):
        result = await ssemble("download", rid, "-o", str(tmp_path), *extra, fake=fake_ssemble)
        assert result.code == 1
        assert result.err.startswith(f"ssemble: error: request {rid} ended failed"), result.err


async def test_a_refused_key_at_login_is_named_as_the_key_typed(tmp_path: Path) -> None:
    """``auth login --verify`` told to run ``ssemble auth status`` to see which key is used:
    that shows the old key, not the one just typed and refused."""
    async with FakeSsembleAPI() as fake:
        env = environment(None, SSEMBLE_BASE_URL=fake.base_url)
        env["XDG_CONFIG_HOME"] = str(tmp_path)
        stdin = b"sk_ssemble_" + b"w" * 32 + b"\n"
        result = await ssemble("auth", "login", "--verify", stdin=stdin, env=env)
    assert result.code == 1
    assert_one_line_error(result, "the key was not saved")
    assert "the API refused the key typed" in result.err
    assert "auth status" not in result.err
    assert not (tmp_path / "ssemble" / "credentials").exists()


# -- an 80-column terminal ---------------------------------------------------------------------


async def test_dry_run_and_summary_show_whole_paths_at_80_columns(tmp_path: Path) -> None:
    """The dry run cut every path to ``clips/0123456789abcdef0…`` (its point is where the
    files go); the summary after a download folded them mid-id over four lines."""
    async with FakeSsembleAPI() as fake:
        clips = tuple(FakeClip(size=4096, title=f"A rather long clip title {n}") for n in range(2))
        rid = fake.add_job(FakeJob(steps=(), clips=clips))
        env = environment(fake)
        paths = [f"clips/{rid}/{clip_id}.mp4" for clip_id in fake.jobs[rid].clips]
        for extra in (["--dry-run"], []):
            args = ["download", rid, "-o", "clips", *extra]
            code, drawn = await anyio.to_thread.run_sync(
                functools.partial(on_terminal, args, env, cwd=tmp_path)
            )
            assert code == 0, drawn
            lines = screen_lines(drawn)
            assert all(len(line) <= 80 for line in lines), drawn
            for path in paths:
                assert any(path in line for line in lines), (path, drawn)


async def test_live_display_ends_with_an_eta_of_zero_not_a_question_mark(tmp_path: Path) -> None:
    """A download shorter than a second ended its display on ``192/192 KiB ? MiB/s ETA ?``."""
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=()))
        env = environment(fake)
        args = ["download", rid, "-o", "clips"]
        code, drawn = await anyio.to_thread.run_sync(lambda: on_terminal(args, env, cwd=tmp_path))
    assert code == 0, drawn
    overall = [line for line in screen_lines(drawn) if line.startswith("all clips")]
    assert overall and overall[-1].rstrip().endswith("ETA 0:00"), overall


async def test_live_display_says_it_waits_for_a_request(tmp_path: Path) -> None:
    """``download --wait`` of a job still processing showed ``0/0 B ? MiB/s ETA ?`` and
    ``downloaded 0`` for the whole wait (5 to 30 minutes on the real API): nothing said
    what it waited for."""
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(seconds_per_step=0.4))  # done in 2 s
        env = environment(fake)
        args = ["download", rid, "--wait", "--poll-interval", "0.2", "-o", "clips"]
        code, drawn = await anyio.to_thread.run_sync(lambda: on_terminal(args, env, cwd=tmp_path))
    assert code == 0, drawn
    assert "waiting for 1 request" in drawn, drawn
    assert "0/0 B" not in drawn
