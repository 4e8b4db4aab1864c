"""Integrity at every interruption and against hosts that answer differently (issue 8).

Each test names the defect it proves fixed. Hosts the fake cannot play (one that ignores
``If-Range`` while the file changes, one that sends no ``Content-Length``) are scripted
here as raw HTTP servers on 127.0.0.1, so every byte on the wire is chosen by the test.
"""

from __future__ import annotations

import asyncio
import gc
import re
import struct
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import attrs
import pytest

from ssemble_async import Client, ClipState, RequestState, RetryPolicy, Short, ShortsRequest
from ssemble_async._manifest import load_manifest
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI, make_mp4

from .conftest import assert_files_match, sha

pytestmark = pytest.mark.anyio

RID = "a1b2c3d4e5f6a7b8c9d0e1f2"


@attrs.frozen
class Seen:
    """One request the scripted host received."""

    range: str | None
    if_range: str | None


Reply = tuple[bytes, bytes]  # (status line and headers, body); the connection closes after


class ScriptedHost:
    """A raw HTTP/1.1 server: ``script(n, seen)`` writes the n-th answer (0-based), then
    the connection is closed, so a body without ``Content-Length`` ends there."""

    def __init__(self, script: Callable[[int, Seen], Reply]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self.url = ""
        self.handlers: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head.split("\r\n")[1:])
            if name
        }
        seen = Seen(range=headers.get("range"), if_range=headers.get("if-range"))
        self.seen.append(seen)
        status, body = self.script(len(self.seen) - 1, seen)
        writer.write(status + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        # aiohttp drops what it buffered when a body shorter than announced ends at once:
        # a pause lets the client take the bytes before the close, as over a real network
        await asyncio.sleep(0.2)
        writer.close()

    async def __aenter__(self) -> ScriptedHost:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/clip.mp4"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*self.handlers)  # every answer finished, none cut by the test's end
        self._server.close()
        await self._server.wait_closed()


def ok(body: bytes, etag: str | None, *, length: int | None = None) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Content-Type: video/mp4"]
    if etag is not None:
        lines.append(f"ETag: {etag}".encode())
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines)


def partial(first: int, size: int, etag: str) -> bytes:
    return b"\r\n".join(
        [
            b"HTTP/1.1 206 Partial Content",
            b"Content-Type: video/mp4",
            f"ETag: {etag}".encode(),
            f"Content-Range: bytes {first}-{size - 1}/{size}".encode(),
            f"Content-Length: {size - first}".encode(),
        ]
    )


def start_of(seen: Seen) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", seen.range or "")
    return 0 if match is None else int(match.group(1))


def one_clip(url: str) -> ShortsRequest:
    return ShortsRequest(
        request_id=RID,
        status=RequestState.COMPLETED,
        status_raw="completed",
        shorts=(Short(id="clip", video_url=url),),
    )


@pytest.fixture
async def patient(fake_ssemble: FakeSsembleAPI) -> AsyncIterator[Client]:
    """A client that gives a transfer one try per run (so a run can give up on purpose)."""
    async with Client(
        fake_ssemble.api_key,
        base_url=fake_ssemble.base_url,
        retry=RetryPolicy(attempts=1, initial_wait=0.1, max_wait=1, jitter=0),
    ) as client:
        yield client


# -- defect 5: a 206 must carry the validator the .part was saved with ---------------------


