"""The download transport: the one place that streams a clip URL into a ``.part`` file.

The session used here never carries the API key, an ``Authorization`` header or cookies,
also across redirects. A transfer resumes from the size of its ``.part`` with ``Range``
(and ``If-Range`` when the host gave a validator), restarts from zero when the host
ignores the range, verifies the byte count and the MP4 signature, and fsyncs before the
caller renames the file into place.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiohttp
import anyio
import attrs

from ssemble_async._config import ConnectionSettings, proxy_for
from ssemble_async._errors import DownloadError
from ssemble_async._mp4 import Mp4Layout, mp4_layout
from ssemble_async._plan import is_clip_content_type, looks_like_mp4, parse_content_range

__all__ = [
    "EXPIRED_STATUSES",
    "Expired",
    "NotAClip",
    "TransferState",
    "Transient",
    "fetch_to_part",
    "one_write",
    "open_download_session",
]

_T = TypeVar("_T")

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


class NotAClip(DownloadError):
    """The bytes the host sent are not a clip: the ``.part`` holds nothing worth keeping."""


class NotAnMp4OnDisk(Transient):
    """A ``.part`` resumed from an earlier run does not open with an MP4 signature.

    Its start was not fetched in this run, so it cannot be trusted: the transfer starts
    over from zero.
    """

    def __init__(self) -> None:
        super().__init__("the resumed file does not start like an MP4; fetching it again")


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


def open_download_session(
    *, read_bufsize: int, user_agent: str, connection: ConnectionSettings
) -> aiohttp.ClientSession:
    """A session for clip hosts only: no credentials, no cookies, no decompression.

    It never reads the environment itself (aiohttp's ``trust_env`` would also read
    ``~/.netrc`` and send its passwords to the clip hosts): `fetch_to_part()` gives
    each request its proxy.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=connection.limit_per_host),
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
    on_sealed: Callable[[], None],
    connection: ConnectionSettings,
) -> None:
    """Stream ``url`` into ``part`` from ``state.offset`` until the file is complete.

    ``on_start`` is awaited once the response is accepted and before its body is written
    (the caller records the validator there, so that a killed run can resume), after the
    ``.part`` was cut to ``state.offset``; but for a body of one write (see `one_write()`),
    which is never worth resuming, it comes first and must not record a validator.
    ``on_bytes`` is called with the size of each chunk as it is received, before it is
    written. ``on_sealed`` is called in the thread that flushed and closed the complete
    file, right after that (the caller renames it into place there: one thread trip).

    On return the ``.part`` file holds exactly ``state.total`` bytes (when the host said
    it), opens with an MP4 ``ftyp`` box, is flushed to disk, and ``on_sealed`` returned.

    Raises:
        Expired: the host refused the URL (400/401/403/404/410).
        Transient: a failure worth retrying; ``state`` says where to resume.
        DownloadError: a failure that a retry cannot mend.
        OSError: the file could not be written (or ``on_sealed`` raised it).
    """
    headers: dict[str, str] = {}
    if state.offset > 0 and state.validator:
        headers["Range"] = f"bytes={state.offset}-"
        headers["If-Range"] = state.validator
    else:
        state.offset = 0  # without a validator nothing can tell this file's rest from another's
    async with clip_response(session, url, headers, idle_timeout, connection) as response:
        await _receive(response, part, state, chunk_size, on_start, on_bytes, on_sealed)


