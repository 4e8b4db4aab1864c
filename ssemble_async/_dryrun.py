"""A download's plan without the download: what would be fetched, where, how many bytes.

Nothing is written (no folder, lock, manifest, sidecar or ``.part``); the API is read as a
download would read it (a request whose manifest says every clip is complete is not read
at all); clip sizes come from one ``HEAD`` per clip to fetch, on the clip hosts (no quota).
The decision per clip (`plan_clip()`) is pure; `plan_downloads()` gathers what it
needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import anyio

from ssemble_async._config import ConnectionSettings, proxy_for
from ssemble_async._download_models import (
    ClipState,
    DownloadPlan,
    PlannedAction,
    PlannedClip,
)
from ssemble_async._errors import (
    RequestFailedError,
    RequestNotReadyError,
    SsembleError,
)
from ssemble_async._fetch import resume_state
from ssemble_async._manifest import ManifestEntry, load_manifest
from ssemble_async._models import RequestState, Short, ShortsRequest
from ssemble_async._pipeline import (
    DownloadOptions,
    RequestReader,
    RequestRef,
    _RequestContext,
    chosen_outcomes,
    finished_on_disk,
    request_key,
)
from ssemble_async._plan import safe_name
from ssemble_async._transfer import open_download_session

__all__ = ["plan_clip", "plan_downloads"]

#: Seconds a clip host may take to answer a ``HEAD``.
HEAD_TIMEOUT = 30.0


def plan_clip(
    short: Short,
    *,
    file: str,
    entry: ManifestEntry,
    on_disk: tuple[int, int] | None,
    part_size: int | None,
    overwrite: bool,
) -> tuple[PlannedAction, int | None]:
    """What a download would do with one clip, and the size it knows without asking.

    ``on_disk`` is the (size, mtime_ns) of the clip's file, ``part_size`` the size of its
    ``.part``. The same rules as the download: an error clip is skipped, a clip without a
    URL (or re-rendering) waits, a file the manifest vouches for is present, a ``.part`` the
    manifest vouches for (same file name, a validator) is resumed.
    """
    if short.error:
        return PlannedAction.SKIP_ERROR, None
    if not short.is_downloadable:
        return PlannedAction.NOT_READY, None
    if not overwrite and on_disk is not None and entry.matches_file(*on_disk):
        return PlannedAction.PRESENT, on_disk[0]
    resumed = resume_state(entry, file, part_size, overwrite=overwrite)
    if resumed.offset:
        return PlannedAction.RESUME, resumed.total
    return PlannedAction.DOWNLOAD, None


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def _stats(path: Path) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The file's and its ``.part``'s (size, mtime_ns), each None when missing."""
    return _stat(path), _stat(path.with_name(path.name + ".part"))


