"""The download transport: the one place that streams a clip URL into a ``.part`` file.

The session used here never carries the API key, an ``Authorization`` header or cookies,
also across redirects. A transfer resumes from the size of its ``.part`` with ``Range``
(and ``If-Range`` when the host gave a validator), restarts from zero when the host
ignores the range, verifies the byte count and the MP4 signature, and fsyncs before the
caller renames the file into place.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiofiles
import aiohttp
import anyio
import attrs

from ssemble_async._errors import DownloadError
from ssemble_async._plan import is_clip_content_type, looks_like_mp4, parse_content_range

__all__ = [
    "EXPIRED_STATUSES",
    "Expired",
    "TransferState",
    "Transient",
    "fetch_to_part",
    "open_download_session",
]

#: Statuses from a clip host that mean "this URL is no good any more": get a fresh one.
EXPIRED_STATUSES = frozenset({400, 401, 403, 404, 410})
#: aiohttp's errors for a URL (or a redirect's Location) that is not fetchable HTTP(S).
_NOT_HTTP = (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)
_HEAD_BYTES = 8


class Expired(Exception):
    """The clip host refused the URL (it expired or was revoked); a fresh URL is needed."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"the clip host answered {status}: the temporary URL has expired")


class Transient(Exception):
    """A failure worth retrying (after a backoff), resuming from what is on disk."""


@attrs.define(kw_only=True)
class TransferState:
    """What is known of one clip's partial download, carried from try to try.

    Attributes:
        offset: bytes already in the ``.part`` file.
        validator: the strong ETag (or Last-Modified) the bytes on disk came with.
        total: the full size of the file, once the host said it.
        etag: the host's ETag, as sent.
        last_modified: the host's Last-Modified, as sent.
        transferred: bytes fetched in this run, over all tries.
        head_checked: the MP4 signature was checked as the first bytes streamed in, in
            this run (a file resumed from an earlier run must be checked on disk).
    """

    offset: int = 0
    validator: str | None = None
    total: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    transferred: int = 0
    head_checked: bool = False


def open_download_session(*, read_bufsize: int, user_agent: str) -> aiohttp.ClientSession:
    """A session for clip hosts only: no credentials, no cookies, no decompression."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        read_bufsize=read_bufsize,
        headers={"User-Agent": user_agent, "Accept-Encoding": "identity"},
    )


def _validator(response: aiohttp.ClientResponse) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def describe_os_error(exc: OSError, path: Path) -> str:
    """A sentence for a failed write or rename, naming a full disk plainly."""
    if exc.errno == errno.ENOSPC:
        return f"the disk is full: no space left for {path}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: {exc.strerror} (check the permissions of the destination)"
    return f"cannot write {path}: {exc.strerror or exc}"


async def fetch_to_part(
    session: aiohttp.ClientSession,
    url: str,
    part: Path,
    state: TransferState,
    *,
    chunk_size: int,
    idle_timeout: float,
    on_start: Callable[[TransferState], Awaitable[None]],
    on_bytes: Callable[[int], None],
) -> None:
    """Stream ``url`` into ``part`` from ``state.offset`` until the file is complete.

    ``on_start`` is awaited once the response is accepted and before its body is written
    (the caller records the validator there, so that a killed run can resume); ``on_bytes``
    is called with the size of each block written.

    On return the ``.part`` file holds exactly ``state.total`` bytes (when the host said
    it), opens with an MP4 ``ftyp`` box, and is flushed to disk.

    Raises:
        Expired: the host refused the URL (400/401/403/404/410).
        Transient: a failure worth retrying; ``state`` says where to resume.
        DownloadError: a failure that a retry cannot mend.
        OSError: the file could not be written.
    """
    headers: dict[str, str] = {}
    if state.offset > 0:
        headers["Range"] = f"bytes={state.offset}-"
        if state.validator:
            headers["If-Range"] = state.validator
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=idle_timeout, sock_read=idle_timeout)
    try:
        async with session.get(url, headers=headers, timeout=timeout, max_redirects=5) as response:
            await _receive(response, part, state, chunk_size, on_start, on_bytes)
    except TimeoutError as exc:
        raise Transient(f"no data from the clip host for {idle_timeout:g} s") from exc
    except aiohttp.TooManyRedirects as exc:
        raise DownloadError("the clip host redirected more than 5 times") from exc
    except _NOT_HTTP as exc:
        raise DownloadError(
            "the clip URL cannot be fetched: not a valid http(s) URL"
            f" ({exc.__class__.__name__}: {exc})"
        ) from exc
    except aiohttp.ClientError as exc:
        raise Transient(
            f"the connection to the clip host failed ({exc.__class__.__name__})"
        ) from exc


async def _receive(
    response: aiohttp.ClientResponse,
    part: Path,
    state: TransferState,
    chunk_size: int,
    on_start: Callable[[TransferState], Awaitable[None]],
    on_bytes: Callable[[int], None],
) -> None:
    status = response.status
    if status in EXPIRED_STATUSES:
        raise Expired(status)
    if status == 416:
        _on_unsatisfiable(response, state)
        return
    if status >= 500 or status in (408, 429):
        raise Transient(f"the clip host answered {status}")
    if status not in (200, 206):
        raise DownloadError(f"the clip host answered {status} {response.reason or ''}".rstrip())
    if not is_clip_content_type(response.headers.get("Content-Type")):
        raise Transient(f"the clip host sent {response.content_type} (an error page), not the clip")
    if status == 206:
        span = parse_content_range(response.headers.get("Content-Range"))
        if span is None or span.first != state.offset:
            state.offset, state.validator = 0, None  # an answer we cannot splice: start over
            raise Transient("the clip host answered a different range than asked")
        total = span.total
    else:
        state.offset = 0  # a full answer, whether or not a range was asked for: restart
        total = response.content_length
    if state.total is not None and total is not None and total != state.total and status == 206:
        state.offset, state.validator = 0, None
        raise Transient("the file changed on the clip host while it was being downloaded")
    state.total = total
    state.etag = response.headers.get("ETag")
    state.last_modified = response.headers.get("Last-Modified")
    state.validator = _validator(response)
    await on_start(state)
    await _write_body(response, part, state, chunk_size=chunk_size, on_bytes=on_bytes)


def _on_unsatisfiable(response: aiohttp.ClientResponse, state: TransferState) -> None:
    """A 416: the ``.part`` is complete when the host's size equals it, else start over."""
    raw = response.headers.get("Content-Range", "")
    size = raw.rpartition("/")[2].strip()
    if size.isdigit() and int(size) == state.offset and state.offset > 0:
        state.total = state.offset
        return
    state.offset, state.validator = 0, None
    raise Transient("the clip host refused the resume range; starting over")


