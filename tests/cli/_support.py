"""Running the ``ssemble`` command in a subprocess, for the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from ssemble_async.testing import FakeSsembleAPI

ESC = "\x1b["


def environment(fake: FakeSsembleAPI | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    if fake is not None:
        env.update(SSEMBLE_API_KEY=fake.api_key, SSEMBLE_BASE_URL=fake.base_url)
    env.update({"PYTHONUNBUFFERED": "1", "TERM": "dumb", **extra})
    return env


class Result:
    def __init__(self, done: subprocess.CompletedProcess[bytes]) -> None:
        self.code = done.returncode
        self.out = done.stdout.decode()
        self.err = done.stderr.decode()

    def json(self) -> object:
        return json.loads(self.out)


async def ssemble(
    *args: str,
    fake: FakeSsembleAPI | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Result:
    done = await anyio.run_process(
        [sys.executable, "-m", "ssemble_async", *args],
        input=stdin,
        check=False,
        cwd=cwd,
        env=dict(env) if env is not None else environment(fake),
    )
    return Result(done)


def take_retries(result: Result) -> list[str]:
    """Take the ``ssemble: retry ...`` notices out of ``result.err``; return them."""
    lines = result.err.splitlines(keepends=True)
    retries = [line for line in lines if line.startswith("ssemble: retry ")]
    result.err = "".join(line for line in lines if not line.startswith("ssemble: retry "))
    return retries


def assert_one_line_error(result: Result, needle: str) -> None:
    assert result.err.startswith("ssemble: error: ")
    assert needle in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def run_in_pty(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run the CLI on a real pseudo-terminal; return its exit code and everything it drew."""
    import pty

    output = bytearray()

    def read(fd: int) -> bytes:
        data = os.read(fd, 65536)
        output.extend(data)
        return data

    previous = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        status = pty.spawn([sys.executable, "-m", "ssemble_async", *args], read)
    finally:
        os.environ.clear()
        os.environ.update(previous)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")
