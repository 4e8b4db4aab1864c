"""The download pipeline: requests in, one verified file and one outcome per clip out.

All of it runs inside one anyio task group; nothing outlives the call::

    feed (read requests) ──► clip queue ──► N workers ──► outcomes stream ──► caller
         │                       ▲              │
         └─► recompile watcher ──┘              └─► fresh URL on expiry
             (one re-read of the request per round, shared with the workers)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles
import aiofiles.os
import aiohttp
import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ssemble_async import _clock
from ssemble_async._config import RetryPolicy, backoff_delay
from ssemble_async._download_models import (
    ClipOutcome,
    ClipState,
    DownloadReport,
    DownloadStats,
    TransferProgress,
)
from ssemble_async._errors import (
    DownloadError,
    RequestFailedError,
    RequestNotReadyError,
    SsembleError,
)
from ssemble_async._models import RequestState, Short, ShortsRequest
from ssemble_async._plan import clip_file_names, looks_like_mp4, manifest_entry_matches, safe_name
from ssemble_async._transfer import (
    Expired,
    TransferState,
    Transient,
    describe_os_error,
    fetch_to_part,
    open_download_session,
    read_head,
)

if TYPE_CHECKING:
    from ssemble_async._client import Client

__all__ = ["DownloadOptions", "DownloadStream", "run_pipeline", "unique_requests"]

MANIFEST = "manifest.json"
READ_BUFFER = 256 * 1024
MAX_URL_REFRESHES = 3
MAX_TRIES = 50
FIRST_RECOMPILE_ROUND = 30.0
MAX_RECOMPILE_INTERVAL = 120.0
RESOLVE_CONCURRENCY = 8

RequestRef = str | ShortsRequest


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


@attrs.define(eq=False)
class _Active:
    title: str
    done: int = 0
    total: int | None = None


@attrs.define(eq=False)
class _Tracker:
    """Mutable counters behind :class:`DownloadStats` (read as snapshots)."""

    requests_pending: int
    clips_known: int = 0
    states: dict[ClipState, int] = attrs.field(factory=dict)
    queued: int = 0
    waiting: int = 0
    active: dict[tuple[str, str], _Active] = attrs.field(factory=dict)
    bytes_finished: int = 0

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
            requests_pending=self.requests_pending,
        )


def _sidecar(request: ShortsRequest, short: Short) -> dict[str, Any]:
    texts = {sentence.index: sentence.text for sentence in request.sentences}
    return {
        "request_id": request.request_id,
        "clip_id": short.id,
        "title": short.title,
        "description": short.description,
        "reason": short.reason,
        "viral_score": short.viral_score,
        "start_timestamp": short.start_timestamp,
        "end_timestamp": short.end_timestamp,
        "duration": short.duration,
        "width": short.width,
        "height": short.height,
        "sentences": [texts[i] for i in short.sentence_indexes if i in texts],
        "source_url": request.url or request.file_url,
        "source_title": request.title,
    }


def _write_json_files(files: list[tuple[Path, str]]) -> None:
    """Write each ``(path, text)`` atomically (temporary file, then rename): one thread trip."""
    for path, text in files:
        temporary = path.with_name(path.name + ".tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)  # a full disk leaves no half-written .tmp
            raise


def _encode(payload: Any) -> str:
    # no indent: that keeps json on its C encoder, several times faster
    return json.dumps(payload, ensure_ascii=False) + "\n"


def _open_request_dir(directory: Path) -> Any:
    """Create the request's folder and read its manifest (None when there is none)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: every file is checked afresh


def _replace_and_stat(part: Path, path: Path) -> os.stat_result:
    os.replace(part, path)
    return path.stat()


async def _remove_quietly(path: Path) -> None:
    with suppress(OSError):
        await aiofiles.os.remove(path)