async def _write_body(
    response: aiohttp.ClientResponse,
    part: Path,
    state: TransferState,
    *,
    chunk_size: int,
    on_bytes: Callable[[int], None],
) -> None:
    file = await aiofiles.open(part, "r+b" if state.offset else "wb")
    pending: list[bytes] = []
    pending_size = 0
    from_start = state.offset == 0
    if from_start:
        state.head_checked = False
    try:
        if state.offset:
            await file.seek(state.offset)
            await file.truncate()
        # iter_chunks hands over each received chunk as it is, where iter_any would join
        # the buffer into a new object: one copy less per byte.
        async for data, _ in response.content.iter_chunks():
            pending.append(data)
            pending_size += len(data)
            if from_start and not state.head_checked and pending_size >= _HEAD_BYTES:
                head = b"".join(pending)[:_HEAD_BYTES]
                if not looks_like_mp4(head):
                    raise DownloadError(
                        f"the clip host sent something that is not an MP4 ({head!r}...)"
                    )
                state.head_checked = True
            if pending_size >= chunk_size:
                await _flush(file, pending, pending_size, state, on_bytes)
                pending, pending_size = [], 0
    finally:
        # Shielded, even when cancelled: keep every byte that arrived (a retry or the next
        # run resumes after it) and never leave the file open.
        with anyio.CancelScope(shield=True):
            try:
                await _flush(file, pending, pending_size, state, on_bytes)
            finally:
                await file.close()
    if state.total is not None and state.offset != state.total:
        raise Transient(f"the body ended after {state.offset} of {state.total} bytes")
    if from_start and not state.head_checked:
        raise DownloadError(f"the clip host sent {state.offset} bytes, too few for an MP4")
    await anyio.to_thread.run_sync(_fsync, part)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _Writable(Protocol):
    async def writelines(self, lines: list[bytes], /) -> None: ...


async def _flush(
    file: _Writable,
    pending: list[bytes],
    size: int,
    state: TransferState,
    on_bytes: Callable[[int], None],
) -> None:
    if not pending:
        return
    await file.writelines(pending)  # no joined copy of the batch
    state.offset += size
    state.transferred += size
    on_bytes(size)


async def read_head(path: Path) -> bytes:
    """The first bytes of a file, to check its signature."""
    async with aiofiles.open(path, "rb") as file:
        return await file.read(_HEAD_BYTES)
