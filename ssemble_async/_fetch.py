"""The per-clip fetch loop: one clip's bytes into its ``.part``, resumed, retried, bounded.

Around `fetch_to_part()` (one HTTP transfer) this loop decides what the next try is: a
resume after a drop, a fresh URL after the host refused the old one, a backoff, or giving
up. The decisions are pure functions (`resume_state()`, `made_progress()`); the loop
only acts on them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
import attrs

from ssemble_async import _clock
from ssemble_async._config import ConnectionSettings, RetryPolicy, backoff_delay
from ssemble_async._errors import DownloadError
from ssemble_async._http import describe_retry
from ssemble_async._manifest import ManifestEntry
from ssemble_async._transfer import Expired, TransferState, Transient, fetch_to_part

__all__ = [
    "ClipSource",
    "FetchSettings",
    "fetch_clip",
    "fetch_tries",
    "made_progress",
    "may_resume",
    "resume_state",
]

logger = logging.getLogger("ssemble_async")


class ClipSource(Protocol):
    """Where the fetch loop learns a clip's URL, and gets a fresh one when it expired."""

    @property
    def version(self) -> int:
        """How many times the request was read again so far."""

    def url_of(self, clip_id: str) -> str | None:
        """The clip's URL as last read (None when the clip has none, or is gone)."""

    async def refresh(self, seen_version: int) -> int:
        """Read the request again unless that happened since ``seen_version``."""

    def futile(self, version: int) -> bool:
        """True when the read ``version`` came from mended no refused URL (it gave a
        refused clip the same URL again, and no refused clip a new one)."""

    def note_refresh(self, version: int, *, mended: bool) -> None:
        """Tell whether the read ``version`` gave a refused clip a new URL."""


@attrs.frozen(kw_only=True)
class FetchSettings:
    """The bounds of one clip's fetch loop.

    Attributes:
        chunk_size: bytes per write.
        idle_timeout: seconds without a byte before a try is abandoned.
        retry: backoff between tries, and how many tries in a row may make no progress.
        connection: the proxy and TLS settings of each request.
        max_tries: tries in all, progress or not.
        max_url_refreshes: fresh URLs asked for after the host refused one.
    """

    chunk_size: int
    idle_timeout: float
    retry: RetryPolicy
    connection: ConnectionSettings
    max_tries: int = 50
    max_url_refreshes: int = 3


def may_resume(entry: ManifestEntry, file: str, *, overwrite: bool) -> bool:
    """True when a ``.part`` that an earlier run left for ``file`` may be resumed: ``entry``
    recorded the validator its bytes came with (only then is its size worth asking)."""
    partial = entry.partial
    return not overwrite and entry.file == file and partial is not None and bool(partial.validator)


def resume_state(
    entry: ManifestEntry, file: str, part_size: int | None, *, overwrite: bool
) -> TransferState:
    """Where a clip's transfer starts, from what an earlier run left.

    A ``.part`` is resumed only when the clip's manifest entry recorded the validator its
    bytes came with (so the host can be asked for the rest of *that* file), for the same
    file name (``file``: names can change between runs), and it is not larger than the
    file. Otherwise the transfer starts at zero and cuts the ``.part`` to nothing.
    """
    partial = entry.partial
    if partial is None or not part_size or not may_resume(entry, file, overwrite=overwrite):
        return TransferState()
    if partial.total is not None and part_size > partial.total:
        return TransferState()
    return TransferState(offset=part_size, validator=partial.validator, total=partial.total)


def made_progress(offset_at_start: int, offset_now: int) -> bool:
    """True when a try moved the verified offset past where it started.

    A host that ignores ``Range`` restarts every try from zero: bytes fetched again are
    not progress.
    """
    return offset_now > offset_at_start


