"""The fault injection the reliability tests rely on does what it says (raw HTTP, no SDK)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio

SIZE = 300_000


def one_clip(fake: FakeSsembleAPI) -> tuple[str, str]:
    clip = FakeClip(size=SIZE)
    rid = fake.add_job(FakeJob(steps=(), clips=(clip,)))
    return rid, clip.clip_id


async def raw_get(url: str) -> tuple[bytes, bytes, BaseException | None]:
    """GET ``url`` over a bare socket: the head, the body, and how the connection ended
    (None for a clean end of stream)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    await writer.drain()
    received = b""
    ending: BaseException | None = None
    try:
        while chunk := await reader.read(65536):
            received += chunk
    except OSError as exc:
        ending = exc
    writer.close()
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body, ending


async def test_truncate_closes_cleanly_and_reset_sends_rst(fake_ssemble: FakeSsembleAPI) -> None:
    rid, clip_id = one_clip(fake_ssemble)
    url = fake_ssemble.clip_url(rid, clip_id)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, truncate_at=1000))
    head, body, ending = await raw_get(url)
    assert f"Content-Length: {SIZE}".encode() in head
    assert len(body) == 1000
    assert ending is None  # a FIN: the body is simply shorter than announced
    fake_ssemble.inject_clip_fault(
        ClipFault(clip_id=clip_id, truncate_at=1000, stall_at=999, stall_seconds=0.05, reset=True)
    )
    head, body, ending = await raw_get(url)
    assert isinstance(ending, ConnectionResetError)
    assert len(body) <= 1000


async def test_content_length_override(fake_ssemble: FakeSsembleAPI) -> None:
    rid, clip_id = one_clip(fake_ssemble)
    url = fake_ssemble.clip_url(rid, clip_id)
    content = fake_ssemble.clip_bytes(rid, clip_id)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, content_length=SIZE + 500))
    head, body, ending = await raw_get(url)
    assert f"Content-Length: {SIZE + 500}".encode() in head
    assert body == content  # the whole file, then the connection ends 500 bytes early
    assert ending is None
    async with aiohttp.ClientSession() as session:
        fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, content_length=SIZE + 500))
        async with session.get(url) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
        # smaller: a complete, consistent, short answer that no client can tell apart
        fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, content_length=1000))
        async with session.get(url) as response:
            assert response.content_length == 1000
            assert await response.read() == content[:1000]
        async with session.get(url, headers={"Range": "bytes=100-"}) as response:
            assert response.status == 206  # faults used up: served as usual again
            assert await response.read() == content[100:]


async def test_pause_and_resume_the_api(fake_ssemble: FakeSsembleAPI) -> None:
    base_url = fake_ssemble.base_url
    headers = {"X-API-Key": fake_ssemble.api_key}
    rid, clip_id = one_clip(fake_ssemble)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/templates", headers=headers) as response:
            assert response.status == 200  # a keep-alive connection is open now
        await fake_ssemble.pause_api()
        await fake_ssemble.pause_api()  # pausing twice does nothing more
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            async with session.get(f"{base_url}/templates", headers=headers):
                pass
        assert isinstance(info.value.os_error, ConnectionRefusedError)
        async with session.get(fake_ssemble.clip_url(rid, clip_id)) as response:
            assert response.status == 200  # the clip host is not paused
        await fake_ssemble.resume_api()
        await fake_ssemble.resume_api()
        assert fake_ssemble.base_url == base_url
        async with session.get(f"{base_url}/templates", headers=headers) as response:
            assert response.status == 200
        await fake_ssemble.refuse_connections(0.05)
        async with session.get(f"{base_url}/shorts/{rid}", headers=headers) as response:
            assert response.status == 200


async def test_pause_needs_a_running_fake() -> None:
    fake = FakeSsembleAPI()
    with pytest.raises(RuntimeError, match="not running"):
        await fake.pause_api()
    async with fake:
        await fake.pause_api()
    with pytest.raises(RuntimeError, match="not running"):
        await fake.resume_api()  # close() stopped everything, the paused API included
