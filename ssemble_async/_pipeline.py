"""The download pipeline: requests in, one verified file and one outcome per clip out.

All of it runs inside one anyio task group; nothing outlives the call:

```text
feed (read requests) ──► clip queue ──► N workers ──► outcomes stream ──► caller
     │                       ▲              │
     └─► recompile watcher ──┘              └─► fresh URL on expiry
         (one re-read of the request per round, shared with the workers)
```

Each request folder is written by one run at a time: its `RequestStore` takes the
folder's lock before reading the manifest, and lets it go once every clip of the request
has its outcome. The pipeline reaches the API only through `RequestReader` (the two
calls it needs), the bytes only through `fetch_clip()`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import aiofiles.os
import aiohttp
import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ssemble_async import _clock
from ssemble_async._config import ConnectionSettings, RetryPolicy
from ssemble_async._download_models import (
    ClipOutcome,
    ClipState,
    DownloadReport,
    DownloadStats,
    TransferProgress,
)
from ssemble_async._errors import (
    AuthenticationError,
    DownloadError,
    NotFoundError,
    PermissionDeniedError,
    RequestFailedError,
    RequestNotReadyError,
    SsembleError,
)
from ssemble_async._fetch import FetchSettings, fetch_clip, may_resume, resume_state
from ssemble_async._manifest import (
    Manifest,
    ManifestEntry,
    Partial,
    RequestStore,
    encode_sidecar,
    load_manifest,
)
from ssemble_async._models import RequestState, RequestStatus, Short, ShortsRequest
from ssemble_async._naming import check_name_template, render_name
from ssemble_async._plan import clip_file_names, is_clip_file_name, safe_name, select_clips
from ssemble_async._quota import Priority
from ssemble_async._transfer import (
    NotAClip,
    TransferState,
    describe_os_error,
    open_download_session,
)

__all__ = [
    "DownloadOptions",
    "DownloadStream",
    "RequestReader",
    "RequestRef",
    "request_key",
    "run_pipeline",
    "unique_requests",
]

logger = logging.getLogger("ssemble_async")

READ_BUFFER = 256 * 1024
MAX_URL_REFRESHES = 3
MAX_TRIES = 50
FIRST_RECOMPILE_ROUND = 30.0
MAX_RECOMPILE_INTERVAL = 120.0
RESOLVE_CONCURRENCY = 8
#: Seconds a re-read that mended no refused URL spares the other clips another re-read.
FUTILE_FOR = 60.0
#: API errors after which re-reading a request cannot help.
_FINAL_API_ERRORS = (NotFoundError, AuthenticationError, PermissionDeniedError)

RequestRef = str | ShortsRequest


class RequestReader(Protocol):
    """The API calls the pipeline needs (a client provides them)."""

    async def get_shorts(self, request_id: str) -> ShortsRequest:
        """Read a whole request (the caller's own call)."""

    async def read_request(
        self, request_id: str, *, priority: Priority, deadline: float | None
    ) -> ShortsRequest:
        """Read a whole request again, at ``priority``, giving up at ``deadline``."""

    def wait_many(
        self,
        requests: list[RequestRef],
        *,
        timeout: float,
        on_progress: Callable[[RequestStatus], None] | None = None,
    ) -> AsyncGenerator[tuple[str, ShortsRequest | SsembleError], None]:
        """Wait for requests through the client's watcher; yield each as it ends; tell
        ``on_progress`` each status seen meanwhile."""


@attrs.frozen(kw_only=True)
class DownloadOptions:
    """The tuning of one download call (the keywords of ``download_shorts``)."""

    concurrency: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    chunk_size: int = attrs.field(default=1024 * 1024, validator=attrs.validators.ge(64 * 1024))
    idle_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    recompile_wait: float = attrs.field(default=600.0, validator=attrs.validators.ge(0))
    overwrite: bool = False
    wait: bool = False
    wait_timeout: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0))
    skip_not_ready: bool = False
    name: str | None = attrs.field(default=None)
    top: int | None = attrs.field(default=None)
    min_score: float | None = attrs.field(default=None)

    @name.validator
    def _check_name(self, _: attrs.Attribute[str | None], value: str | None) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise TypeError(f"name must be a template string, got {type(value).__name__}")
        try:
            check_name_template(value)
        except ValueError as exc:
            raise ValueError(f"name={value!r}: {exc}") from None

    @top.validator
    def _check_top(self, _: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"top must be a whole number, 1 or more, got {value!r}")
        if value is not None and value < 1:
            raise ValueError(f"top must be 1 or more, got {value}")

    @min_score.validator
    def _check_min_score(self, _: attrs.Attribute[float | None], value: float | None) -> None:
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"min_score must be a finite number, got {value!r}")