async def test_a_host_ignoring_if_range_while_the_file_changed_never_splices(
    client: Client, patient: Client, tmp_path: Path
) -> None:
    old, new = make_mp4(600_000, "old render"), make_mp4(600_000, "new render")

    def script(index: int, seen: Seen) -> Reply:
        if index == 0:  # the old render, cut off half-way
            return ok(old, '"old"', length=len(old)), old[:300_000]
        if index == 1:  # ... and a hiccup that makes the first run give up
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0", b""
        first = start_of(seen)  # now the new render, whatever If-Range says
        if first:
            return partial(first, len(new), '"new"'), new[first:]
        return ok(new, '"new"', length=len(new)), new

    chunk = 64 * 1024
    async with ScriptedHost(script) as host:
        first = await patient.download_shorts(one_clip(host.url), tmp_path, chunk_size=chunk)
        (failed,) = first.by_state(ClipState.FAILED)
        assert failed.path is not None, failed
        kept = failed.path.with_name(failed.path.name + ".part").stat().st_size
        assert kept > 0
        assert f"{kept} bytes kept" in (failed.message or "")  # defect 4: progress kept
        second = await client.download_shorts(one_clip(host.url), tmp_path, chunk_size=chunk)
    (done,) = second.outcomes
    assert done.state is ClipState.DOWNLOADED
    assert done.path is not None
    assert sha(done.path.read_bytes()) == sha(new)  # not old[:kept] + new[kept:]
    assert host.seen[2] == Seen(range=f"bytes={kept}-", if_range='"old"')
    assert host.seen[3] == Seen(range=None, if_range=None)  # started over


async def test_without_a_validator_a_resume_starts_over_instead_of_splicing(
    client: Client, tmp_path: Path
) -> None:
    first_render, second_render = make_mp4(400_000, "first"), make_mp4(400_000, "second")

    def script(index: int, seen: Seen) -> Reply:
        if index == 0:  # no ETag, no Last-Modified: nothing identifies these bytes
            return ok(first_render, None, length=400_000), first_render[:200_000]
        first = start_of(seen)
        if first:  # a host that would splice another render's rest onto the first
            return partial(first, 400_000, '"x"'), second_render[first:]
        return ok(second_render, None, length=400_000), second_render

    async with ScriptedHost(script) as host:
        report = await client.download_shorts(one_clip(host.url), tmp_path, chunk_size=65536)
    (done,) = report.outcomes
    assert done.state is ClipState.DOWNLOADED
    assert done.path is not None and done.path.read_bytes() == second_render
    assert [s.range for s in host.seen] == [None, None]


# -- defect 6: a body of unknown length is verified by the MP4's own boxes ----------------


async def test_a_cut_body_without_content_length_is_resumed_not_accepted(
    client: Client, tmp_path: Path
) -> None:
    clip = make_mp4(500_000, "no length")

    def script(index: int, seen: Seen) -> Reply:
        first = start_of(seen)
        if index == 0:
            return ok(clip, '"v"'), clip[:250_000]  # close-delimited, cut short
        return partial(first, len(clip), '"v"'), clip[first:]

    async with ScriptedHost(script) as host:
        report = await client.download_shorts(one_clip(host.url), tmp_path)
    (done,) = report.outcomes
    assert done.state is ClipState.DOWNLOADED, done.message
    assert done.path is not None
    assert sha(done.path.read_bytes()) == sha(clip)
    assert [s.range for s in host.seen] == [None, "bytes=250000-"]


async def test_a_whole_body_without_content_length_costs_one_request(
    client: Client, tmp_path: Path
) -> None:
    moov = struct.pack(">I4s", 16, b"moov") + b"\0" * 8  # the index, after the media
    clip = make_mp4(300_000, "whole") + moov
    async with ScriptedHost(lambda index, seen: (ok(clip, '"v"'), clip)) as host:
        report = await client.download_shorts(one_clip(host.url), tmp_path)
    assert [o.state for o in report.outcomes] == [ClipState.DOWNLOADED]
    assert len(host.seen) == 1


async def test_a_box_to_the_end_of_the_file_is_confirmed_by_a_range_probe(
    client: Client, tmp_path: Path
) -> None:
    clip = bytearray(make_mp4(200_000, "open-ended"))
    clip[32:36] = struct.pack(">I", 0)  # the mdat box: size 0, "to the end of the file"
    body = bytes(clip)

    def script(index: int, seen: Seen) -> Reply:
        if index == 0:
            return ok(body, '"v"'), body
        assert seen.range == f"bytes={len(body)}-"
        return (
            f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len(body)}".encode(),
            b"",
        )

    async with ScriptedHost(script) as host:
        report = await client.download_shorts(one_clip(host.url), tmp_path)
    (done,) = report.outcomes
    assert done.state is ClipState.DOWNLOADED, done.message
    assert done.path is not None and done.path.read_bytes() == body
    assert len(host.seen) == 2


