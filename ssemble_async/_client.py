"""The public [`Client`][ssemble_async.Client]: every endpoint of the API, paging, waiting."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, aclosing
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiohttp

from ssemble_async import _clock
from ssemble_async._config import (
    DEFAULT_BASE_URL,
    ConnectionSettings,
    PollPolicy,
    QuotaPolicy,
    RetryPolicy,
    Timeouts,
)
from ssemble_async._converter import (
    PageStep,
    parse_created,
    parse_page,
    parse_shorts_request,
    parse_status,
    parse_templates,
    step_after_page,
)
from ssemble_async._download_models import DownloadPlan, DownloadReport
from ssemble_async._errors import (
    HINT_WRONG_BASE_URL,
    ConfigurationError,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    SsembleError,
)
from ssemble_async._governor import LocalGovernor
from ssemble_async._http import APISession, Response, Secret
from ssemble_async._ids import is_hex24
from ssemble_async._models import (
    CreatedRequest,
    GameVideo,
    MemeHook,
    MusicTrack,
    RequestState,
    RequestStatus,
    RequestSummary,
    ShortsRequest,
    Template,
)
from ssemble_async._pipeline import (
    DownloadOptions,
    DownloadStream,
    RequestRef,
    run_pipeline,
    unique_requests,
)
from ssemble_async._quota import Priority, QuotaBudget, QuotaGovernor
from ssemble_async._ratelimit import RateLimit
from ssemble_async._s3 import S3Location, is_s3_url, parse_s3_url, require_s3_extra
from ssemble_async._version import __version__
from ssemble_async._watch import Known, ProgressCallback, WaitResult, Watcher

__all__ = ["Client", "ProgressCallback", "validate_request_id"]

logger = logging.getLogger("ssemble_async")

T = TypeVar("T")

DEFAULT_WAIT_TIMEOUT = 3600.0
DEFAULT_CHUNK_SIZE = 1024 * 1024
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_WINDOW = 1200.0
MAX_CTA_CHARS = 200
#: Statuses remembered per client (the newest), so a wait starts from what a read told.
KNOWN_STATUSES = 1024
#: A remembered status older than this is not used to start a wait.
KNOWN_FOR = 600.0


def _governor_for(quota_url: str | None, policy: QuotaPolicy, api_key: str) -> QuotaGovernor:
    """The governor a ``quota_url`` names (unset or empty: this process's own)."""
    if not quota_url:
        return LocalGovernor(policy)
    scheme, found, _ = quota_url.partition("://")
    scheme = scheme.lower()
    if found and scheme in ("local", "memory"):
        return LocalGovernor(policy)
    if found and scheme in ("redis", "rediss", "unix"):
        from ssemble_async._redis_governor import RedisGovernor  # noqa: PLC0415 - an extra

        return RedisGovernor(quota_url, api_key, policy)
    # the URL itself is never repeated: it may hold a password
    named = f"scheme {scheme}://" if found else "value (not a URL such as local://)"
    raise ConfigurationError(
        f"quota_url {named} is not supported:"
        " leave quota_url (and SSEMBLE_QUOTA_URL) unset for this process's own budget,"
        " or give redis://host:port/db for a budget shared in Redis."
    )


def validate_request_id(request_id: object) -> str:
    """Return ``request_id`` (lower-cased) if it is a 24-character hex string; raise otherwise.

    Request ids are hexadecimal: ``665A...`` and ``665a...`` name the same request, so the
    lower-case form is the one sent, stored and reported.

    Raises:
        InvalidRequestIdError: before any request is sent.
    """
    if not isinstance(request_id, str) or not is_hex24(request_id):
        shown = repr(request_id)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise InvalidRequestIdError(
            f"invalid request id {shown}: a request id is 24 hexadecimal characters,"
            " as returned by create_short (e.g. '665a1b2c3d4e5f6a7b8c9d0e')."
        )
    return request_id.lower()


def _check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
    return page_size


class Client:
    """An asyncio client for the Ssemble AI-clipping API.

    Use it as an async context manager; it closes what it opened on exit:

    ```python
    async with Client() as client:          # the key comes from SSEMBLE_API_KEY
        request = await client.get_shorts("665a1b2c3d4e5f6a7b8c9d0e")
    ```

    Args:
        api_key: the API key (``sk_ssemble_...``); default: ``SSEMBLE_API_KEY``.
        base_url: the API root; default: ``SSEMBLE_BASE_URL``, else the production API.
            A trailing ``/`` is removed; ``http://`` is allowed for local servers.
        session: an ``aiohttp.ClientSession`` to borrow (services share one); it is left open
            on close. Without one the client makes and closes its own. The key is sent per
            request, never set on the session.
        retry: how failed calls are retried.
        timeouts: time limits of each call.
        quota: what to do when the hourly quota is spent.
        poll: how [`wait_for_completion()`][ssemble_async.Client.wait_for_completion] spaces its
            polls.
        user_agent: the ``User-Agent`` header to send.
        connection: how the API calls connect (proxy, TLS, connections per host); by
            default the proxy comes from ``https_proxy``/``http_proxy``/``all_proxy`` and
            ``no_proxy`` (``ConnectionSettings(trust_env=False)`` ignores them).
        download_connection: how the clip downloads connect, with the same defaults; their
            session is separate and never carries the API key, and ``connection`` does not
            apply to it.
        quota_url: where the key's quota budget is kept; default: ``SSEMBLE_QUOTA_URL``,
            else this client's own (in-process) budget.
        quota_governor: a [`QuotaGovernor`][ssemble_async.QuotaGovernor] to grant this client's
            calls instead (for example one shared by several clients of one key); overrides
            ``quota_url``.
        s3_endpoint_url: the S3-compatible endpoint of ``s3://`` destinations (MinIO, R2...);
            default: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS. Credentials
            and region come from the usual ``AWS_*`` variables and profiles (the ``s3``
            extra: ``pip install 'ssemble-async[s3]'``).

    Raises:
        ConfigurationError: no API key was given or found, the base URL is not HTTP(S), or
            ``quota_url`` names a store this version cannot use.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        quota: QuotaPolicy | None = None,
        poll: PollPolicy | None = None,
        user_agent: str | None = None,
        connection: ConnectionSettings | None = None,
        download_connection: ConnectionSettings | None = None,
        quota_url: str | None = None,
        quota_governor: QuotaGovernor | None = None,
        s3_endpoint_url: str | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("SSEMBLE_API_KEY", "")
        key = key.strip()
        if not key:
            raise ConfigurationError(
                "no API key: pass api_key=... or set SSEMBLE_API_KEY (keys start with"
                " sk_ssemble_ and are made at https://app.ssemble.com/api-keys)."
            )
        root = (base_url or os.environ.get("SSEMBLE_BASE_URL") or DEFAULT_BASE_URL).strip()
        if not root.startswith(("https://", "http://")):
            raise ConfigurationError(f"base_url must start with https:// or http://, got {root!r}")
        self.poll = poll or PollPolicy()
        self._download_connection = download_connection or ConnectionSettings()
        self._s3_endpoint_url = s3_endpoint_url
        quota = quota or QuotaPolicy()
        if quota_governor is None:
            quota_governor = _governor_for(
                quota_url if quota_url is not None else os.environ.get("SSEMBLE_QUOTA_URL"),
                quota,
                key,
            )
            self._owned_governor: QuotaGovernor | None = quota_governor
        else:
            self._owned_governor = None
        self._known: OrderedDict[str, Known] = OrderedDict()
        self._watcher = Watcher(_WatchCalls(self), self.poll)
        self._api = APISession(
            api_key=Secret(key),
            base_url=root.rstrip("/"),
            session=session,
            retry=retry or RetryPolicy(),
            timeouts=timeouts or Timeouts(),
            quota=quota,
            governor=quota_governor,
            user_agent=user_agent or f"ssemble-async/{__version__}",
            connection=connection or ConnectionSettings(),
        )

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        """The API root this client talks to."""
        return self._api.base_url

    @property
    def rate_limit(self) -> RateLimit | None:
        """The quota as the server last reported it, or None before the first response."""
        return self._api.rate_limit

    @property
    def quota_governor(self) -> QuotaGovernor:
        """The governor that grants this client's calls (pass it to another client, with
        ``Client(quota_governor=...)``, to make both share one budget)."""
        return self._api.governor

    @property
    def quota(self) -> QuotaBudget:
        """The quota budget as this client knows it now: the server's last figures
        corrected by its own count, the calls in flight and the server's clock offset."""
        return self._api.governor.budget()

    def _remember(self, status: RequestStatus | ShortsRequest) -> None:
        """Keep a status just read, so a wait for it starts one interval later."""
        self._known[status.request_id] = Known(status=status, seen_at=_clock.utcnow())
        self._known.move_to_end(status.request_id)
        while len(self._known) > KNOWN_STATUSES:
            self._known.popitem(last=False)

    def _known_status(self, request_id: str) -> Known | None:
        known = self._known.get(request_id)
        if known is None:
            return None
        if (_clock.utcnow() - known.seen_at).total_seconds() > KNOWN_FOR:
            return None
        return known

    async def _get(
        self, path: str, *, priority: Priority, deadline: float | None, wait_for_quota: bool
    ) -> Response:
        return await self._api.request(
            "GET", path, priority=priority, deadline=deadline, wait_for_quota=wait_for_quota
        )

    async def _read(
        self,
        request_id: str,
        *,
        priority: Priority,
        deadline: float | None,
        wait_for_quota: bool = True,
    ) -> ShortsRequest:
        """``GET /shorts/:id`` at ``priority``; the status it reports is remembered."""
        rid = validate_request_id(request_id)
        response = await self._get(
            f"/shorts/{rid}", priority=priority, deadline=deadline, wait_for_quota=wait_for_quota
        )
        request = parse_shorts_request(response.body, request_id=rid, status=response.status)
        self._remember(request)
        return request

    async def _status(
        self,
        request_id: str,
        *,
        priority: Priority,
        deadline: float | None,
        wait_for_quota: bool = True,
    ) -> RequestStatus:
        """``GET /shorts/:id/status`` at ``priority``; the status is remembered."""
        rid = validate_request_id(request_id)
        response = await self._get(
            f"/shorts/{rid}/status",
            priority=priority,
            deadline=deadline,
            wait_for_quota=wait_for_quota,
        )
        status = parse_status(response.body, request_id=rid, status=response.status)
        self._remember(status)
        return status

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if the client made it (a borrowed one stays open), and
        the connections of a shared quota store it opened (``quota_url``)."""
        await self._api.close()
        closing = getattr(self._owned_governor, "aclose", None)
        if closing is not None:
            await closing()

    # -- requests -------------------------------------------------------------------------

    async def get_shorts(self, request_id: str) -> ShortsRequest:
        """Fetch a whole request: settings, transcript and clips (``GET /shorts/:id``).

        While the job runs, ``status`` is not completed and ``shorts`` may be empty or partial.

        Raises:
            InvalidRequestIdError: ``request_id`` is malformed (nothing is sent).
            NotFoundError: no such request on this account.
        """
        return await self._read(request_id, priority=Priority.URGENT, deadline=None)

    async def get_status(self, request_id: str) -> RequestStatus:
        """Fetch the progress of a job (``GET /shorts/:id/status``), the cheap poll.

        Raises:
            InvalidRequestIdError: ``request_id`` is malformed (nothing is sent).
            NotFoundError: no such request on this account.
        """
        return await self._status(request_id, priority=Priority.URGENT, deadline=None)

    async def create_short(
        self,
        *,
        url: str | None = None,
        file_url: str | None = None,
        start: float,
        end: float,
        preferred_length: str | None = None,
        language: str | None = None,
        caption_language: str | None = None,
        template_id: str | None = None,
        no_clipping: bool | None = None,
        hook_title: bool | None = None,
        meme_hook: bool | None = None,
        meme_hook_name: str | None = None,
        game_video: bool | None = None,
        game_video_name: str | None = None,
        cta_enabled: bool | None = None,
        cta_text: str | None = None,
        music: bool | None = None,
        music_name: str | None = None,
        music_volume: float | None = None,
        layout: str | None = None,
        webhook_url: str | None = None,
    ) -> CreatedRequest:
        """Start a clipping job (``POST /shorts/create``); costs one credit.

        Exactly one source is required: ``url`` (a YouTube watch URL) or ``file_url`` (a
        public video file URL). ``end - start`` must be 1-1200 seconds. Only the options that
        are set are sent. The call is retried only when the server certainly did not act on
        it (connection refused, 429), so a credit is never spent twice by a retry.

        Raises:
            InvalidArgumentError: an argument breaks a rule of the API (nothing is sent).
            BadRequestError: the server refused the parameters.
            PermissionDeniedError: no subscription or no credits.
        """
        if (url is None) == (file_url is None):
            raise InvalidArgumentError("give exactly one source: url=... or file_url=...")
        if file_url is not None and not file_url.startswith(("http://", "https://")):
            raise InvalidArgumentError(
                f"file_url must start with http:// or https://, got {file_url!r}"
            )
        if start < 0:
            raise InvalidArgumentError(f"start must be >= 0 seconds, got {start}")
        if not 1 <= end - start <= MAX_WINDOW:
            raise InvalidArgumentError(
                f"end - start must be 1 to {MAX_WINDOW:g} seconds, got {end} - {start} ="
                f" {end - start:g}"
            )
        if template_id is not None and not is_hex24(template_id):
            raise InvalidArgumentError(
                f"template_id must be 24 hexadecimal characters (see list_templates()),"
                f" got {template_id!r}"
            )
        if music_volume is not None and not 0 <= music_volume <= 100:
            raise InvalidArgumentError(f"music_volume must be 0-100, got {music_volume}")
        if cta_enabled and not cta_text:
            raise InvalidArgumentError("cta_text is required when cta_enabled is True")
        if cta_text is not None and len(cta_text) > MAX_CTA_CHARS:
            raise InvalidArgumentError(
                f"cta_text must be at most {MAX_CTA_CHARS} characters, got {len(cta_text)}"
            )
        options: dict[str, Any] = {
            "url": url,
            "fileUrl": file_url,
            "start": start,
            "end": end,
            "preferredLength": preferred_length,
            "language": language,
            "captionLanguage": caption_language,
            "templateId": template_id,
            "noClipping": no_clipping,
            "hookTitle": hook_title,
            "memeHook": meme_hook,
            "memeHookName": meme_hook_name,
            "gameVideo": game_video,
            "gameVideoName": game_video_name,
            "ctaEnabled": cta_enabled,
            "ctaText": cta_text,
            "music": music,
            "musicName": music_name,
            "musicVolume": music_volume,
            "layout": layout,
            "webhookUrl": webhook_url,
        }
        body = {key: value for key, value in options.items() if value is not None and value != ""}
        response = await self._api.request("POST", "/shorts/create", body=body, idempotent=False)
        created = parse_created(response.body, status=response.status)
        if is_hex24(created.request_id):
            self._remember(
                RequestStatus(
                    request_id=created.request_id.lower(),
                    status=created.status,
                    status_raw=created.status_raw,
                )
            )
        return created

    async def delete_request(self, request_id: str, *, missing_ok: bool = False) -> None:
        """Delete a request and all its files (``DELETE /shorts/:id``); cancels a running job.

        Credits are not refunded. Accepts both a 204 and a 200 answer.

        Args:
            request_id: the request to delete.
            missing_ok: treat "not found" as success (an idempotent delete).

        Raises:
            InvalidRequestIdError: ``request_id`` is malformed (nothing is sent).
            NotFoundError: no such request, unless ``missing_ok``.
        """
        rid = validate_request_id(request_id)
        try:
            await self._api.request("DELETE", f"/shorts/{rid}")
        except NotFoundError as exc:
            # a 404 that is not the API's envelope is a wrong base_url, never a request gone
            if not missing_ok or exc.hint == HINT_WRONG_BASE_URL:
                raise

    def list_requests(
        self,
        status: RequestState | str | None = None,
        *,
        sort_by: Literal["createdAt", "updatedAt"] | None = None,
        sort_order: Literal["asc", "desc"] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RequestSummary]:
        """Iterate over this account's requests (``GET /shorts``), page after page.

        Args:
            status: only requests in this state (``"completed"``, ``RequestState.FAILED``...).
            sort_by: ``"createdAt"`` (the server's default) or ``"updatedAt"``.
            sort_order: ``"desc"`` (newest first, the default) or ``"asc"``.
            page_size: items per call, 1-100 (each page costs one call of the quota).
        """
        params = {
            "status": None if status is None else str(status),
            "sortBy": sort_by,
            "sortOrder": sort_order,
        }
        return self._paginate("/shorts", RequestSummary, _check_page_size(page_size), params)

    # -- assets ---------------------------------------------------------------------------

    async def list_templates(self) -> list[Template]:
        """The caption templates (``GET /templates``, not paged), with the default marked."""
        response = await self._api.request("GET", "/templates")
        return parse_templates(response.body, status=response.status)

    def list_music(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[MusicTrack]:
        """Iterate over the background music tracks (``GET /music``), page after page."""
        return self._paginate("/music", MusicTrack, _check_page_size(page_size))

    def list_game_videos(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[GameVideo]:
        """Iterate over the gameplay overlay videos (``GET /game-videos``), page after page."""
        return self._paginate("/game-videos", GameVideo, _check_page_size(page_size))

    def list_meme_hooks(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[MemeHook]:
        """Iterate over the meme hook intro clips (``GET /meme-hooks``), page after page."""
        return self._paginate("/meme-hooks", MemeHook, _check_page_size(page_size))

    async def _paginate(
        self,
        path: str,
        item_type: type[T],
        limit: int,
        params: dict[str, str | None] | None = None,
    ) -> AsyncIterator[T]:
        """Yield each item of a paged list, a call per page, until `step_after_page()` stops."""
        fixed = {k: v for k, v in (params or {}).items() if v is not None}
        page, seen, previous_ids = 1, 0, None
        while True:
            query = {**fixed, "page": str(page), "limit": str(limit)}
            response = await self._api.request("GET", path, params=query)
            result = parse_page(response.body, item_type, status=response.status)
            step = step_after_page(
                result, number=page, requested=limit, seen=seen, previous_ids=previous_ids
            )
            if step is PageStep.REPEAT:
                return
            for item in result.items:
                yield item
            if step is PageStep.LAST:
                return
            page, seen, previous_ids = page + 1, seen + len(result.items), result.ids

    # -- waiting --------------------------------------------------------------------------

    async def wait_for_completion(
        self,
        request_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
        poll: PollPolicy | None = None,
    ) -> ShortsRequest:
        """Wait until a job ends; return the whole request when it completed.

        Every wait of a client shares one watcher: a round reads the list of requests
        most recently updated (``GET /shorts``, one call for up to 100 jobs) and a finished
        job costs one ``GET /shorts/:id``. Rounds follow the
        [`PollPolicy`][ssemble_async.PollPolicy] (10 s, then x1.5 up to 60 s by default) and are
        stretched so the hourly quota, less the final read each waiting job still needs, lasts until
        its reset. When this client read the job's status just before (``create_short``,
        ``get_status``...), the first round comes one interval later.

        Args:
            request_id: the job to wait for.
            timeout: seconds to wait in all (default one hour; jobs take 5-30 minutes),
                quota waits and retries included.
            on_progress: called with every status seen (plain or async function), in the
                calling task.
            poll: a [`PollPolicy`][ssemble_async.PollPolicy] for this wait (the watcher follows the
                quickest policy of the waits it serves).

        Raises:
            RequestFailedError: the job ended ``failed`` or ``cancelled``.
            WaitTimeoutError: ``timeout`` passed first; the job goes on on the server.
            NotFoundError: no such request.
        """
        rid = validate_request_id(request_id)
        return await self._watcher.wait(
            rid,
            timeout=timeout,
            known=self._known_status(rid),
            on_progress=on_progress,
            policy=poll,
        )

    async def wait_for_many(
        self,
        requests: Iterable[RequestRef],
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_progress: ProgressCallback | None = None,
    ) -> AsyncIterator[WaitResult]:
        """Wait for several jobs at once; yield each as it ends, in the order they end.

        Yields the [`ShortsRequest`][ssemble_async.ShortsRequest] of each job that completed, or the
        error of its id: [`RequestFailedError`][ssemble_async.RequestFailedError] (failed or
        cancelled), [`NotFoundError`][ssemble_async.NotFoundError], and
        [`WaitTimeoutError`][ssemble_async.WaitTimeoutError] for each job still running when
        ``timeout`` passes. Every error has the ``request_id`` attribute. Each id (in any letter
        case) is yielded once. The waits share the client's watcher (see
        [`wait_for_completion()`][ssemble_async.Client.wait_for_completion]): about one call a round
        for all of them, plus one ``GET /shorts/:id`` per finished job:

        ```python
        async for result in client.wait_for_many(ids, timeout=3600):
            if isinstance(result, ShortsRequest):
                print(result.request_id, len(result.shorts))
        ```

        Leaving the loop early ends the wait for the ids not yielded yet once the iterator
        is closed (at once with ``async with contextlib.aclosing(...)``; else when it is
        garbage-collected): until then they still count in the watcher's budget.

        Args:
            requests: request ids, or [`ShortsRequest`][ssemble_async.ShortsRequest] objects (a
                completed one is yielded at once; another is watched from the status it carries).
            timeout: seconds to wait in all, quota waits and retries included.
            on_progress: called with every status seen, for any of the jobs.

        Raises:
            InvalidRequestIdError: an id is malformed (before anything is sent).
        """
        watched = self._watch_list(requests)
        waits = self._watcher.wait_many(watched, timeout=timeout, on_progress=on_progress)
        async with aclosing(waits):  # closing this iterator ends the waits at once
            async for request_id, result in waits:
                if isinstance(result, SsembleError) and not hasattr(result, "request_id"):
                    result.request_id = request_id  # type: ignore[attr-defined]
                yield result

    def _watch_list(self, requests: Iterable[RequestRef]) -> list[tuple[str, Known | None]]:
        watched: list[tuple[str, Known | None]] = []
        seen: set[str] = set()
        for ref in requests:
            if isinstance(ref, ShortsRequest):
                rid = validate_request_id(ref.request_id)
                known: Known | None = Known(status=ref, seen_at=_clock.utcnow())
            else:
                rid = validate_request_id(ref)
                known = self._known_status(rid)
            if rid not in seen:
                seen.add(rid)
                watched.append((rid, known))
        return watched

    # -- downloads ------------------------------------------------------------------------

    @staticmethod
    def _checked_refs(requests: Iterable[RequestRef]) -> list[RequestRef]:
        checked: list[RequestRef] = []
        for ref in requests:
            if isinstance(ref, str):
                checked.append(validate_request_id(ref))
            elif isinstance(ref, ShortsRequest):
                checked.append(ref)
            else:
                raise TypeError(
                    f"expected request ids or ShortsRequest objects, got {type(ref).__name__}"
                )
        return checked

    def stream_downloads(
        self,
        requests: Iterable[RequestRef],
        dest: str | os.PathLike[str],
        *,
        concurrency: int = 8,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        idle_timeout: float = 30.0,
        recompile_wait: float = 600.0,
        overwrite: bool = False,
        wait: bool = False,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        skip_not_ready: bool = False,
        name: str | None = None,
        top: int | None = None,
        min_score: float | None = None,
    ) -> AbstractAsyncContextManager[DownloadStream]:
        """Download the clips of several requests; yield each outcome as it finishes.

        For services: use it as an async context manager around an async iterator, and read
        ``statistics()`` for progress. Leaving the block stops every transfer still running
        (their ``.part`` files stay for the next run to resume):

        ```python
        async with client.stream_downloads(ids, "clips/") as outcomes:
            async for outcome in outcomes:
                print(outcome.clip_id, outcome.state)
        ```

        Takes the same arguments as [`download_many()`][ssemble_async.Client.download_many].
        """
        try:
            options = DownloadOptions(
                concurrency=concurrency,
                chunk_size=chunk_size,
                idle_timeout=idle_timeout,
                recompile_wait=recompile_wait,
                overwrite=overwrite,
                wait=wait,
                wait_timeout=wait_timeout,
                skip_not_ready=skip_not_ready,
                name=name,
                top=top,
                min_score=min_score,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(str(exc)) from None
        refs = unique_requests(self._checked_refs(requests))
        if is_s3_url(dest):
            return self._download_to_bucket(refs, str(dest), options)
        return run_pipeline(
            _WatchCalls(self),
            refs,
            dest,
            options,
            retry=self._api.retry,
            user_agent=self._api.user_agent,
            connection=self._download_connection,
        )

    @staticmethod
    def _bucket_of(dest: str) -> S3Location:
        """The bucket and prefix of an ``s3://`` destination, the ``s3`` extra installed.

        Raises:
            InvalidArgumentError: not ``s3://bucket/prefix``.
            ConfigurationError: aiobotocore is not installed.
        """
        try:
            location = parse_s3_url(dest)
        except ValueError as exc:
            raise InvalidArgumentError(f"dest: {exc}") from None
        require_s3_extra(f"dest {dest}")
        return location

    def _download_to_bucket(
        self, refs: list[RequestRef], dest: str, options: DownloadOptions
    ) -> AbstractAsyncContextManager[DownloadStream]:
        """`stream_downloads()` into ``s3://bucket/prefix`` (see ``_s3_sink``)."""
        location = self._bucket_of(dest)
        from ssemble_async._s3_sink import run_s3_pipeline  # noqa: PLC0415 - the s3 extra

        return run_s3_pipeline(
            _WatchCalls(self),
            refs,
            location,
            options,
            retry=self._api.retry,
            user_agent=self._api.user_agent,
            connection=self._download_connection,
            endpoint_url=self._s3_endpoint_url,
        )

    async def plan_downloads(
        self,
        requests: Iterable[RequestRef],
        dest: str | os.PathLike[str],
        *,
        concurrency: int = 8,
        overwrite: bool = False,
        name: str | None = None,
        top: int | None = None,
        min_score: float | None = None,
    ) -> DownloadPlan:
        """What [`download_many()`][ssemble_async.Client.download_many] would do now: a dry run.

        Nothing is written under ``dest`` (no folder, lock, manifest or ``.part``). Each
        request is read from the API as a download would read it (one call; none for a
        request whose folder already holds every clip); each clip to fetch costs one
        ``HEAD`` on its clip host (no quota) for its size, ``concurrency`` at a time. A
        request that is not completed is in ``request_errors`` (this does not wait).

        Args:
            requests: request ids or [`ShortsRequest`][ssemble_async.ShortsRequest] objects
                (duplicates ignored).
            dest: the destination a download would use: a folder, or ``s3://bucket/prefix``
                (its objects, unfinished uploads and manifests are read, never written).
            concurrency: ``HEAD`` requests at once.
            overwrite: as for [`download_many()`][ssemble_async.Client.download_many].
            name: as for [`download_many()`][ssemble_async.Client.download_many].
            top: as for [`download_many()`][ssemble_async.Client.download_many].
            min_score: as for [`download_many()`][ssemble_async.Client.download_many].

        Returns:
            A [`DownloadPlan`][ssemble_async.DownloadPlan]: one
            [`PlannedClip`][ssemble_async.PlannedClip] per clip, and the requests that cannot be
            planned.

        Raises:
            InvalidRequestIdError: an id is malformed (nothing is sent).
            InvalidArgumentError: an argument is refused (nothing is sent).
        """
        from ssemble_async._dryrun import plan_downloads  # noqa: PLC0415 - used by dry runs

        try:
            options = DownloadOptions(
                concurrency=concurrency,
                overwrite=overwrite,
                name=name,
                top=top,
                min_score=min_score,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(str(exc)) from None
        refs = unique_requests(self._checked_refs(requests))
        if is_s3_url(dest):
            from ssemble_async._s3_sink import plan_s3_downloads  # noqa: PLC0415 - the s3 extra

            return await plan_s3_downloads(
                _WatchCalls(self),
                refs,
                self._bucket_of(str(dest)),
                options,
                user_agent=self._api.user_agent,
                connection=self._download_connection,
                endpoint_url=self._s3_endpoint_url,
            )
        return await plan_downloads(
            _WatchCalls(self),
            refs,
            dest,
            options,
            user_agent=self._api.user_agent,
            connection=self._download_connection,
        )

    async def download_many(
        self,
        requests: Iterable[RequestRef],
        dest: str | os.PathLike[str],
        *,
        concurrency: int = 8,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        idle_timeout: float = 30.0,
        recompile_wait: float = 600.0,
        overwrite: bool = False,
        wait: bool = False,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        skip_not_ready: bool = False,
        name: str | None = None,
        top: int | None = None,
        min_score: float | None = None,
    ) -> DownloadReport:
        """Download every clip of several requests into ``dest/<request_id>/<clip_id>.mp4``.

        One concurrency bound is shared by all clips of all requests. Each clip is streamed
        to a ``.part`` file, verified (byte count, MP4 signature), fsynced and renamed into
        place, with a metadata sidecar (``<clip_id>.mp4.json``) and a manifest per request
        (``manifest.json``) that lets a second run skip complete files.

        Args:
            requests: request ids or [`ShortsRequest`][ssemble_async.ShortsRequest] objects
                (duplicates are ignored).
            dest: the destination folder (created when missing), or ``s3://bucket/prefix``
                for S3-compatible object storage (the ``s3`` extra; endpoint from
                ``s3_endpoint_url``): the same layout, sidecars and manifest; each clip is
                streamed into a multipart upload (8 MiB parts, each with its SHA-256; size
                and MP4 signature verified before it is completed), a complete object is
                never overwritten (unless ``overwrite``) and an upload cut short resumes
                from its parts. [`ClipOutcome.url`][ssemble_async.ClipOutcome] names each
                object.
            concurrency: transfers at once, for all requests together.
            chunk_size: bytes written per write (also the read buffer), at least 64 KiB.
            idle_timeout: seconds without a byte before a transfer is retried (resumed).
            recompile_wait: seconds a ``recompiling`` clip may take before it is reported
                ``not_ready``; the request is re-read once per round (30 s, doubling to 120 s).
            overwrite: download again even when a complete copy is on disk.
            wait: wait for requests that are not completed yet (quota-aware polling).
            wait_timeout: with ``wait``, how long to wait for each request.
            skip_not_ready: without ``wait``, download the requests that are completed and
                report the others (queued, processing) in ``request_errors`` as a
                [`RequestNotReadyError`][ssemble_async.RequestNotReadyError] each, instead of
                raising it before anything is downloaded.
            name: a file-name template instead of the clip id, e.g. ``"{score:03.0f}-{title}"``
                (fields: ``clip_id``, ``title``, ``score``, ``rank``, ``duration``,
                ``request_id``; Python format specs allowed). The result is made a safe file
                name (runs of other characters than ASCII letters, digits, ``.``, ``_``,
                ``-`` become ``_``, cut to 80 characters) and made unique within the request;
                sidecar and manifest still name the clip id. A complete file keeps the name
                it was first given (a later call with another template finds it present).
            top: only the ``top`` highest-scoring clips of each request (after ``min_score``).
            min_score: only clips whose ``viral_score`` is at least this (clips without a
                score are left out). The choice is made at the first read of a request.

        Returns:
            A [`DownloadReport`][ssemble_async.DownloadReport] with one
            [`ClipOutcome`][ssemble_async.ClipOutcome] per clip; requests that could not be read
            (not found, failed on the server, not completed with ``skip_not_ready``) are in
            ``request_errors``.

        Raises:
            InvalidRequestIdError: an id is malformed (nothing is sent).
            RequestNotReadyError: a request is not completed and neither ``wait`` nor
                ``skip_not_ready`` is set (raised before anything is downloaded).
        """
        async with self.stream_downloads(
            requests,
            dest,
            concurrency=concurrency,
            chunk_size=chunk_size,
            idle_timeout=idle_timeout,
            recompile_wait=recompile_wait,
            overwrite=overwrite,
            wait=wait,
            wait_timeout=wait_timeout,
            skip_not_ready=skip_not_ready,
            name=name,
            top=top,
            min_score=min_score,
        ) as stream:
            async for _ in stream:
                pass
        return stream.report()

    async def download_shorts(
        self,
        request: RequestRef,
        dest: str | os.PathLike[str],
        *,
        concurrency: int = 8,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        idle_timeout: float = 30.0,
        recompile_wait: float = 600.0,
        overwrite: bool = False,
        wait: bool = False,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        name: str | None = None,
        top: int | None = None,
        min_score: float | None = None,
    ) -> DownloadReport:
        """Download every clip of one request: an id or a `ShortsRequest`.

        Takes the arguments of [`download_many()`][ssemble_async.Client.download_many], with
        one request (an id or a [`ShortsRequest`][ssemble_async.ShortsRequest]) for many.

        Raises:
            InvalidRequestIdError: the id is malformed (nothing is sent).
            RequestNotReadyError: the request is not completed and ``wait`` is False.
            RequestFailedError: the request failed or was cancelled on the server.
            NotFoundError: no such request.
        """
        report = await self.download_many(
            [request],
            dest,
            concurrency=concurrency,
            chunk_size=chunk_size,
            idle_timeout=idle_timeout,
            recompile_wait=recompile_wait,
            overwrite=overwrite,
            wait=wait,
            wait_timeout=wait_timeout,
            name=name,
            top=top,
            min_score=min_score,
        )
        for error in report.request_errors.values():
            raise error
        return report


class _WatchCalls:
    """The API calls of a client, as the watcher and the pipeline use them."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def read_request(
        self,
        request_id: str,
        *,
        priority: Priority,
        deadline: float | None,
        wait_for_quota: bool = True,
    ) -> ShortsRequest:
        return await self._client._read(
            request_id, priority=priority, deadline=deadline, wait_for_quota=wait_for_quota
        )

    async def read_status(
        self, request_id: str, *, priority: Priority, deadline: float | None
    ) -> RequestStatus:
        return await self._client._status(
            request_id, priority=priority, deadline=deadline, wait_for_quota=False
        )

    async def list_updates(
        self, page: int, previous_ids: tuple[str, ...] | None, seen: int, *, deadline: float | None
    ) -> tuple[tuple[RequestSummary, ...], tuple[str, ...], bool]:
        query = {
            "sortBy": "updatedAt",
            "sortOrder": "desc",
            "page": str(page),
            "limit": str(MAX_PAGE_SIZE),
        }
        response = await self._client._api.request(
            "GET",
            "/shorts",
            params=query,
            priority=Priority.POLL,
            deadline=deadline,
            wait_for_quota=False,  # the watcher schedules its next round instead
        )
        result = parse_page(response.body, RequestSummary, status=response.status)
        step = step_after_page(
            result, number=page, requested=MAX_PAGE_SIZE, seen=seen, previous_ids=previous_ids
        )
        if step is PageStep.REPEAT:
            return (), result.ids, False
        return result.items, result.ids, step is PageStep.NEXT

    def quota_budget(self) -> QuotaBudget:
        return self._client.quota

    async def get_shorts(self, request_id: str) -> ShortsRequest:
        return await self._client.get_shorts(request_id)

    async def wait_many(
        self,
        requests: list[RequestRef],
        *,
        timeout: float,
        on_progress: Callable[[RequestStatus], None] | None = None,
    ) -> AsyncGenerator[tuple[str, WaitResult], None]:
        waits = self._client._watcher.wait_many(
            self._client._watch_list(requests), timeout=timeout, on_progress=on_progress
        )
        async with aclosing(waits):
            async for item in waits:
                yield item