def name_fields(request: ShortsRequest, short: Short, rank: int) -> dict[str, object]:
    """What a file-name template may use for one clip (see ``NAME_FIELDS``)."""
    return {
        "clip_id": short.id,
        "title": short.title,
        "score": short.viral_score or 0.0,
        "rank": rank,
        "duration": short.duration or 0.0,
        "request_id": request.request_id,
    }


@attrs.define(eq=False)
class _Active:
    title: str
    done: int = 0
    total: int | None = None


@attrs.define(eq=False)
class _Tracker:
    """Mutable counters behind `DownloadStats` (read as snapshots)."""

    requests_pending: int
    clips_known: int = 0
    states: dict[ClipState, int] = attrs.field(factory=dict)
    queued: int = 0
    waiting: int = 0
    active: dict[tuple[str, str], _Active] = attrs.field(factory=dict)
    bytes_finished: int = 0
    bytes_received: int = 0
    folders_busy: dict[str, Path] = attrs.field(factory=dict)
    waited: dict[str, RequestStatus] = attrs.field(factory=dict)

    def count(self, state: ClipState) -> None:
        self.states[state] = self.states.get(state, 0) + 1

    def snapshot(self) -> DownloadStats:
        in_flight = tuple(
            TransferProgress(request_id=rid, clip_id=cid, title=a.title, done=a.done, total=a.total)
            for (rid, cid), a in self.active.items()
        )
        return DownloadStats(
            clips_known=self.clips_known,
            states=dict(self.states),
            queued=self.queued,
            waiting=self.waiting,
            in_flight=in_flight,
            bytes_done=self.bytes_finished + sum(t.done for t in in_flight),
            bytes_expected=self.bytes_finished
            + sum(t.done if t.total is None else t.total for t in in_flight),
            bytes_received=self.bytes_received,
            requests_pending=self.requests_pending,
            folders_busy=tuple(self.folders_busy.values()),
            requests_waited=tuple(self.waited.values()),
        )


def _detached(exc: SsembleError) -> SsembleError:
    """``exc`` without the tracebacks of its chain.

    An outcome keeps its error for as long as the caller keeps the report; a traceback
    would keep every frame of the failed transfer alive with it, buffers included.
    """
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc


def _metadata_unsaved(outcome: ClipOutcome, exc: OSError, folder: Path) -> ClipOutcome:
    """``outcome`` of a clip saved on disk whose manifest entry or sidecar could not be."""
    note = describe_os_error(exc, folder)
    return attrs.evolve(outcome, message=f"clip saved; its metadata not: {note}")


async def _size_of(path: Path) -> int | None:
    try:
        return (await aiofiles.os.stat(path)).st_size
    except FileNotFoundError:
        return None


async def _remove(path: Path) -> None:
    with suppress(OSError):
        await aiofiles.os.remove(path)


