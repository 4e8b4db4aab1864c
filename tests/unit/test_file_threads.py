"""The transfers' thread pool: file work waited for whole, kept apart from other pools, and
working again in a forked child."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from ssemble_async._transfer import in_thread

pytestmark = pytest.mark.anyio


async def test_a_cancel_waits_for_the_file_work_to_end() -> None:
    """What a trip leaves (a write, a rename) must be known when the task goes on: a cancel
    arriving mid-trip is held until the function has returned (and its result handed
    over), then comes out at the task's next checkpoint."""
    loop = asyncio.get_running_loop()
    started, ended = anyio.Event(), threading.Event()
    seen: list[str] = []

    def work() -> str:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.2)
        ended.set()
        return "written"

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:

            async def cancel_once_started() -> None:
                await started.wait()
                scope.cancel()

            group.start_soon(cancel_once_started)
            seen.append(await in_thread(work))
            seen.append("ended" if ended.is_set() else "still running")
            await anyio.sleep(5)
            seen.append("not cancelled")
    assert scope.cancelled_caught
    assert seen == ["written", "ended"]


async def test_file_work_runs_while_the_default_executor_is_full() -> None:
    """A slow disk's fsync must not wait behind (or hold up) the loop's default executor,
    which also resolves host names."""
    loop = asyncio.get_running_loop()
    release = threading.Event()
    busy = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(busy)
    try:
        blocked = loop.run_in_executor(None, release.wait, 10)
        with anyio.fail_after(5):
            name = await in_thread(lambda: threading.current_thread().name)
        assert name.startswith("ssemble-files")
        assert not blocked.done()
    finally:
        release.set()
        await blocked
        busy.shutdown()


def test_a_forked_child_gets_threads_of_its_own() -> None:
    """The parent's idle threads do not exist in a forked child: a pool carried over would
    queue the child's work forever."""
    assert asyncio.run(in_thread(lambda: 1)) == 1  # the parent's pool has an idle thread
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when the trip works, 3 if it raised
        code = 3
        try:
            code = 0 if asyncio.run(asyncio.wait_for(in_thread(lambda: 7), 5)) == 7 else 4
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's file work never ran")


AFTER_MAIN = """
import asyncio, sys, tempfile, threading, time
from pathlib import Path
from ssemble_async import Client
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

async def download():
    async with FakeSsembleAPI() as fake:
        fake.clip_bytes_per_second = 4_000_000  # about 2 s: still running when main ends
        rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=8_000_000),)))
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            with tempfile.TemporaryDirectory() as dest:
                report = await client.download_shorts(rid, Path(dest), chunk_size=256 * 1024)
                print([o.state.value for o in report.outcomes], flush=True)

threading.Thread(target=lambda: asyncio.run(download())).start()
time.sleep(0.5)
"""


def test_a_download_in_a_thread_outlives_the_main_thread() -> None:
    """When the main thread ends, Python stops ``concurrent.futures`` pools from taking
    work before it waits for the other threads: a download running in another thread's
    event loop failed at its next write batch ("cannot schedule new futures after
    shutdown"). Its file work now goes to anyio's threads then."""
    done = subprocess.run(
        [sys.executable, "-c", AFTER_MAIN], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['downloaded']", done.stderr