class _RequestContext:
    """What the tasks share about one request: its paths, its manifest, fresh reads of it."""

    def __init__(self, client: Client, request: ShortsRequest, root: Path) -> None:
        self.client = client
        self.request = request
        self.request_id = request.request_id
        self.dir = root / safe_name(request.request_id)
        self.names = clip_file_names(short.id for short in request.shorts)
        self.version = 0
        self.clips: dict[str, dict[str, Any]] = {}
        self._lock = anyio.Lock()
        self._refreshing: anyio.Event | None = None
        self._refresh_error: SsembleError | None = None

    def path_of(self, clip_id: str) -> Path:
        return self.dir / self.names[clip_id]

    def short(self, clip_id: str) -> Short | None:
        return next((s for s in self.request.shorts if s.id == clip_id), None)

    async def load_manifest(self) -> None:
        loaded = await anyio.to_thread.run_sync(_open_request_dir, self.dir)
        clips = loaded.get("clips") if isinstance(loaded, dict) else None
        if isinstance(clips, dict):
            self.clips = {k: v for k, v in clips.items() if isinstance(v, dict)}

    def entry(self, clip_id: str) -> dict[str, Any]:
        return dict(self.clips.get(clip_id, {}))

    async def record(
        self, clip_id: str, entry: dict[str, Any], *, sidecar: tuple[Path, Any] | None = None
    ) -> None:
        """Store a clip's manifest entry and rewrite the manifest (and ``sidecar``) atomically.

        One thread trip for both files; one writer at a time per request.
        """
        async with self._lock:
            self.clips[clip_id] = {**entry, "file": self.names[clip_id]}
            files = [] if sidecar is None else [(sidecar[0], _encode(sidecar[1]))]
            files.append((self.dir / MANIFEST, _encode(self._manifest())))
            await anyio.to_thread.run_sync(_write_json_files, files)

    def _manifest(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "title": self.request.title,
            "source_url": self.request.url or self.request.file_url,
            "status": self.request.status_raw,
            "written_at": _clock.utcnow().isoformat(),
            "clips": self.clips,
        }

    async def refresh(self, seen_version: int) -> int:
        """Re-read the request unless someone did since ``seen_version``; one call for all.

        Returns the version now current.
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
                self.request = await self.client.get_shorts(self.request_id)
                self.version += 1
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

    Made by :meth:`Client.stream_downloads`. Leaving its ``async with`` block stops every
    transfer still running; their ``.part`` files stay, and the next run resumes them.

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
        client: Client,
        root: Path,
        options: DownloadOptions,
        retry: RetryPolicy,
        stream: DownloadStream,
        tracker: _Tracker,
        outcomes: MemoryObjectSendStream[ClipOutcome],
    ) -> None:
        self.client = client
        self.root = root
        self.options = options
        self.retry = retry
        self.stream = stream
        self.tracker = tracker
        self.outcomes = outcomes
        self.queue, self.queue_out = anyio.create_memory_object_stream[_ClipJob](math.inf)

    # -- outcomes -----------------------------------------------------------------------

    def outcome(
        self, context: _RequestContext, short: Short, state: ClipState, **fields: Any
    ) -> ClipOutcome:
        return ClipOutcome(
            request_id=context.request_id,
            clip_id=short.id,
            state=state,
            path=context.path_of(short.id),
            title=short.title,
            viral_score=short.viral_score,
            **fields,
        )

    async def finish(self, context: _RequestContext, outcome: ClipOutcome) -> None:
        """Record a final outcome in the manifest (and a sidecar for a file), then emit it."""
        tracker = self.tracker
        tracker.states[outcome.state] = tracker.states.get(outcome.state, 0) + 1
        tracker.bytes_finished += outcome.size
        short = context.short(outcome.clip_id) or Short(id=outcome.clip_id)
        entry = context.entry(outcome.clip_id)
        entry.update(
            state=outcome.state.value,
            complete=outcome.state in (ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT),
            title=short.title,
            viral_score=short.viral_score,
            message=outcome.message,
        )
        sidecar = None
        if entry["complete"]:
            path = context.path_of(outcome.clip_id)
            sidecar = (path.with_name(path.name + ".json"), _sidecar(context.request, short))
        try:
            await context.record(outcome.clip_id, entry, sidecar=sidecar)
        except OSError as exc:
            if outcome.state is not ClipState.FAILED:
                note = describe_os_error(exc, context.dir)
                outcome = attrs.evolve(outcome, message=f"clip saved; its metadata not: {note}")
        await self.outcomes.send(outcome)

    # -- requests -----------------------------------------------------------------------

    async def resolve(self, item: RequestRef, limiter: anyio.CapacityLimiter) -> ShortsRequest:
        """Read a request; wait for it (or refuse it) when it is not completed."""
        if isinstance(item, ShortsRequest):
            request = item
        else:
            async with limiter:
                request = await self.client.get_shorts(item)
        if request.status is RequestState.COMPLETED:
            return request
        if request.status in (RequestState.FAILED, RequestState.CANCELLED):
            raise RequestFailedError(request.request_id, request.status_raw, request.failure_reason)
        if not self.options.wait:
            raise RequestNotReadyError(request.request_id, request.status_raw)
        return await self.client.wait_for_completion(
            request.request_id, timeout=self.options.wait_timeout
        )

    async def admit(self, request: ShortsRequest, task_group: TaskGroup) -> list[_ClipJob]:
        """Plan a completed request: skip error clips, hold recompiling ones, recognise
        complete files, and return the jobs to queue (highest score first)."""
        context = _RequestContext(self.client, request, self.root)
        shorts = request.shorts_by_score()
        self.tracker.clips_known += len(shorts)
        try:
            await context.load_manifest()
        except OSError as exc:
            message = describe_os_error(exc, context.dir)
            for short in shorts:
                failed = self.outcome(context, short, ClipState.FAILED, message=message, error=exc)
                self.tracker.states[ClipState.FAILED] = (
                    self.tracker.states.get(ClipState.FAILED, 0) + 1
                )
                await self.outcomes.send(failed)
            return []
        jobs: list[_ClipJob] = []
        held: list[str] = []
        for short in shorts:
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

    async def _present(self, context: _RequestContext, short: Short) -> bool:
        path = context.path_of(short.id)
        try:
            stat = await aiofiles.os.stat(path)
        except OSError:
            return False
        if not manifest_entry_matches(context.clips.get(short.id), stat.st_size, stat.st_mtime_ns):
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
            while held and (remaining := deadline - _clock.monotonic()) > 0:
                await _clock.sleep(min(interval, remaining))
                interval = min(interval * 2, MAX_RECOMPILE_INTERVAL)
                try:
                    await context.refresh(context.version)
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
                message = (
                    f"still re-rendering after {self.options.recompile_wait:g} s;"
                    " download again later"
                )
                await self.finish(
                    context, self.outcome(context, short, ClipState.NOT_READY, message=message)
                )

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
        try:
            state = await self._resume_state(context, clip_id, part)
            active.done = state.offset
            await self._transfer(session, context, clip_id, part, state, active)
            stat = await anyio.to_thread.run_sync(_replace_and_stat, part, path)
            entry = context.entry(clip_id)
            entry.pop("partial", None)
            entry.update(
                size=stat.st_size,
                mtime_ns=stat.st_mtime_ns,
                etag=state.etag,
                last_modified=state.last_modified,
            )
            context.clips[clip_id] = entry
            outcome = self.outcome(
                context,
                context.short(clip_id) or short,
                ClipState.DOWNLOADED,
                size=stat.st_size,
                transferred=state.transferred,
            )
        except DownloadError as exc:
            await _remove_quietly(part)
            outcome = self._failed(context, short, state, str(exc), exc)
        except OSError as exc:
            outcome = self._failed(context, short, state, describe_os_error(exc, part), exc)
        except SsembleError as exc:
            outcome = self._failed(context, short, state, f"no fresh URL: {exc}", exc)
        finally:
            del self.tracker.active[key]
        await self.finish(context, outcome)

    def _failed(
        self,
        context: _RequestContext,
        short: Short,
        state: TransferState,
        message: str,
        exc: BaseException,
    ) -> ClipOutcome:
        return self.outcome(
            context,
            short,
            ClipState.FAILED,
            transferred=state.transferred,
            message=message,
            error=exc,
        )

    async def _resume_state(
        self, context: _RequestContext, clip_id: str, part: Path
    ) -> TransferState:
        """Resume a ``.part`` of an earlier run when its validator is known.

        Without one, the transfer starts at zero and opening the ``.part`` truncates
        whatever a stray one held.
        """
        partial = context.clips.get(clip_id, {}).get("partial")
        if self.options.overwrite or not isinstance(partial, dict) or not partial.get("validator"):
            return TransferState()
        try:
            size = (await aiofiles.os.stat(part)).st_size
        except FileNotFoundError:
            return TransferState()
        total = partial.get("total")
        return TransferState(
            offset=size,
            validator=str(partial["validator"]),
            total=total if isinstance(total, int) else None,
        )

    async def _transfer(
        self,
        session: aiohttp.ClientSession,
        context: _RequestContext,
        clip_id: str,
        part: Path,
        state: TransferState,
        active: _Active,
    ) -> None:
        """Fetch until complete: resume after drops, fresh URL after expiry, bounded tries."""
        seen_version = context.version
        refreshes = tries = failures_in_a_row = 0

        def on_bytes(count: int) -> None:
            active.done += count

        async def on_start(started: TransferState) -> None:
            active.done, active.total = started.offset, started.total
            if started.total is not None and started.total <= self.options.chunk_size:
                return  # one write: a killed run would have nothing worth resuming
            entry = context.entry(clip_id)
            partial = {"validator": started.validator, "total": started.total}
            if entry.get("partial") != partial:
                entry.update(complete=False, partial=partial)
                await context.record(clip_id, entry)

        while True:
            short = context.short(clip_id)
            if short is None or not short.video_url:
                raise DownloadError("the clip has no URL any more (removed, or re-rendering)")
            tries += 1
            before = state.transferred
            try:
                await fetch_to_part(
                    session,
                    short.video_url,
                    part,
                    state,
                    chunk_size=self.options.chunk_size,
                    idle_timeout=self.options.idle_timeout,
                    on_start=on_start,
                    on_bytes=on_bytes,
                )
            except Expired as exc:
                refreshes += 1
                if refreshes > MAX_URL_REFRESHES:
                    raise DownloadError(
                        f"{exc}; still refused after {MAX_URL_REFRESHES} fresh URLs"
                    ) from exc
                seen_version = await context.refresh(seen_version)
                continue
            except Transient as exc:
                progressed = state.transferred > before
                failures_in_a_row = 0 if progressed else failures_in_a_row + 1
                if failures_in_a_row >= self.retry.attempts or tries >= MAX_TRIES:
                    raise DownloadError(f"{exc} (gave up after {tries} tries)") from exc
                active.done = state.offset
                await _clock.sleep(backoff_delay(self.retry, max(1, failures_in_a_row)))
                continue
            if state.head_checked or looks_like_mp4(await read_head(part)):
                return
            # The start came from an earlier run's .part and is not an MP4: the stream is
            # checked from its first byte when fetched again, so start over once.
            if tries >= MAX_TRIES:
                raise DownloadError("the downloaded file is not an MP4 (no ftyp box at its start)")
            state.offset, state.validator = 0, None
            active.done = 0


async def _preflight(
    pipeline: _Pipeline, requests: Sequence[RequestRef]
) -> list[ShortsRequest | SsembleError]:
    """Read every request before anything is downloaded; refuse the call if one is not done."""
    limiter = anyio.CapacityLimiter(RESOLVE_CONCURRENCY)
    results: list[ShortsRequest | SsembleError | None] = [None] * len(requests)
    not_ready: list[RequestNotReadyError] = []

    async def one(index: int, item: RequestRef) -> None:
        try:
            results[index] = await pipeline.resolve(item, limiter)
        except RequestNotReadyError as exc:
            not_ready.append(exc)
        except SsembleError as exc:
            results[index] = exc

    async with anyio.create_task_group() as task_group:
        for index, item in enumerate(requests):
            task_group.start_soon(one, index, item)
    if not_ready:
        raise not_ready[0]
    return [result for result in results if result is not None]


def _key(item: RequestRef) -> str:
    return item.request_id if isinstance(item, ShortsRequest) else item


async def _feed(
    pipeline: _Pipeline,
    requests: Sequence[RequestRef],
    resolved: list[ShortsRequest | SsembleError] | None,
    task_group: TaskGroup,
) -> None:
    """Admit every request; with everything known up front, queue all clips by score."""
    tracker, errors = pipeline.tracker, pipeline.stream.request_errors
    async with pipeline.queue:
        if resolved is not None:
            jobs: list[_ClipJob] = []
            for item, result in zip(requests, resolved, strict=True):
                tracker.requests_pending -= 1
                if isinstance(result, SsembleError):
                    errors[_key(item)] = result
                else:
                    jobs.extend(await pipeline.admit(result, task_group))
            await pipeline.enqueue(sorted(jobs, key=lambda job: -job.score))
            return
        limiter = anyio.CapacityLimiter(RESOLVE_CONCURRENCY)

        async def one(item: RequestRef) -> None:
            try:
                request = await pipeline.resolve(item, limiter)
            except SsembleError as exc:
                errors[_key(item)] = exc
            else:
                await pipeline.enqueue(await pipeline.admit(request, task_group))
            finally:
                tracker.requests_pending -= 1

        async with anyio.create_task_group() as resolvers:
            for item in requests:
                resolvers.start_soon(one, item)


async def _work(pipeline: _Pipeline, session: aiohttp.ClientSession) -> None:
    """Run the workers until the queue is closed and drained, then end the outcomes."""
    async with pipeline.outcomes, pipeline.queue_out, anyio.create_task_group() as workers:
        for _ in range(pipeline.options.concurrency):
            workers.start_soon(pipeline.worker, session)


def unique_requests(requests: Iterable[RequestRef]) -> list[RequestRef]:
    """The requests in order, each once (by id)."""
    seen: set[str] = set()
    unique: list[RequestRef] = []
    for item in requests:
        if _key(item) not in seen:
            seen.add(_key(item))
            unique.append(item)
    return unique


@asynccontextmanager
async def run_pipeline(
    client: Client,
    requests: Sequence[RequestRef],
    dest: str | os.PathLike[str],
    options: DownloadOptions,
    *,
    retry: RetryPolicy,
    user_agent: str,
) -> AsyncIterator[DownloadStream]:
    """Run a download in a task group and yield the stream of its outcomes."""
    send, receive = anyio.create_memory_object_stream[ClipOutcome](math.inf)
    tracker = _Tracker(requests_pending=len(requests))
    stream = DownloadStream(receive, tracker)
    pipeline = _Pipeline(client, Path(dest), options, retry, stream, tracker, send)
    with send, receive, pipeline.queue, pipeline.queue_out:
        resolved = None if options.wait else await _preflight(pipeline, requests)
        # aiohttp buffers up to twice this per transfer; the write batch is chunk_size
        read_buffer = min(options.chunk_size, READ_BUFFER)
        session = open_download_session(read_bufsize=read_buffer, user_agent=user_agent)
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(_feed, pipeline, requests, resolved, task_group)
                task_group.start_soon(_work, pipeline, session)
                yield stream
                task_group.cancel_scope.cancel()
        finally:
            await session.close()