class _RequestContext:
    """What the tasks share about one request: its paths, its stored state, fresh reads."""

    def __init__(
        self,
        reader: RequestReader,
        request: ShortsRequest,
        root: Path,
        options: DownloadOptions | None = None,
    ) -> None:
        self.reader = reader
        self.options = options or DownloadOptions()
        self.request_id = request.request_id
        self.dir = root / safe_name(request.request_id)
        self.store = RequestStore(self.dir, request)
        self.version = 0
        self.remaining = 0
        self.names: dict[str, str] = {}
        #: the clips chosen by ``top`` / ``min_score`` at the first read (None: all of them)
        self.chosen: frozenset[str] | None = None
        self._set_request(request)
        self._refreshing: anyio.Event | None = None
        self._refresh_error: SsembleError | None = None
        # re-read version -> (it mended no refused URL, when that was learnt)
        self._futile: dict[int, tuple[bool, float]] = {}

    def _set_request(self, request: ShortsRequest) -> None:
        self.request = self.store.request = request
        by_id: dict[str, Short] = {}
        for short in request.shorts_by_score():
            by_id.setdefault(short.id, short)  # a repeated clip id: the first one counts
        rank = {clip_id: n for n, clip_id in enumerate(by_id, start=1)}
        options = self.options
        if options.top is not None or options.min_score is not None:
            if self.chosen is None:  # the choice is made once: a re-read does not change it
                picked = select_clips(
                    [*by_id.values()], top=options.top, min_score=options.min_score
                )
                self.chosen = frozenset(short.id for short in picked)
            by_id = {clip_id: s for clip_id, s in by_id.items() if clip_id in self.chosen}
        self.shorts = by_id
        wanted = {}
        if options.name is not None:
            wanted = {
                clip_id: render_name(options.name, name_fields(request, short, rank[clip_id]))
                for clip_id, short in by_id.items()
            }
        # clips that appear on a later read get names of their own; known ones keep theirs
        self.names = clip_file_names(by_id, wanted, keep=self.names)

    def keep_recorded_names(self) -> None:
        """Complete files keep the names the manifest records (a run with another ``name``
        template, or none, finds them present instead of downloading them again)."""
        recorded = {}
        for clip_id in self.shorts:
            entry = self.store.entry(clip_id)
            if entry.complete and entry.file is not None and is_clip_file_name(entry.file):
                recorded[clip_id] = entry.file
        if all(self.names.get(clip_id) == name for clip_id, name in recorded.items()):
            return
        taken = {name.casefold() for name in recorded.values()}
        keep, moved = dict(recorded), {}
        for clip_id, name in self.names.items():
            if clip_id in recorded:
                continue
            if name.casefold() in taken:  # a recorded name is this clip's: it gets another
                moved[clip_id] = name[: -len(".mp4")]
            else:
                keep[clip_id] = name
        self.names = clip_file_names(moved, moved, keep=keep)

    def path_of(self, clip_id: str) -> Path:
        return self.dir / self.names[clip_id]

    def short(self, clip_id: str) -> Short | None:
        return self.shorts.get(clip_id)

    def url_of(self, clip_id: str) -> str | None:
        short = self.shorts.get(clip_id)
        return None if short is None else short.video_url

    def futile(self, version: int) -> bool:
        # only for a while: URLs the read gave may expire later on their own
        futile, since = self._futile.get(version, (False, 0.0))
        return futile and _clock.monotonic() - since < FUTILE_FOR

    def note_refresh(self, version: int, *, mended: bool) -> None:
        # one refused clip given a new URL makes the read useful for all of them
        futile = not mended and self._futile.get(version, (True, 0.0))[0]
        self._futile[version] = (futile, _clock.monotonic())

    async def refresh(
        self,
        seen_version: int,
        *,
        priority: Priority = Priority.URGENT,
        deadline: float | None = None,
    ) -> int:
        """Read the request again unless someone did since ``seen_version``; one call for all.

        A fresh URL for a running transfer goes first (``URGENT``); re-checks of
        re-rendering clips pass ``RECHECK`` and their deadline. Returns the version now
        current.
        """
        while self.version <= seen_version:
            if self._refreshing is not None:
                await self._refreshing.wait()
                if self._refresh_error is not None and self.version <= seen_version:
                    raise self._refresh_error
                continue
            self._refreshing = event = anyio.Event()
            self._refresh_error = None
            try:
                request = await self.reader.read_request(
                    self.request_id, priority=priority, deadline=deadline
                )
                self.version += 1
                self._set_request(request)
            except SsembleError as exc:
                self._refresh_error = exc
                raise
            finally:
                self._refreshing = None
                event.set()
        return self.version


@attrs.frozen
class _ClipJob:
    context: _RequestContext
    clip_id: str
    score: float


class DownloadStream:
    """The outcomes of a running download, as they finish (an async iterator).

    Made by [`Client.stream_downloads()`][ssemble_async.Client.stream_downloads]. Leaving its
    ``async with`` block stops every transfer still running; their ``.part`` files stay, and the
    next run resumes them.

    Attributes:
        request_errors: request id -> the error that kept its clips from being known.
    """

    def __init__(self, receive: MemoryObjectReceiveStream[ClipOutcome], tracker: _Tracker) -> None:
        self._receive = receive
        self._tracker = tracker
        self._outcomes: list[ClipOutcome] = []
        self.request_errors: dict[str, SsembleError] = {}

    def __aiter__(self) -> DownloadStream:
        return self

    async def __anext__(self) -> ClipOutcome:
        try:
            outcome = await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self._outcomes.append(outcome)
        return outcome

    def statistics(self) -> DownloadStats:
        """A snapshot of the download now: clips by state, bytes, transfers in flight."""
        return self._tracker.snapshot()

    def report(self) -> DownloadReport:
        """The outcomes received so far and the request errors, as a report."""
        return DownloadReport(
            outcomes=tuple(self._outcomes), request_errors=dict(self.request_errors)
        )


