"""``ssemble listen``: a real process receiving deliveries, then Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import environment, ssemble

pytestmark = pytest.mark.anyio


async def lines_of(process: Process) -> list[str]:
    assert process.stdout is not None
    return [chunk async for chunk in TextReceiveStream(process.stdout)]


def delivery(request_id: str, event: str = "shorts.completed") -> bytes:
    status = "completed" if event == "shorts.completed" else "failed"
    return json.dumps({"event": event, "requestId": request_id, "status": status}).encode()


async def post(url: str, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
    ):
        return answer.status


async def test_listen_downloads_each_delivered_job_and_stops_on_ctrl_c(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=20_000), FakeClip())))
    failed = fake_ssemble.add_job(FakeJob(steps=(), outcome="failed"))
    command = [sys.executable, "-m", "ssemble_async", "listen", "--port", "0"]
    command += ["-o", str(tmp_path), "--json", "--path", "/hook/s3cret"]
    async with await anyio.open_process(
        command, env=environment(fake_ssemble), stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        received = process.stdout.receive
        buffer = ""
        with anyio.fail_after(20):
            while buffer.count("\n") < 1:
                buffer += (await received()).decode()
            url = json.loads(buffer.splitlines()[0])["webhook_url"]
            assert url.startswith("http://127.0.0.1:") and url.endswith("/hook/s3cret")
            assert await post(url, delivery(rid)) == 202
            assert await post(url, delivery(rid)) == 202  # a repeated try: nothing more
            assert await post(url, delivery(failed, "shorts.failed")) == 202
            assert await post(url.rsplit("/", 1)[0] + "/guess", delivery(rid)) == 404
            while buffer.count("\n") < 3:
                buffer += (await received()).decode()
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(20):
            code = await process.wait()
    lines = [json.loads(line) for line in buffer.splitlines()[1:3]]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id[rid]["status"] == "completed" and by_id[rid]["counts"] == {"downloaded": 2}
    assert by_id[failed]["status"] == "failed" and by_id[failed]["counts"] == {}
    assert code == 130
    assert fake_ssemble.calls["GET /shorts/:id"] == 2  # one confirmation per job
    for clip_id in fake_ssemble.jobs[rid].clips:
        data = (tmp_path / rid / f"{clip_id}.mp4").read_bytes()
        served = fake_ssemble.clip_bytes(rid, clip_id)
        assert hashlib.sha256(data).digest() == hashlib.sha256(served).digest()


@pytest.mark.parametrize(
    ("flag", "value"), [("--port", "70000"), ("--port", "x"), ("--path", "no-slash")]
)
async def test_listen_flags_are_checked(flag: str, value: str, tmp_path: Path) -> None:
    result = await ssemble("listen", flag, value, "-o", str(tmp_path), fake=None)
    assert result.code == 2
    assert "Traceback" not in result.err and flag in result.err