# -- defect 7: a restart from zero is not progress -----------------------------------------


async def test_a_host_ignoring_range_and_dropping_is_not_fetched_fifty_times(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    size = 1_000_000
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
    fake_ssemble.inject_clip_fault(ClipFault(ignore_range=True, truncate_at=900_000, times=100))
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.outcomes
    assert failed.state is ClipState.FAILED
    assert "gave up" in (failed.message or "")
    gets = [r for r in fake_ssemble.clip_requests if r.method == "GET"]
    # one try that made progress, then `attempts` (4) tries in a row that made none
    assert len(gets) == 5
    assert failed.transferred == 5 * 900_000


# -- defect 4: giving up keeps a resumable .part -------------------------------------------


async def test_giving_up_keeps_the_part_and_the_next_run_resumes_it(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    size = 2_000_000
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=700_000))
    fake_ssemble.inject_clip_fault(ClipFault(status=503, times=4))
    first = await client.download_shorts(rid, tmp_path)
    (failed,) = first.outcomes
    assert failed.state is ClipState.FAILED
    assert failed.path is not None
    part = failed.path.with_name(failed.path.name + ".part")
    assert part.stat().st_size == 700_000
    assert "700000 bytes kept" in (failed.message or "")
    entry = load_manifest(part.parent).clips[failed.clip_id]
    assert entry.partial is not None and entry.partial.validator
    assert not entry.complete

    seen = len(fake_ssemble.clip_requests)
    second = await client.download_shorts(rid, tmp_path)
    assert second.ok
    assert_files_match(fake_ssemble, second)
    (resumed,) = [r for r in fake_ssemble.clip_requests[seen:] if r.method == "GET"]
    assert resumed.headers["Range"] == "bytes=700000-"
    assert second.transferred == size - 700_000


async def test_a_url_refused_after_progress_keeps_the_part_for_the_next_run(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    size = 2_000_000
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=700_000))
    fake_ssemble.inject_clip_fault(ClipFault(status=403, times=2))  # refused, read, refused
    first = await client.download_shorts(rid, tmp_path)
    (failed,) = first.outcomes
    assert failed.state is ClipState.FAILED
    assert "still gives this URL" in (failed.message or "")
    assert "700000 bytes kept" in (failed.message or "")
    seen = len(fake_ssemble.clip_requests)
    second = await client.download_shorts(rid, tmp_path)
    assert second.ok
    assert_files_match(fake_ssemble, second)
    (resumed,) = [r for r in fake_ssemble.clip_requests[seen:] if r.method == "GET"]
    assert resumed.headers["Range"] == "bytes=700000-"


async def test_a_416_whose_size_contradicts_the_recorded_total_starts_over(
    patient: Client, client: Client, tmp_path: Path
) -> None:
    old, new = make_mp4(600_000, "old"), make_mp4(300_000, "new, shorter")

    def script(index: int, seen: Seen) -> Reply:
        if index == 0:  # 300000 bytes of a 600000-byte file, then a hiccup
            return ok(old, '"old"', length=len(old)), old[:300_000]
        if index == 1:
            return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0", b""
        if seen.range:  # the file is now 300000 bytes long: "nothing after byte 300000"
            return (
                f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len(new)}".encode(),
                b"",
            )
        return ok(new, '"new"', length=len(new)), new

    chunk = 64 * 1024
    async with ScriptedHost(script) as host:
        first = await patient.download_shorts(one_clip(host.url), tmp_path, chunk_size=chunk)
        (failed,) = first.outcomes
        assert failed.path is not None
        assert failed.path.with_name(failed.path.name + ".part").stat().st_size == 300_000
        second = await client.download_shorts(one_clip(host.url), tmp_path, chunk_size=chunk)
    (done,) = second.outcomes
    assert done.state is ClipState.DOWNLOADED
    assert done.path is not None and done.path.read_bytes() == new  # not old[:300000]
    assert [s.range for s in host.seen[2:]] == ["bytes=300000-", None]