class _Pipeline:
    def __init__(
        self,
        reader: RequestReader,
        root: Path,
        options: DownloadOptions,
        retry: RetryPolicy,
        stream: DownloadStream,
        tracker: _Tracker,
        outcomes: MemoryObjectSendStream[ClipOutcome],
        connection: ConnectionSettings,
    ) -> None:
        self.reader = reader
        self.root = root
        self.options = options
        self.fetch = FetchSettings(
            chunk_size=options.chunk_size,
            idle_timeout=options.idle_timeout,
            retry=retry,
            max_tries=MAX_TRIES,
            max_url_refreshes=MAX_URL_REFRESHES,
            connection=connection,
        )
        self.stream = stream
        self.tracker = tracker
        self.outcomes = outcomes
        self.queue, self.queue_out = anyio.create_memory_object_stream[_ClipJob](math.inf)
        self.open_stores: set[RequestStore] = set()

    # -- outcomes -----------------------------------------------------------------------

    def outcome(
        self, context: _RequestContext, short: Short, state: ClipState, **fields: Any
    ) -> ClipOutcome:
        error = fields.pop("error", None)
        return ClipOutcome(
            request_id=context.request_id,
            clip_id=short.id,
            state=state,
            path=context.path_of(short.id),
            title=short.title,
            viral_score=short.viral_score,
            error=None if error is None else _detached(error),
            **fields,
        )

    async def finish(
        self,
        context: _RequestContext,
        outcome: ClipOutcome,
        *,
        recorded: bool = False,
        **changes: Any,
    ) -> None:
        """Record a final outcome (and a sidecar for a file) unless ``recorded`` (a file
        downloaded now was, as it was renamed into place), emit it, and close the request's
        folder after its last clip."""
        self.tracker.count(outcome.state)
        self.tracker.bytes_finished += outcome.size
        if not recorded:
            outcome = await self.record(context, outcome, changes)
        await self.outcomes.send(outcome)
        context.remaining -= 1
        if context.remaining == 0:
            await self.close_store(context.store)

    async def record(
        self, context: _RequestContext, outcome: ClipOutcome, changes: dict[str, Any]
    ) -> ClipOutcome:
        """Store a final outcome in the request's manifest, with a sidecar for a file;
        return the outcome, saying so if its metadata could not be written."""
        short = context.short(outcome.clip_id) or Short(id=outcome.clip_id)
        complete = outcome.state in (ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT)
        entry = attrs.evolve(
            context.store.entry(outcome.clip_id),
            file=context.names[outcome.clip_id],
            state=outcome.state.value,
            complete=complete,
            title=short.title,
            viral_score=short.viral_score,
            message=outcome.message,
            **changes,
        )
        sidecar = None
        if complete:
            path = context.path_of(outcome.clip_id)
            sidecar = (path.with_name(path.name + ".json"), context.store.sidecar_of(short))
        try:
            with _clock.real_work():
                await context.store.record(outcome.clip_id, entry, sidecar=sidecar)
        except OSError as exc:
            if outcome.state is not ClipState.FAILED:
                return _metadata_unsaved(outcome, exc, context.dir)
        return outcome

    async def close_store(self, store: RequestStore) -> None:
        if store in self.open_stores:
            self.open_stores.discard(store)
            await store.close()

    async def close_all(self) -> None:
        """Close every request folder still open (the run is ending early)."""
        with anyio.CancelScope(shield=True):
            for store in list(self.open_stores):
                await self.close_store(store)

    # -- requests -----------------------------------------------------------------------

    async def resolve(self, item: RequestRef, limiter: anyio.CapacityLimiter) -> ShortsRequest:
        """Read a request; refuse it when it is not completed."""
        if isinstance(item, ShortsRequest):
            request = item
        else:
            async with limiter:
                request = await self.reader.get_shorts(item)
        if request.status is RequestState.COMPLETED:
            return request
        if request.status in (RequestState.FAILED, RequestState.CANCELLED):
            raise RequestFailedError(request.request_id, request.status_raw, request.failure_reason)
        raise RequestNotReadyError(request.request_id, request.status_raw)

    async def skip_finished(self, requests: Sequence[RequestRef]) -> list[RequestRef]:
        """Report the requests whose folder already holds every clip; return the others.

        A request whose manifest records each clip complete (with its file unchanged) or
        skipped as an error clip is not read from the API again (unless ``overwrite``).
        """
        if self.options.overwrite:
            return list(requests)
        rest: list[RequestRef] = []
        folders = [self.root / safe_name(request_key(item)) for item in requests]
        found = await anyio.to_thread.run_sync(lambda: [*map(finished_on_disk, folders)])
        for item, finished in zip(requests, found, strict=True):  # one thread trip for all
            if finished is None:
                rest.append(item)
                continue
            await self.report_finished(finished)
        return rest

    async def report_finished(self, outcomes: list[ClipOutcome]) -> None:
        """Report a request found finished at its destination (the chosen clips of it)."""
        outcomes = chosen_outcomes(outcomes, self.options)
        self.tracker.requests_pending -= 1
        self.tracker.clips_known += len(outcomes)
        for outcome in outcomes:
            self.tracker.count(outcome.state)
            self.tracker.bytes_finished += outcome.size
            await self.outcomes.send(outcome)

    def context(self, request: ShortsRequest) -> _RequestContext:
        context = _RequestContext(self.reader, request, self.root, self.options)
        self.tracker.clips_known += len(context.shorts)
        return context

    async def open_folder(self, context: _RequestContext, *, wait: bool = True) -> bool | None:
        """Take the request folder's lock and read its state.

        Returns True when open, False when another run holds the lock and ``wait`` is
        False, None when the folder cannot be used (its clips have failed outcomes then).
        """
        store = context.store

        def on_wait() -> None:
            self.tracker.folders_busy[context.request_id] = context.dir
            logger.warning(
                "another download is writing into %s; waiting for it to finish", context.dir
            )

        try:
            if wait:
                await store.open(on_wait)
            elif not await store.try_open():
                return False
        except OSError as exc:
            await self.fail_all(context, exc)
            return None
        finally:
            self.tracker.folders_busy.pop(context.request_id, None)
        self.open_stores.add(store)
        return True

    async def fail_all(self, context: _RequestContext, exc: OSError) -> None:
        message = describe_os_error(exc, context.dir)
        for short in context.shorts.values():
            self.tracker.count(ClipState.FAILED)
            await self.outcomes.send(
                self.outcome(context, short, ClipState.FAILED, message=message, error=exc)
            )

    async def admit(self, context: _RequestContext, task_group: TaskGroup) -> list[_ClipJob]:
        """Plan a request whose folder is open: skip error clips, hold recompiling ones,
        recognise complete files, and return the jobs to queue (highest score first)."""
        if not self.options.overwrite:
            context.keep_recorded_names()
        context.remaining = len(context.shorts)
        if not context.remaining:
            await self.close_store(context.store)
            return []
        jobs: list[_ClipJob] = []
        held: list[str] = []
        for short in list(context.shorts.values()):
            if short.error:
                skipped = self.outcome(
                    context, short, ClipState.SKIPPED_ERROR, message=short.error_message
                )
                await self.finish(context, skipped)
            elif not short.is_downloadable:
                held.append(short.id)
            elif self.options.overwrite or not await self._present(context, short):
                jobs.append(_ClipJob(context, short.id, short.viral_score or 0.0))
        if held:
            self.tracker.waiting += len(held)
            task_group.start_soon(self.watch_recompiling, context, held, self.queue.clone())
        return jobs

    async def enqueue(self, jobs: Iterable[_ClipJob]) -> None:
        for job in jobs:
            self.tracker.queued += 1
            await self.queue.send(job)

    async def open_admit_enqueue(
        self,
        context: _RequestContext,
        task_group: TaskGroup,
        queue: MemoryObjectSendStream[_ClipJob],
    ) -> None:
        """Wait for the request's folder, then plan it and queue its clips."""
        async with queue:
            if await self.open_folder(context):
                for job in await self.admit(context, task_group):
                    self.tracker.queued += 1
                    await queue.send(job)

    async def _present(self, context: _RequestContext, short: Short) -> bool:
        if not context.store.entry(short.id).complete:
            return False  # nothing recorded complete: no file to look at
        path = context.path_of(short.id)
        try:
            stat = await aiofiles.os.stat(path)
        except OSError:
            return False
        if not context.store.entry(short.id).matches_file(stat.st_size, stat.st_mtime_ns):
            return False
        present = self.outcome(context, short, ClipState.ALREADY_PRESENT, size=stat.st_size)
        await self.finish(context, present)
        return True

    async def watch_recompiling(
        self, context: _RequestContext, held: list[str], queue: MemoryObjectSendStream[_ClipJob]
    ) -> None:
        """Re-read the request with backoff, one call a round, until the held clips are ready."""
        async with queue:
            deadline = _clock.monotonic() + self.options.recompile_wait
            # 30 s, doubling to 120 s: six rounds in the default 600 s (a re-render takes
            # "a few minutes"); a short budget starts at a tenth of itself
            interval = min(FIRST_RECOMPILE_ROUND, self.options.recompile_wait / 10)
            gone: SsembleError | None = None
            while held and (remaining := deadline - _clock.monotonic()) > 0:
                await _clock.sleep(min(interval, remaining))
                interval = min(interval * 2, MAX_RECOMPILE_INTERVAL)
                try:
                    # through the quota governor, after fresh URLs, within the budget
                    await context.refresh(
                        context.version, priority=Priority.RECHECK, deadline=deadline
                    )
                except _FINAL_API_ERRORS as exc:
                    gone = exc  # deleted (or no longer ours): no later round can help
                    break
                except SsembleError:
                    continue  # the next round tries again; the budget bounds the rounds
                still: list[str] = []
                for clip_id in held:
                    short = context.short(clip_id)
                    if short is None or not (short.error or short.is_downloadable):
                        still.append(clip_id)
                        continue
                    self.tracker.waiting -= 1
                    if short.error:
                        skipped = self.outcome(
                            context, short, ClipState.SKIPPED_ERROR, message=short.error_message
                        )
                        await self.finish(context, skipped)
                    else:
                        self.tracker.queued += 1
                        await queue.send(_ClipJob(context, clip_id, short.viral_score or 0.0))
                held = still
            for clip_id in held:
                self.tracker.waiting -= 1
                short = context.short(clip_id) or Short(id=clip_id)
                if gone is not None:
                    outcome = self.outcome(
                        context,
                        short,
                        ClipState.FAILED,
                        message=f"the request could not be read again while this clip was"
                        f" re-rendered: {gone}",
                        error=gone,
                    )
                else:
                    message = (
                        f"still re-rendering after {self.options.recompile_wait:g} s;"
                        " download again later"
                    )
                    outcome = self.outcome(context, short, ClipState.NOT_READY, message=message)
                await self.finish(context, outcome)

    # -- transfers ----------------------------------------------------------------------

    async def worker(self, session: aiohttp.ClientSession) -> None:
        async for job in self.queue_out:
            self.tracker.queued -= 1
            await self.download(session, job.context, job.clip_id)

    async def download(
        self, session: aiohttp.ClientSession, context: _RequestContext, clip_id: str
    ) -> None:
        short = context.short(clip_id) or Short(id=clip_id)
        path = context.path_of(clip_id)
        part = path.with_name(path.name + ".part")
        key = (context.request_id, clip_id)
        active = self.tracker.active[key] = _Active(short.title)
        state = TransferState()
        changes: dict[str, Any] = {}
        recorded = False
        committed: list[tuple[int, OSError | None]] = []

        def on_bytes(count: int) -> None:
            active.done += count
            self.tracker.bytes_received += count

        async def on_start(started: TransferState) -> None:
            active.done, active.total = started.offset, started.total
            await self._record_partial(context, clip_id, started)

        # encoded on the event loop: less Python in the thread trip that commits the file
        sidecar = encode_sidecar(context.store.sidecar_of(short))

        def commit() -> None:
            # In the thread that flushed the complete .part: record, rename, sidecar.
            now = context.short(clip_id) or short
            entry = attrs.evolve(
                context.store.entry(clip_id),
                file=context.names[clip_id],
                state=ClipState.DOWNLOADED.value,
                title=now.title,
                viral_score=now.viral_score,
                message=None,
                etag=state.etag,
                last_modified=state.last_modified,
            )
            data = sidecar if now is short else encode_sidecar(context.store.sidecar_of(now))
            committed.append(context.store.commit(clip_id, entry, part, path, data))

        try:
            entry = context.store.entry(clip_id)
            name = context.names[clip_id]
            overwrite = self.options.overwrite
            # the .part's size matters only when the entry vouches for its bytes
            part_size = (
                await _size_of(part) if may_resume(entry, name, overwrite=overwrite) else None
            )
            state = resume_state(entry, name, part_size, overwrite=overwrite)
            active.done = state.offset
            await fetch_clip(
                session,
                context,
                clip_id,
                part,
                state,
                self.fetch,
                on_start=on_start,
                on_bytes=on_bytes,
                on_sealed=commit,
            )
            size, unsaved = committed[-1]
            outcome = self.outcome(
                context,
                context.short(clip_id) or short,
                ClipState.DOWNLOADED,
                size=size,
                transferred=state.transferred,
            )
            if unsaved is not None:
                outcome = _metadata_unsaved(outcome, unsaved, context.dir)
            recorded = True
        except NotAClip as exc:
            await _remove(part)  # bytes known to be wrong
            changes = {"partial": None}
            outcome = self._failed(context, short, state, str(exc), exc)
        except DownloadError as exc:  # giving up, a refused URL...: the bytes are good
            kept = await self._keep_if_resumable(context, clip_id, part, state)
            outcome = self._failed(context, short, state, f"{exc}{kept}", exc)
        except OSError as exc:
            outcome = self._failed(context, short, state, describe_os_error(exc, part), exc)
        except SsembleError as exc:
            outcome = self._failed(context, short, state, f"no fresh URL: {exc}", exc)
        finally:
            self.tracker.active.pop(key, None)
        await self.finish(context, outcome, recorded=recorded, **changes)

    async def _keep_if_resumable(
        self, context: _RequestContext, clip_id: str, part: Path, state: TransferState
    ) -> str:
        """Keep a ``.part`` the next run can resume (and say so), remove any other."""
        partial = context.store.entry(clip_id).partial
        if partial is not None and partial.validator == state.validator and state.offset:
            return f"; {state.offset} bytes kept in {part.name}: run again to resume"
        await _remove(part)  # nothing a later run could use
        return ""

    async def _record_partial(
        self, context: _RequestContext, clip_id: str, started: TransferState
    ) -> None:
        """Record what makes the ``.part`` resumable, before its first new byte is written.

        A clip of at most one write is not worth resuming: nothing is recorded for it (and
        an older record is dropped, since the ``.part`` was just cut).
        """
        small = started.total is not None and started.total <= self.options.chunk_size
        wanted = (
            None
            if small or not started.validator
            else Partial(validator=started.validator, total=started.total)
        )
        entry = context.store.entry(clip_id)
        if entry.partial != wanted:
            await context.store.record(
                clip_id,
                attrs.evolve(entry, file=context.names[clip_id], complete=False, partial=wanted),
            )

    def _failed(
        self,
        context: _RequestContext,
        short: Short,
        state: TransferState,
        message: str,
        exc: SsembleError | OSError,
    ) -> ClipOutcome:
        return self.outcome(
            context,
            short,
            ClipState.FAILED,
            transferred=state.transferred,
            message=message,
            error=exc,
        )