@asynccontextmanager
async def clip_response(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    idle_timeout: float,
    connection: ConnectionSettings,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """One GET to a clip host, its failures (also while the body is read inside the block)
    told as `Transient` (worth a retry) or `DownloadError` (not)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=idle_timeout, sock_read=idle_timeout)
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=timeout,
            max_redirects=5,
            proxy=proxy_for(url, connection, os.environ),
            ssl=connection.ssl,
        ) as response:
            yield response
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


def accept_response(response: aiohttp.ClientResponse, state: TransferState) -> int | None:
    """Check a clip host's answer (other than a 416: see `check_unsatisfiable()`) against
    the transfer's state; return the file's full size when the host said it.

    A partial answer (206) must be the range asked for, of the same file (its validator and
    size); a full answer (200) starts over: ``state.offset`` goes back to 0. The answer's
    validator, ETag and Last-Modified are kept in ``state``.

    Raises:
        Expired: the host refused the URL.
        Transient: worth a retry (a server error, an error page, another range or file).
        DownloadError: a status no retry can mend.
    """
    status = response.status
    if status in EXPIRED_STATUSES:
        raise Expired(status)
    if status >= 500 or status in (408, 429):
        raise Transient(f"the clip host answered {status}")
    if status not in (200, 206):
        raise DownloadError(f"the clip host answered {status} {response.reason or ''}".rstrip())
    if not is_clip_content_type(response.headers.get("Content-Type")):
        raise Transient(f"the clip host sent {response.content_type} (an error page), not the clip")
    validator = _validator(response)
    if status == 206:
        span = parse_content_range(response.headers.get("Content-Range"))
        if span is None or span.first != state.offset:
            state.offset, state.validator = 0, None  # an answer we cannot splice: start over
            raise Transient("the clip host answered a different range than asked")
        if validator != state.validator or (
            state.total is not None and span.total is not None and span.total != state.total
        ):
            # A host that ignores If-Range sends the rest of whatever it has now: bytes of
            # another file, or of a file we cannot tell from the one on disk. Never splice.
            state.offset, state.validator = 0, None
            raise Transient("the file changed on the clip host since its first bytes were saved")
        length = response.content_length
        if length is not None and length > span.last - span.first + 1:
            # longer than the range it says: which is wrong? start over, before writing a
            # byte (a shorter one ends early, like a cut connection: its bytes are kept)
            state.offset, state.validator = 0, None
            raise Transient(
                f"the clip host's answer is {length} bytes long, more than the"
                f" {span.last - span.first + 1} of the range it says"
            )
        total = span.total
    else:
        state.offset = 0  # a full answer, whether or not a range was asked for: restart
        total = response.content_length
    state.etag = response.headers.get("ETag")
    state.last_modified = response.headers.get("Last-Modified")
    state.validator = validator
    return total


async def _receive(
    response: aiohttp.ClientResponse,
    part: Path,
    state: TransferState,
    chunk_size: int,
    on_start: Callable[[TransferState], Awaitable[None]],
    on_bytes: Callable[[int], None],
    on_sealed: Callable[[], None],
) -> None:
    if response.status == 416:
        check_unsatisfiable(response, state)
        # The .part holds the whole file: verify and flush it like a finished body.
        async with _part_file(part, state.offset) as file:
            await _seal(file, state, [], 0, on_sealed)
        return
    state.total = accept_response(response, state)
    async with _part_file(part, state.offset) as file:
        if not one_write(state, chunk_size):
            # Cut the .part to the bytes known to be right *before* the caller records the
            # validator the next bytes come with: a kill in between never pairs old bytes
            # with a new validator. (A body of one write records none: it is cut in the
            # thread trip that writes, checks, flushes and closes it.)
            await in_thread(file.open)
        await on_start(state)
        await _write_body(
            response, file, state, chunk_size=chunk_size, on_bytes=on_bytes, on_sealed=on_sealed
        )


def one_write(state: TransferState, chunk_size: int) -> bool:
    """True for a body written in one go: from zero, of a known size of at most ``chunk_size``.

    Nothing in such a body is worth resuming: no validator is recorded for it.
    """
    return state.offset == 0 and state.total is not None and state.total <= chunk_size


def check_unsatisfiable(response: aiohttp.ClientResponse, state: TransferState) -> None:
    """A 416: the ``.part`` is complete when the host's size equals it, else start over."""
    raw = response.headers.get("Content-Range", "")
    size = raw.rpartition("/")[2].strip()
    validator = _validator(response)
    if (
        size.isdigit()
        and int(size) == state.offset > 0
        and state.total in (None, state.offset)
        and validator in (None, state.validator)
    ):
        state.total = state.offset
        return
    state.offset, state.validator = 0, None
    raise Transient("the clip host refused the resume range; starting over")


def _open_part(part: Path, keep: int) -> int:
    """Open the ``.part`` for writing and cut it to its first ``keep`` bytes."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0)
    if not keep:
        return os.open(part, flags | os.O_TRUNC, 0o666)
    descriptor = os.open(part, flags, 0o666)
    try:
        os.ftruncate(descriptor, keep)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


@asynccontextmanager
async def _part_file(part: Path, keep: int) -> AsyncIterator[_PartFile]:
    """The ``.part``, to be cut to its first ``keep`` bytes when first used; closed on exit
    (shielded) when it was opened and sealing did not close it."""
    file = _PartFile(part, keep)
    try:
        yield file
    finally:
        if file.descriptor is not None:
            await in_thread(file.close)


class _PartFile:
    """A ``.part`` file, written only at explicit offsets.

    Opened, and cut to its first ``keep`` bytes, by the first blocking call that uses it:
    that call's thread trip does it.
    """

    def __init__(self, part: Path, keep: int) -> None:
        self.part = part
        self.keep = keep
        self.descriptor: int | None = None

    def open(self) -> int:
        """The open descriptor; the first call opens the file and cuts it (blocking)."""
        if self.descriptor is None:
            self.descriptor = _open_part(self.part, self.keep)
        return self.descriptor

    def write_at(self, offset: int, chunks: list[bytes]) -> None:
        """Write ``chunks`` one after the other from ``offset`` (blocking).

        Positional: a batch written twice lands on the same bytes, never after them. One
        system call for the lot where the system has ``pwritev``.
        """
        descriptor = self.open()
        views = [memoryview(chunk) for chunk in chunks if chunk]
        first = 0
        while first < len(views):
            written = _pwritev(descriptor, views[first : first + _IOV_MAX], offset)
            offset += written
            while first < len(views) and written >= len(views[first]):
                written -= len(views[first])
                first += 1
            if written:
                views[first] = views[first][written:]

    def cut_to_nothing(self) -> None:
        """Cut the file to zero bytes (blocking): none of them can be trusted."""
        os.ftruncate(self.open(), 0)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (blocking)."""
        return _pread(self.open(), size, offset)

    def seal(
        self,
        offset: int,
        tail: list[bytes],
        *,
        check_head: bool,
        check_layout: bool,
        then: Callable[[], None],
    ) -> None:
        """Write ``tail`` from ``offset`` (the body's last batch, which ends the file), check
        what was asked of the file, flush it to disk, close it, then call ``then`` (blocking).

        The file is flushed (and ``then`` called) only when it passed; it is closed in any
        case.

        Raises:
            NotAnMp4OnDisk: ``check_head`` and the file does not open with ``ftyp``.
            Transient: ``check_layout`` and its boxes do not show a whole file.
        """
        size = offset + sum(len(chunk) for chunk in tail)
        try:
            self.write_at(offset, tail)
            if check_head and not looks_like_mp4(self.read_at(0, _HEAD_BYTES)):
                raise NotAnMp4OnDisk
            if check_layout:
                layout = mp4_layout(self.read_at, size)
                if layout is Mp4Layout.SHORT:
                    raise Transient(f"the body ended after {size} bytes, inside the MP4's last box")
                if layout is Mp4Layout.UNKNOWN:
                    raise Transient(
                        f"the body of unknown length ended after {size} bytes; asking the host"
                        " whether that is all"
                    )
            os.fsync(self.open())  # the writable handle: Windows refuses a read-only one
        finally:
            self.close()
        then()

    def close(self) -> None:
        """Close the descriptor, if open (blocking)."""
        descriptor, self.descriptor = self.descriptor, None
        if descriptor is not None:
            os.close(descriptor)


def _pwrite_portable(descriptor: int, data: memoryview, offset: int) -> int:
    os.lseek(descriptor, offset, os.SEEK_SET)
    return os.write(descriptor, data)


def _pread_portable(descriptor: int, size: int, offset: int) -> bytes:
    os.lseek(descriptor, offset, os.SEEK_SET)
    return os.read(descriptor, size)


def _pwritev_portable(descriptor: int, views: Sequence[memoryview], offset: int) -> int:
    return _pwrite(descriptor, views[0], offset)  # one buffer a call


def _iov_max() -> int:
    """How many buffers one ``pwritev`` may take (POSIX allows as few as 16)."""
    try:
        return max(16, os.sysconf("SC_IOV_MAX"))
    except (AttributeError, ValueError, OSError):
        return 16


# os.pwrite/os.pread are POSIX; elsewhere a seek and a write in the same call do the same
# for a file that only one task writes.
_pwrite: Callable[[int, memoryview, int], int] = getattr(os, "pwrite", _pwrite_portable)
_pread: Callable[[int, int, int], bytes] = getattr(os, "pread", _pread_portable)
_pwritev: Callable[[int, Sequence[memoryview], int], int] = getattr(
    os, "pwritev", _pwritev_portable
)
_IOV_MAX = _iov_max()


#: At most this many threads do the transfers' file work at once (anyio's default is 40);
#: they are started as needed and end with the process.
FILE_THREADS = 64


class _FileThreads:
    """The process's pool for the transfers' file work, made on first use (once, whatever
    the number of event loops asking at once) and made again in a forked child, which has
    none of its parent's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="ssemble-files")
            return self._pool

    def forget(self) -> None:
        self._lock = threading.Lock()  # a lock held in the parent at the fork stays held
        self._pool = None


_FILE_THREADS = _FileThreads()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_FILE_THREADS.forget)


async def in_thread(function: Callable[[], _T]) -> _T:
    """``function()`` in a thread of the transfers' own pool, waited for whole.

    A cancel waits for it to end (its thread would finish it anyway, and what it leaves
    must be known). About half the CPU of a trip through ``anyio.to_thread``
    (``benchmarks/thread_trips.py``); the transfers make one per clip and one per write
    batch. A pool of their own: a slow disk's ``fsync`` never holds up the loop's default
    executor (DNS lookups) or anyio's threads. Once the interpreter is shutting down
    (``concurrent.futures`` takes no more work after the main thread has ended, while a
    download may still run in another thread's event loop), anyio's threads do it.
    """
    with anyio.CancelScope(shield=True):
        try:
            future = asyncio.get_running_loop().run_in_executor(_FILE_THREADS.pool(), function)
        except RuntimeError:  # the pool takes no more work: the function never ran
            result = await anyio.to_thread.run_sync(function)
        else:
            result = await future
    return result


async def _write_body(
    response: aiohttp.ClientResponse,
    file: _PartFile,
    state: TransferState,
    *,
    chunk_size: int,
    on_bytes: Callable[[int], None],
    on_sealed: Callable[[], None],
) -> None:
    pending: list[bytes] = []
    pending_size = 0
    from_start = state.offset == 0
    if from_start:
        state.head_checked = False
    try:
        # iter_chunks hands over each received chunk as it is, where iter_any would join
        # the buffer into a new object: one copy less per byte.
        async for data, _ in response.content.iter_chunks():
            pending.append(data)
            pending_size += len(data)
            on_bytes(len(data))  # as received: progress moves before the batch is written
            if from_start and not state.head_checked and pending_size >= _HEAD_BYTES:
                head = b"".join(pending)[:_HEAD_BYTES]
                if not looks_like_mp4(head):
                    raise NotAClip(f"the clip host sent something that is not an MP4 ({head!r}...)")
                state.head_checked = True
            if state.total is not None and state.offset + pending_size > state.total:
                # An answer longer than the size it announced is wrong somewhere: stop at the
                # first byte too many (a host that never stops would fill the disk), keep
                # none of its bytes (the .part is cut to nothing before anything else, so
                # that no later run resumes after them), and start over.
                pending, pending_size = [], 0
                state.offset, state.validator = 0, None
                if file.descriptor is not None:  # batches of this answer may be in it
                    await in_thread(file.cut_to_nothing)
                raise Transient(
                    f"the clip host sent more than the {state.total} bytes it announced"
                )
            # A full batch is written now, unless it ends the body exactly: the trip that
            # seals the file writes that one. (A body of unknown length is written batch by
            # batch: never held whole in memory.)
            if pending_size >= chunk_size and state.offset + pending_size != state.total:
                batch, size = pending, pending_size
                pending, pending_size = [], 0  # handed over before the write can be cancelled
                await _flush(file, batch, size, state)
        received = state.offset + pending_size
        if state.total is not None and received < state.total:
            raise Transient(f"the body ended after {received} of {state.total} bytes")
        if from_start and not state.head_checked:
            raise NotAClip(f"the clip host sent {received} bytes, too few for an MP4")
        tail, tail_size = pending, pending_size
        pending, pending_size = [], 0
    finally:
        # Keep every byte that arrived, even when cancelled or cut: a retry or the next run
        # resumes after it.
        await _flush(file, pending, pending_size, state)
    await _seal(file, state, tail, tail_size, on_sealed)


async def _seal(
    file: _PartFile,
    state: TransferState,
    tail: list[bytes],
    tail_size: int,
    on_sealed: Callable[[], None],
) -> None:
    """Write the last batch, verify what the transfer could not see as it streamed, flush,
    close, and hand the file to ``on_sealed``: one thread trip.

    A file resumed from an earlier run has its signature checked on disk; a body of unknown
    length has its MP4 box sizes checked against the bytes received (a cut body resumes
    from here; a host with nothing more answers 416 with the size).
    """
    offset = state.offset
    # Counted before the trip, which writes them before anything else can fail: a check
    # that fails resumes after them (a failed write fails the clip; a later run goes by
    # the size on disk).
    state.offset += tail_size
    state.transferred += tail_size
    try:
        await in_thread(
            functools.partial(
                file.seal,
                offset,
                tail,
                check_head=not state.head_checked,
                check_layout=state.total is None,
                then=on_sealed,
            )
        )
    except NotAnMp4OnDisk:
        state.offset, state.validator = 0, None
        raise
    state.head_checked = True


async def _flush(
    file: _PartFile,
    pending: list[bytes],
    size: int,
    state: TransferState,
) -> None:
    """Write a batch at the verified offset, exactly once, then move the offset past it.

    Shielded: a write that started completes (its thread would finish it anyway) and is
    counted, so a cancel can never make the same bytes be written at another offset.
    """
    if not pending:
        return
    await in_thread(functools.partial(file.write_at, state.offset, pending))
    state.offset += size
    state.transferred += size
