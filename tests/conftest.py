from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ssemble_async import Client, RetryPolicy, instant_waits
from ssemble_async.testing import FakeSsembleAPI


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests reach 127.0.0.1 directly, whatever proxy the machine running them sets."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def instant() -> Iterator[None]:
    """Every wait of the SDK instant (and the virtual clock set back afterwards)."""
    with instant_waits():
        yield


@pytest.fixture
async def client(fake_ssemble: FakeSsembleAPI) -> AsyncIterator[Client]:
    """A client of the fake API with quick, bounded retries (4 tries)."""
    async with Client(
        fake_ssemble.api_key,
        base_url=fake_ssemble.base_url,
        retry=RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1, jitter=0),
    ) as client:
        yield client


@pytest.fixture
def make_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (``make_tmpfs("1m")``) where the machine allows it."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        if shutil.which("mount") is None or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root and mount(8)")
        mount_point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        mount_point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(mount_point)
        return mount_point

    yield make
    for mount_point in mounted:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server on 127.0.0.1 that accepts requests and never answers them."""
    stop = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await stop.wait()
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    stop.set()
    await runner.cleanup()