def chosen_outcomes(
    outcomes: list[ClipOutcome], options: DownloadOptions, *, by_score: bool = False
) -> list[ClipOutcome]:
    """The outcomes of a finished request that ``top`` / ``min_score`` choose (all without),
    highest score first when choosing or asked ``by_score`` (else in their order)."""
    choosing = options.top is not None or options.min_score is not None
    if not choosing and not by_score:
        return outcomes
    ordered = sorted(outcomes, key=lambda o: (o.viral_score is None, -(o.viral_score or 0.0)))
    return select_clips(ordered, top=options.top, min_score=options.min_score)


def finished_entries(manifest: Manifest) -> list[tuple[str, ManifestEntry]] | None:
    """Each clip of a completed request with its manifest entry, when every clip is done
    (complete, or skipped as an error clip); None when one is not, or the manifest has no
    clip list or is of a request not completed. The complete ones remain to be confirmed
    at the destination (a folder, a bucket)."""
    status = (manifest.status or "").lower()
    if not manifest.clip_ids or status != RequestState.COMPLETED.value:
        return None
    found: list[tuple[str, ManifestEntry]] = []
    for clip_id in manifest.clip_ids:
        entry = manifest.clips.get(clip_id)
        if entry is None or not (skipped_error(entry) or (entry.complete and entry.file)):
            return None
        found.append((clip_id, entry))
    return found