async def fetch_clip(
    session: aiohttp.ClientSession,
    source: ClipSource,
    clip_id: str,
    part: Path,
    state: TransferState,
    settings: FetchSettings,
    *,
    on_start: Callable[[TransferState], Awaitable[None]],
    on_bytes: Callable[[int], None],
    on_sealed: Callable[[], None],
) -> None:
    """Fetch until ``part`` holds the whole, verified, flushed clip, and ``on_sealed`` (called
    in the thread that flushed it: see `fetch_to_part()`) returned: `fetch_tries()` with
    each try streamed into ``part``.

    Raises:
        NotAClip: the host sent something that is not a clip (the bytes are wrong).
        DownloadError: tries ran out, or no retry can mend the failure; the bytes in
            ``part`` are good (``state.offset`` of them).
        SsembleError: a fresh URL was needed and reading the request failed.
        OSError: ``part`` could not be written (or ``on_sealed`` raised it).
    """

    async def one_try(url: str) -> None:
        await fetch_to_part(
            session,
            url,
            part,
            state,
            chunk_size=settings.chunk_size,
            idle_timeout=settings.idle_timeout,
            on_start=on_start,
            on_bytes=on_bytes,
            on_sealed=on_sealed,
            connection=settings.connection,
        )

    await fetch_tries(source, clip_id, state, settings, one_try)


async def fetch_tries(
    source: ClipSource,
    clip_id: str,
    state: TransferState,
    settings: FetchSettings,
    one_try: Callable[[str], Awaitable[None]],
) -> None:
    """Call ``one_try(url)`` until it returns: the decisions between tries, for any
    destination (a ``.part`` file, an upload).

    Resumes after drops (``one_try`` keeps ``state.offset`` at the bytes kept), asks
    ``source`` for a fresh URL when the host refuses one (when the request, read again,
    still gives the refused URL, or the URL comes from a re-read that mended no refused URL,
    that URL is tried once more and the clip fails if it is refused again: no further
    read), backs off between tries that made no progress, and gives up after
    ``settings.retry.attempts`` such tries in a row or ``settings.max_tries`` in all.

    Raises:
        DownloadError: tries ran out, or no retry can mend the failure.
        SsembleError: a fresh URL was needed and reading the request failed.
        What ``one_try`` raises other than `Expired` and `Transient`.
    """
    refreshes = tries = failures_in_a_row = 0
    unchanged_url: str | None = None
    while True:
        seen_version = source.version  # the read this try's URL comes from
        url = source.url_of(clip_id)
        if not url:
            raise DownloadError("the clip has no URL any more (removed, or re-rendering)")
        tries += 1
        started_at = state.offset
        try:
            with _clock.real_work():  # bytes on the move: not a wait the clock may skip
                await one_try(url)
        except Expired as exc:
            refreshes += 1
            if refreshes > settings.max_url_refreshes:
                raise DownloadError(
                    f"{exc}; still refused after {settings.max_url_refreshes} fresh URLs"
                ) from exc
            if url == unchanged_url:
                # the request was read again for this very URL: another read cannot help
                raise DownloadError(
                    f"{exc}, again after the request was read again: it still gives this URL"
                ) from exc
            if source.futile(seen_version):
                # this URL comes from a re-read that mended no refused URL: one more try
                # of it (the refusal may pass), no new read
                unchanged_url = url
                continue
            version = await source.refresh(seen_version)
            mended = source.url_of(clip_id) != url
            source.note_refresh(version, mended=mended)
            if not mended:
                unchanged_url = url  # one more try of it (the refusal may pass), no new read
            continue
        except Transient as exc:
            progressed = made_progress(started_at, state.offset)
            failures_in_a_row = 0 if progressed else failures_in_a_row + 1
            if failures_in_a_row >= settings.retry.attempts or tries >= settings.max_tries:
                raise DownloadError(f"{exc} (gave up after {tries} tries)") from exc
            delay = backoff_delay(settings.retry, max(1, failures_in_a_row))
            if progressed:
                logger.warning("clip %s: %s; resuming in %g s", clip_id, exc, round(delay, 1))
            else:
                retries = settings.retry.attempts - 1
                what = describe_retry(failures_in_a_row, retries, delay, str(exc))
                logger.warning("clip %s: %s", clip_id, what)
            await _clock.sleep(delay)
            continue
        return