async def test_bytes_known_to_be_wrong_are_deleted(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(
        FakeJob(steps=(), clips=(FakeClip(content=b"<html>not a clip</html>" * 100),))
    )
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.outcomes
    assert failed.state is ClipState.FAILED
    assert not list(tmp_path.rglob("*.part"))


# -- defect 3: duplicate ids ---------------------------------------------------------------


async def test_request_ids_in_any_case_are_one_request(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip())))
    report = await client.download_many([rid, rid.upper(), rid], tmp_path)
    assert report.ok
    assert len(report.outcomes) == 2
    assert {o.request_id for o in report.outcomes} == {rid}
    assert_files_match(fake_ssemble, report)


async def test_a_clip_id_repeated_in_shorts_is_downloaded_once(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip())))
    request = await client.get_shorts(rid)
    repeated = attrs.evolve(request, shorts=request.shorts + request.shorts[:1])
    report = await client.download_many([repeated], tmp_path)
    assert report.ok
    assert sorted(o.clip_id for o in report.outcomes) == sorted(s.id for s in request.shorts)
    assert_files_match(fake_ssemble, report)
    gets = [r for r in fake_ssemble.clip_requests if r.method == "GET"]
    assert len(gets) == 2


# -- defect 8: the caller's exception comes back as itself ---------------------------------


class CallerError(ValueError):
    pass


async def test_an_exception_raised_in_the_stream_block_is_not_wrapped(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=tuple(FakeClip() for _ in range(4))))

    async def consume() -> None:
        async with client.stream_downloads([rid], tmp_path) as outcomes:
            async for _ in outcomes:
                raise CallerError("mine")

    with pytest.raises(CallerError, match="mine"):
        await consume()
    # and the folder was closed: a new run takes its lock at once
    with anyio.fail_after(10):
        again = await client.download_shorts(rid, tmp_path)
    assert again.ok


async def test_a_system_exit_in_the_stream_block_is_not_wrapped(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))

    async def consume() -> None:
        async with client.stream_downloads([rid], tmp_path):
            raise SystemExit(3)

    with pytest.raises(SystemExit) as raised:
        await consume()
    assert raised.value.code == 3


async def test_an_exception_raised_before_iterating_is_not_wrapped(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))
    with pytest.raises(KeyError):
        async with client.stream_downloads([rid], tmp_path):
            raise KeyError("before any outcome")


# -- defect 9: failed outcomes hold no frames (and no buffers) ----------------------------


def reachable_frames(root: object, limit: int = 200_000) -> list[object]:
    """Traceback and frame objects reachable from ``root`` (modules, classes and code are
    not followed: they lead to everything)."""
    found: list[object] = []
    stack: list[object] = [root]
    seen: set[int] = set()
    skip = (type, types.ModuleType, types.FunctionType, types.CodeType, types.BuiltinFunctionType)
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen or isinstance(item, skip):
            continue
        seen.add(id(item))
        if isinstance(item, types.TracebackType | types.FrameType):
            found.append(item)
            continue
        stack.extend(gc.get_referents(item))
    return found


async def test_failed_outcomes_hold_no_tracebacks(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    clips = tuple(FakeClip(size=300_000) for _ in range(6))
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=clips))
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=200_000, ignore_range=True, times=100))
    report = await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    assert len(report.by_state(ClipState.FAILED)) == 6
    assert all(o.error is not None for o in report.outcomes)
    assert reachable_frames(report) == []


# -- defect 10: a request deleted while its clips re-render --------------------------------


async def test_a_request_deleted_while_clips_rerender_ends_them_at_once(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    stuck = FakeClip(recompiling_reads=1000)
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(stuck,)))
    request = await client.get_shorts(rid)
    await client.delete_request(rid)
    reads = len(fake_ssemble.api_requests)
    report = await client.download_shorts(request, tmp_path, recompile_wait=600)
    (gone,) = report.outcomes
    assert gone.state is ClipState.FAILED  # not not_ready after ten minutes of polling
    assert "not found" in (gone.message or "").lower()
    assert len(fake_ssemble.api_requests) == reads + 1  # one read told it all