def skipped_error(entry: ManifestEntry) -> bool:
    """The entry of a clip the server flagged ``error`` (never fetched)."""
    return entry.state == ClipState.SKIPPED_ERROR.value and not entry.complete


def entry_outcome(
    request_id: str,
    clip_id: str,
    entry: ManifestEntry,
    *,
    size: int = 0,
    path: Path | None = None,
    url: str | None = None,
) -> ClipOutcome:
    """The outcome a finished clip's entry stands for: skipped as an error clip, or present
    (``size`` and where as confirmed at the destination)."""
    if skipped_error(entry):
        state, message = ClipState.SKIPPED_ERROR, entry.message
    else:
        state, message = ClipState.ALREADY_PRESENT, None
    return ClipOutcome(
        request_id=request_id,
        clip_id=clip_id,
        state=state,
        path=path,
        url=url,
        size=size,
        title=entry.title or "",
        viral_score=entry.viral_score,
        message=message,
    )


def finished_on_disk(directory: Path) -> list[ClipOutcome] | None:
    """The outcomes of a request whose folder already holds every clip, else None.

    The rules of `finished_entries()`, each complete file confirmed unchanged on disk (size
    and modification time as recorded). Blocking (call it in a thread).
    """
    manifest = load_manifest(directory)
    entries = finished_entries(manifest)
    if entries is None:
        return None
    request_id = manifest.request_id or directory.name
    outcomes: list[ClipOutcome] = []
    for clip_id, entry in entries:
        if skipped_error(entry):
            outcomes.append(entry_outcome(request_id, clip_id, entry))
            continue
        path = directory / str(entry.file)
        try:
            stat = path.stat()
        except OSError:
            return None
        if not entry.matches_file(stat.st_size, stat.st_mtime_ns):
            return None
        outcomes.append(entry_outcome(request_id, clip_id, entry, path=path, size=stat.st_size))
    return outcomes