async def _head_size(
    session: aiohttp.ClientSession, url: str, connection: ConnectionSettings
) -> int | None:
    """The size a clip host says for ``url`` (None when it does not answer plainly)."""
    try:
        async with session.head(
            url,
            allow_redirects=True,
            proxy=proxy_for(url, connection, os.environ),
            timeout=aiohttp.ClientTimeout(total=HEAD_TIMEOUT),
        ) as response:
            length = response.headers.get("Content-Length")
            if response.status != 200 or length is None or not length.isdigit():
                return None
            return int(length)
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _plan_request(
    reader: RequestReader,
    request: ShortsRequest,
    root: Path,
    options: DownloadOptions,
    session: aiohttp.ClientSession,
    connection: ConnectionSettings,
    limiter: anyio.CapacityLimiter,
) -> list[PlannedClip]:
    """The plan of one completed request: its folder read, never written."""
    context = _RequestContext(reader, request, root, options)
    manifest = await anyio.to_thread.run_sync(load_manifest, context.dir)
    context.store.clips = dict(manifest.clips)
    if not options.overwrite:
        context.keep_recorded_names()
    paths = {clip_id: context.path_of(clip_id) for clip_id in context.shorts}
    # every file and .part of the request looked at in one thread trip
    stats = await anyio.to_thread.run_sync(lambda: {c: _stats(p) for c, p in paths.items()})
    sizes: dict[str, int | None] = {}

    async def head(clip_id: str, url: str) -> None:
        async with limiter:
            sizes[clip_id] = await _head_size(session, url, connection)

    found: list[tuple[Short, Path, PlannedAction, int | None, int]] = []
    async with anyio.create_task_group() as heads:
        for clip_id, short in context.shorts.items():
            path = paths[clip_id]
            on_disk, part_stat = stats[clip_id]
            part_size = None if part_stat is None else part_stat[0]
            action, known = plan_clip(
                short,
                file=context.names[clip_id],
                entry=context.store.entry(clip_id),
                on_disk=on_disk,
                part_size=part_size,
                overwrite=options.overwrite,
            )
            fetched = action in (PlannedAction.DOWNLOAD, PlannedAction.RESUME)
            if fetched and short.video_url:
                heads.start_soon(head, clip_id, short.video_url)
            done = (part_size or 0) if action is PlannedAction.RESUME else 0
            found.append((short, path, action, known, done))
    planned = []
    for short, path, action, known, done in found:
        size: int | None = known
        to_fetch: int | None = 0
        if action in (PlannedAction.DOWNLOAD, PlannedAction.RESUME):
            size = sizes.get(short.id) or known
            to_fetch = None if size is None else max(size - done, 0)
        planned.append(
            PlannedClip(
                request_id=request.request_id,
                clip_id=short.id,
                action=action,
                path=path,
                size=size,
                to_fetch=to_fetch,
                title=short.title,
                viral_score=short.viral_score,
            )
        )
    return planned


def _present(
    request_id: str, directory: Path, options: DownloadOptions
) -> list[PlannedClip] | None:
    """The plan of a request whose folder holds every clip (read from its manifest only;
    empty when ``top``/``min_score`` choose none of them), None when it does not."""
    outcomes = finished_on_disk(directory)
    if outcomes is None:
        return None
    chosen = chosen_outcomes(outcomes, options, by_score=True)
    return [
        PlannedClip(
            request_id=outcome.request_id or request_id,
            clip_id=outcome.clip_id,
            action=(
                PlannedAction.SKIP_ERROR
                if outcome.state is ClipState.SKIPPED_ERROR
                else PlannedAction.PRESENT
            ),
            path=outcome.path or directory,
            size=outcome.size or None,
            to_fetch=0,
            title=outcome.title,
            viral_score=outcome.viral_score,
        )
        for outcome in chosen
    ]


async def plan_downloads(
    reader: RequestReader,
    requests: Sequence[RequestRef],
    dest: str | os.PathLike[str],
    options: DownloadOptions,
    *,
    user_agent: str,
    connection: ConnectionSettings,
) -> DownloadPlan:
    """What ``download_many(requests, dest, ...)`` would do now, with nothing written."""
    root = Path(dest)
    clips: list[PlannedClip] = []
    errors: dict[str, SsembleError] = {}
    limiter = anyio.CapacityLimiter(options.concurrency)
    session = open_download_session(
        read_bufsize=64 * 1024, user_agent=user_agent, connection=connection
    )
    try:
        for item in requests:
            key = request_key(item)
            directory = root / safe_name(key)
            if not options.overwrite:
                present = await anyio.to_thread.run_sync(_present, key, directory, options)
                if present is not None:  # as the download: not read, even when none is chosen
                    clips.extend(present)
                    continue
            try:
                request = item if isinstance(item, ShortsRequest) else await reader.get_shorts(item)
            except SsembleError as exc:
                errors[key] = exc
                continue
            if request.status in (RequestState.FAILED, RequestState.CANCELLED):
                errors[key] = RequestFailedError(
                    request.request_id, request.status_raw, request.failure_reason
                )
            elif request.status is not RequestState.COMPLETED:
                errors[key] = RequestNotReadyError(request.request_id, request.status_raw)
            else:
                clips.extend(
                    await _plan_request(
                        reader, request, root, options, session, connection, limiter
                    )
                )
    finally:
        with anyio.CancelScope(shield=True):
            await session.close()
    return DownloadPlan(clips=tuple(clips), request_errors=errors)
