"""Helpers of the work-queue tests: real ``ssemble worker`` processes and bounded waits."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ssemble_async.distributed import QueueStatus, queue_status
from ssemble_async.testing import FakeSsembleAPI

#: The longest any one wait of these tests may take (a failure, never a pass, if it does).
DEADLINE = 60.0


def queue_env(fake: FakeSsembleAPI, queue_url: str, **extra: str) -> dict[str, str]:
    """The environment of an ``ssemble`` process: the fake's key and URL, the queue."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    env.update(
        SSEMBLE_API_KEY=fake.api_key,
        SSEMBLE_BASE_URL=fake.base_url,
        SSEMBLE_QUEUE_URL=queue_url,
        PYTHONUNBUFFERED="1",
        TERM="dumb",
        **extra,
    )
    return env


#: One job line of ``ssemble worker --json``.
Line = dict[str, Any]


class Board:
    """What the workers of a test said; a wait wakes at each line of any of them."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.changed = anyio.Event()

    def tell(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def outcomes(self, request_id: str | None = None, state: str | None = None) -> list[Line]:
        return [line for worker in self.workers for line in worker.outcomes(request_id, state)]

    async def wait_for(self, ready: Callable[[], bool], what: str) -> None:
        """Wait until ``ready()`` (checked after each line), at most `DEADLINE` seconds."""
        try:
            with anyio.fail_after(DEADLINE):
                while not ready():
                    ended = [w for w in self.workers if w.finished]
                    if ended and not ready():
                        raise AssertionError(f"a worker ended before {what}: {ended[0].stderr!r}")
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"never {what}: {self.outcomes()}") from None


class Worker:
    """One ``ssemble worker --json`` process; its job lines are read as they come."""

    def __init__(self, process: anyio.abc.Process, board: Board, *, as_json: bool) -> None:
        self.process = process
        self.board = board
        self.as_json = as_json
        self.texts: list[str] = []  # every line of stdout
        self.lines: list[Line] = []  # with --json: each parsed
        self.stderr = b""
        self.finished = False  # its output is all read and it exited

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.texts.extend(line.decode() for line in complete)
            if self.as_json:
                self.lines.extend(json.loads(line) for line in complete)
            self.board.tell()
        await self.process.wait()
        self.finished = True
        self.board.tell()

    async def read_errors(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk

    def outcomes(self, request_id: str | None = None, state: str | None = None) -> list[Line]:
        return [
            line
            for line in self.lines
            if (request_id is None or line["request_id"] == request_id)
            and (state is None or line["state"] == state)
        ]

    async def wait_for(self, ready: Callable[[], bool], what: str) -> None:
        await self.board.wait_for(ready, what)


@asynccontextmanager
async def running_workers(
    count: int, env: Mapping[str, str], *args: str, cwd: Path, as_json: bool = True
) -> AsyncIterator[Board]:
    """``count`` ``ssemble worker`` processes (``--json`` unless told otherwise); stopped
    with SIGTERM on the way out."""
    board = Board()
    async with anyio.create_task_group() as readers:
        try:
            for _ in range(count):
                json_flag = ["--json"] if as_json else []
                process = await anyio.open_process(
                    [sys.executable, "-m", "ssemble_async", "worker", *json_flag, *args],
                    env=dict(env),
                    cwd=cwd,
                )
                worker = Worker(process, board, as_json=as_json)
                board.workers.append(worker)
                readers.start_soon(worker.read)
                readers.start_soon(worker.read_errors)
            yield board
        finally:
            with anyio.CancelScope(shield=True):
                for worker in board.workers:
                    await stop(worker)


async def stop(worker: Worker, sig: int = signal.SIGTERM) -> int:
    """Stop a worker (SIGTERM: cleanly, handing its jobs back) and return its exit code."""
    if worker.process.returncode is None:
        worker.process.send_signal(sig)
        with anyio.move_on_after(DEADLINE):
            return await worker.process.wait()
        worker.process.kill()
    return await worker.process.wait()


async def poll_until(ready: Callable[[], bool], what: str) -> None:
    """Look every 50 ms until ``ready()`` (files on disk have no event to wait for), at most
    `DEADLINE` seconds."""
    with anyio.fail_after(DEADLINE):
        while True:
            if ready():
                return
            await anyio.sleep(0.05)


async def wait_for_status(
    queue_url: str, ready: Callable[[QueueStatus], bool], what: str
) -> QueueStatus:
    """Ask ``queue_status()`` every 100 ms until ``ready``, at most `DEADLINE` seconds."""
    status = None
    try:
        with anyio.fail_after(DEADLINE):
            while True:
                status = await queue_status(queue_url)
                if ready(status):
                    return status
                await anyio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"never {what}; last: {status}") from None