async def _preflight(
    pipeline: _Pipeline, requests: Sequence[RequestRef]
) -> list[ShortsRequest | SsembleError]:
    """Read every request before anything is downloaded; refuse the call if one is not done.

    With ``skip_not_ready``, a request that is not done is no refusal: its error takes its
    place among the results (it ends in the report's ``request_errors``) and the others go on.
    """
    limiter = anyio.CapacityLimiter(RESOLVE_CONCURRENCY)
    results: list[ShortsRequest | SsembleError | None] = [None] * len(requests)
    not_ready: list[RequestNotReadyError] = []

    async def one(index: int, item: RequestRef) -> None:
        try:
            results[index] = await pipeline.resolve(item, limiter)
        except RequestNotReadyError as exc:
            if pipeline.options.skip_not_ready:
                results[index] = _detached(exc)
            else:
                not_ready.append(exc)
        except SsembleError as exc:
            results[index] = _detached(exc)

    async with anyio.create_task_group() as task_group:
        for index, item in enumerate(requests):
            task_group.start_soon(one, index, item)
    if not_ready:
        raise not_ready[0]
    return [result for result in results if result is not None]


def request_key(item: RequestRef) -> str:
    """The id of a request reference, normalised (request ids are hex: any case is one id)."""
    return (item.request_id if isinstance(item, ShortsRequest) else item).lower()


async def _feed(
    pipeline: _Pipeline,
    requests: Sequence[RequestRef],
    resolved: list[ShortsRequest | SsembleError] | None,
    task_group: TaskGroup,
) -> None:
    """Admit every request; with everything known up front, queue all clips by score.

    A request whose folder another run is writing is admitted when that run lets go,
    without holding up the others. Without ``resolved`` (``wait``), the requests come
    from the client's watcher as each one ends.
    """
    tracker, errors = pipeline.tracker, pipeline.stream.request_errors

    async def admit_now_or_later(request: ShortsRequest) -> list[_ClipJob]:
        context = pipeline.context(request)
        opened = await pipeline.open_folder(context, wait=False)
        if opened:
            return await pipeline.admit(context, task_group)
        if opened is False:
            task_group.start_soon(
                pipeline.open_admit_enqueue, context, task_group, pipeline.queue.clone()
            )
        return []

    async with pipeline.queue:
        if resolved is not None:
            jobs: list[_ClipJob] = []
            for item, result in zip(requests, resolved, strict=True):
                tracker.requests_pending -= 1
                if isinstance(result, SsembleError):
                    errors[request_key(item)] = result
                    continue
                jobs.extend(await admit_now_or_later(result))
            await pipeline.enqueue(sorted(jobs, key=lambda job: -job.score))
            return

        def seen(status: RequestStatus) -> None:
            tracker.waited[status.request_id] = status

        waits = pipeline.reader.wait_many(
            list(requests), timeout=pipeline.options.wait_timeout, on_progress=seen
        )
        async with aclosing(waits):
            async for request_id, outcome in waits:
                tracker.requests_pending -= 1
                tracker.waited.pop(request_id, None)
                if isinstance(outcome, SsembleError):
                    errors[request_id] = _detached(outcome)
                    continue
                await pipeline.enqueue(await admit_now_or_later(outcome))


async def _work(pipeline: _Pipeline, session: aiohttp.ClientSession) -> None:
    """Run the workers until the queue is closed and drained, then end the outcomes."""
    async with pipeline.outcomes, pipeline.queue_out, anyio.create_task_group() as workers:
        for _ in range(pipeline.options.concurrency):
            workers.start_soon(pipeline.worker, session)


def unique_requests(requests: Iterable[RequestRef]) -> list[RequestRef]:
    """The requests in order, each once (by id, in any letter case); string ids lower-cased."""
    seen: set[str] = set()
    unique: list[RequestRef] = []
    for item in requests:
        key = request_key(item)
        if key not in seen:
            seen.add(key)
            unique.append(item.lower() if isinstance(item, str) else item)
    return unique


#: Makes the pipeline of a run: `_Pipeline` writes into a folder; an ``s3://`` destination
#: (``_s3_sink``) passes its own, which writes into a bucket.
PipelineFactory = Callable[
    [
        RequestReader,
        Path,
        DownloadOptions,
        RetryPolicy,
        DownloadStream,
        _Tracker,
        MemoryObjectSendStream[ClipOutcome],
        ConnectionSettings,
    ],
    _Pipeline,
]


@asynccontextmanager
async def run_pipeline(
    reader: RequestReader,
    requests: Sequence[RequestRef],
    dest: str | os.PathLike[str],
    options: DownloadOptions,
    *,
    retry: RetryPolicy,
    user_agent: str,
    connection: ConnectionSettings,
    make_pipeline: PipelineFactory = _Pipeline,
) -> AsyncIterator[DownloadStream]:
    """Run a download in a task group and yield the stream of its outcomes.

    An exception raised by the caller's block comes back as itself (never wrapped in an
    exception group), after every transfer has stopped and every folder is closed.
    """
    send, receive = anyio.create_memory_object_stream[ClipOutcome](math.inf)
    tracker = _Tracker(requests_pending=len(requests))
    stream = DownloadStream(receive, tracker)
    pipeline = make_pipeline(reader, Path(dest), options, retry, stream, tracker, send, connection)
    caller_error: BaseException | None = None
    with send, receive, pipeline.queue, pipeline.queue_out:
        requests = await pipeline.skip_finished(requests)
        resolved = None if options.wait else await _preflight(pipeline, requests)
        # aiohttp buffers up to twice this per transfer; the write batch is chunk_size
        read_buffer = min(options.chunk_size, READ_BUFFER)
        session = open_download_session(
            read_bufsize=read_buffer, user_agent=user_agent, connection=connection
        )
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_feed, pipeline, requests, resolved, task_group)
                task_group.start_soon(_work, pipeline, session)
                try:
                    yield stream
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:  # the caller's own: re-raised as is, below
                    caller_error = exc
                task_group.cancel_scope.cancel()
        finally:
            await pipeline.close_all()
            with anyio.CancelScope(shield=True):
                await session.close()
    if caller_error is not None:
        raise caller_error
