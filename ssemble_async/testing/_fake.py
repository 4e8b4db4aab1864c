"""A fake Ssemble API v1 and clip host, served by aiohttp.web on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import socket
import string
import struct
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Literal, TypeGuard, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
import attrs
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from ssemble_async import _clock

from ._catalog import DEFAULT_TEMPLATE_ID, GAME_VIDEOS, MEME_HOOKS, MUSIC, TEMPLATES, template_slug
from ._mp4 import make_mp4
from ._scenario import (
    ApiFault,
    ClipFault,
    ClipState,
    FakeJob,
    JobState,
    RecordedRequest,
    WebhookDelivery,
    WebhookFault,
    new_request_id,
)

__all__ = ["WEBHOOK_USER_AGENT", "FakeSsembleAPI"]

WEBHOOK_USER_AGENT = "Ssemble-Webhooks/1.0"
"""``User-Agent`` header of the fake's webhook deliveries."""

_PREFIX = "/api/v1"
_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
_VIDEO_DURATION = 3600
_CHUNK = 64 * 1024
_BOOL_FIELDS = ("noClipping", "hookTitle", "memeHook", "gameVideo", "ctaEnabled", "music")
_STR_FIELDS = (
    *("url", "fileUrl", "language", "captionLanguage", "templateId", "memeHookName"),
    *("gameVideoName", "ctaText", "musicName", "layout", "preferredLength", "webhookUrl"),
)
_ENUM_FIELDS = {
    "preferredLength": (
        *("under30sec", "under60sec", "under90sec"),
        *("under3min", "under5min", "under10min"),
    ),
    "layout": ("auto", "fill", "fit", "square"),
}
_NOT_FOUND = "Request not found or does not belong to your account"
_NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>"
)

#: Waits (package clock) before each attempt of one webhook delivery: at once, 1 s, 3 s.
_WEBHOOK_WAITS = (0.0, 1.0, 3.0)
_WEBHOOK_TIMEOUT = 10.0  # seconds (real time) for each attempt

_FaultT = TypeVar("_FaultT", ApiFault, ClipFault, WebhookFault)
_ItemT = TypeVar("_ItemT")


class _ApiError(Exception):
    """An error the fake answers with the API's error envelope."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> web.Response:
        error = {"code": self.code, "message": self.message, "details": self.details}
        return web.json_response({"error": error}, status=self.status)


def _invalid(message: str, field: str | None = None) -> _ApiError:
    return _ApiError(400, "invalid_request", message, None if field is None else {"field": field})


def _ceil_ms(moment: datetime) -> datetime:
    """Round up to whole milliseconds, so that ``X-RateLimit-Reset`` is exact."""
    return moment + timedelta(microseconds=-moment.microsecond % 1000)


def _iso(moment: datetime, timespec: str = "milliseconds") -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def _data(payload: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": payload}, status=status)


def _raw(status: int, body: bytes, content_type: str, headers: Mapping[str, str]) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type, **headers})


async def _chunked(request: web.Request, fault: ClipFault) -> web.StreamResponse:
    """A raw response whose body goes out in chunked transfer encoding, block by block."""
    headers = {"Content-Type": fault.content_type, **fault.headers}
    response = web.StreamResponse(status=fault.status or 200, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    await _send(response, memoryview(fault.body))
    await response.write_eof()
    return response


def _record(request: web.BaseRequest, body: bytes = b"") -> RecordedRequest:
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers=CIMultiDictProxy(CIMultiDict(request.headers)),
        json=parsed,
    )


def _endpoint(request: web.Request, api_path: str) -> str:
    """The endpoint template of a request, e.g. ``GET /shorts/:id``, for the call counters."""
    match = request.match_info
    resource = match.route.resource
    if match.http_exception is None and resource is not None:
        template = resource.canonical.removeprefix(_PREFIX).replace("{request_id}", ":id")
        return f"{request.method} {template}"
    return f"{request.method} {api_path}"


def _take_fault(faults: list[_FaultT], hit: Callable[[_FaultT], bool]) -> _FaultT | None:
    for index, fault in enumerate(faults):
        if hit(fault):
            if fault.times > 1:
                faults[index] = attrs.evolve(fault, times=fault.times - 1)
            else:
                del faults[index]
            return fault
    return None


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_create(body: object) -> dict[str, Any]:
    """Check a create body by the rules of the API reference, section 2.1."""
    if not isinstance(body, dict):
        raise _invalid("Request body must be a JSON object")
    for fields, kind, name in ((_STR_FIELDS, str, "a string"), (_BOOL_FIELDS, bool, "a boolean")):
        for field in fields:
            if field in body and not isinstance(body[field], kind):
                raise _invalid(f"{field} must be {name}", field)
    if ("url" in body) == ("fileUrl" in body):
        raise _invalid("Provide exactly one video source: url or fileUrl", "url")
    if "url" in body:
        url = body["url"]
        host = urlsplit(url).hostname or ""
        if host not in ("youtu.be", "youtube.com") and not host.endswith(".youtube.com"):
            raise _ApiError(400, "invalid_youtube_url", "url must be a YouTube video URL")
        if "/shorts/" in url:
            raise _ApiError(400, "invalid_youtube_url", "YouTube Shorts URLs are not supported")
    elif not body["fileUrl"].startswith(("http://", "https://")):
        raise _invalid("fileUrl must start with http:// or https://", "fileUrl")
    start, end = body.get("start"), body.get("end")
    if not (_is_number(start) and _is_number(end)):
        raise _invalid("start and end are required numbers (seconds)", "start")
    if start < 0:
        raise _invalid("start must be >= 0", "start")
    if end <= start:
        raise _invalid("end must be greater than start", "end")
    if not 1 <= end - start <= 1200:
        raise _invalid("The time range must be between 1 and 1200 seconds", "end")
    template_id = body.get("templateId")
    if template_id is not None and not _OBJECT_ID.fullmatch(template_id):
        raise _invalid("templateId must be a 24-character hex string", "templateId")
    if template_id is not None and template_slug(template_id) is None:
        raise _invalid("templateId does not match any template", "templateId")
    if body.get("ctaEnabled") and not body.get("ctaText"):
        raise _invalid("ctaText is required when ctaEnabled is true", "ctaText")
    webhook_url = body.get("webhookUrl")
    if webhook_url is not None and not _is_http_url(webhook_url):
        raise _invalid("webhookUrl must be an http:// or https:// URL", "webhookUrl")
    if len(body.get("ctaText", "")) > 200:
        raise _invalid("ctaText must be at most 200 characters", "ctaText")
    volume = body.get("musicVolume", 10)
    if not (_is_number(volume) and 0 <= volume <= 100):
        raise _invalid("musicVolume must be a number from 0 to 100", "musicVolume")
    for field, allowed in _ENUM_FIELDS.items():
        if field in body and body[field] not in allowed:
            raise _invalid(f"{field} must be one of: {', '.join(allowed)}", field)
    return body


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    try:
        page, limit = int(query.get("page", "1")), int(query.get("limit", "20"))
    except ValueError:
        raise _invalid("page and limit must be integers") from None
    if page < 1 or not 1 <= limit <= 100:
        raise _invalid("page must be >= 1 and limit between 1 and 100")
    return page, limit


def _choice(query: Mapping[str, str], name: str, allowed: Sequence[str]) -> str | None:
    value = query.get(name)
    if value is not None and value not in allowed:
        raise _invalid(f"{name} must be one of: {', '.join(allowed)}", name)
    return value


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the first and last byte of a single ``Range``, or None to serve it all."""
    match = _RANGE.fullmatch((header or "").replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if not first_text:
        suffix = int(last_text)
        first, last = max(0, size - suffix), size - 1
        satisfiable = suffix > 0 and size > 0
    else:
        first = int(first_text)
        if last_text and int(last_text) < first:
            return None
        last = min(int(last_text), size - 1) if last_text else size - 1
        satisfiable = first < size
    if not satisfiable:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return first, last


def _drop(request: web.BaseRequest, *, reset: bool) -> None:
    """Drop the connection of ``request``: a clean close, or a TCP reset (RST)."""
    transport = request.transport
    if transport is None:
        return
    if not reset:
        transport.close()
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:  # linger 0: close() sends RST and discards what is unsent
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _send(
    response: web.StreamResponse, data: memoryview, bytes_per_second: float | None = None
) -> None:
    for offset in range(0, len(data), _CHUNK):
        block = data[offset : offset + _CHUNK]
        await response.write(block)
        if bytes_per_second:
            await asyncio.sleep(len(block) / bytes_per_second)


class FakeSsembleAPI:
    """A faithful fake of the Ssemble API v1 plus a clip host, both on 127.0.0.1.

    Use it as an async context manager, or call
    [`start()`][ssemble_async.testing.FakeSsembleAPI.start] and
    [`close()`][ssemble_async.testing.FakeSsembleAPI.close]. Several instances can run at once.
    Jobs are scripted with [`FakeJob`][ssemble_async.testing.FakeJob] through
    [`add_job()`][ssemble_async.testing.FakeSsembleAPI.add_job], or made by
    ``POST /shorts/create`` from ``auto_job``. Every API request is recorded in ``api_requests``
    and every clip download in ``clip_requests``; ``calls`` and ``rate_limited`` count the API
    requests by endpoint.

    The fake's clock is the SDK's (``ssemble_async``'s ``utcnow``: the real UTC time, or
    the virtual clock while ``ssemble_async.instant_waits()`` is on, which moves forward by
    each skipped wait) plus ``clock_skew``. Every "now" of the fake comes from it: the
    quota window, time-driven jobs, ``createdAt``/``updatedAt``, the ``Last-Modified`` of
    clip URLs and the ``Date`` header that every response of both servers carries (an
    RFC 7231 HTTP date). Only [`ApiFault`][ssemble_async.testing.ApiFault] delays,
    [`ClipFault`][ssemble_async.testing.ClipFault] stalls, ``clip_bytes_per_second`` and
    [`refuse_connections()`][ssemble_async.testing.FakeSsembleAPI.refuse_connections] wait in real
    time.

    The hourly quota is a window of ``quota_window`` seconds: once its reset time
    (``X-RateLimit-Reset``, [`quota_reset`][ssemble_async.testing.FakeSsembleAPI.quota_reset]) has
    passed on the fake's clock, the hourly count is back at ``hourly_limit`` and the next reset is
    the old one plus the window (whole windows that passed meanwhile are skipped). The first reset
    is the next full hour when the window is 3600 seconds, else the fake's now plus the window. The
    daily count never resets by itself. Every authenticated request that no fault answers
    spends one of each; with either at 0 the fake answers ``429 rate_limit_exceeded``.

    Webhooks are delivered as the real service does (API reference, section 2.10): a job with a
    webhook URL (``webhookUrl`` in the create body, or
    [`FakeJob.webhook_url`][ssemble_async.testing.FakeJob]) that ends ``completed`` or
    ``failed`` gets a ``POST`` of the documented JSON payload (``event``, ``requestId``,
    ``status``, ``timestamp``, ``data``) to that URL; a cancelled job gets none. A read-driven
    job's delivery starts at the read that ends it (the read's answer does not wait for it), a
    time-driven job's at its end on the fake's clock even if nobody reads it (a background task
    of the running fake watches the clock). A delivery makes up to 3 attempts, at once, 1 s and
    then 3 s later on the package clock, each with a 10 s (real time) timeout, until one gets a
    2xx. Each attempt is recorded in ``webhook_deliveries``;
    [`deliveries_settled()`][ssemble_async.testing.FakeSsembleAPI.deliveries_settled] waits for
    the deliveries under way;
    [`inject_webhook_fault()`][ssemble_async.testing.FakeSsembleAPI.inject_webhook_fault] loses,
    duplicates or delays them;
    [`forge_webhook()`][ssemble_async.testing.FakeSsembleAPI.forge_webhook] and
    [`send_webhook()`][ssemble_async.testing.FakeSsembleAPI.send_webhook] send payloads of one's
    own. Deliveries carry ``Content-Type: application/json`` and
    ``User-Agent: Ssemble-Webhooks/1.0``, and never the API key.

    Args:
        api_key: The only key accepted; a random valid-looking key when None.
        hourly_limit: ``X-RateLimit-Limit-Hour`` and the hourly quota.
        daily_limit: ``X-RateLimit-Limit-Day`` and the daily quota.
        quota_window: Length of the hourly quota window in seconds (> 0).
        clock_skew: Seconds the fake server's clock is ahead of the client's (negative:
            behind); shifts ``Date``, ``X-RateLimit-Reset``, timestamps and job times.
        pagination_style: ``"docs"`` sends ``{page, limit, totalPages, totalCount}``;
            ``"plan"`` sends ``{currentPage, totalPages, totalItems, itemsPerPage}``;
            ``"none"`` sends no ``pagination`` object at all.
        max_page_size: Paged lists serve at most this many items a page, however large the
            ``limit`` asked for (None: as many as asked); the pagination reports the page
            size served and the number of pages at that size.
        ignore_page: Paged lists answer every call with their first page, whatever
            ``page`` asks for (as a server that does not know the parameter).
        delete_style: ``"200"`` answers DELETE with a JSON message, ``"204"`` with no body.
        id_key_style: ``"_id"`` sends the docs' status and request shapes; ``"requestId"``
            sends the M-plan shapes (``requestId``; status with ``message`` and
            ``estimatedTimeRemaining``).
        create_style: ``"mcode"`` answers create with ``creditsUsed``,
            ``estimatedCompletionTime`` and ``timeAdjustment``; ``"plan"`` with ``message``
            and ``estimatedTime``.
        auto_job: Template for jobs made through the API (the source fields come from the
            request body); the [`FakeJob`][ssemble_async.testing.FakeJob] defaults when None.
        port: Loopback port of the API; 0 lets the system choose a free one.
        clip_port: Loopback port of the clip host; 0 lets the system choose.
        clip_bytes_per_second: Serve each clip no faster than this (None: at full speed),
            so that a demo or a test can watch transfers in flight.

    Attributes:
        api_key: The accepted API key.
        hourly_limit: The hourly quota (change it with
            [`set_quota()`][ssemble_async.testing.FakeSsembleAPI.set_quota]).
        daily_limit: The daily quota.
        quota_window: Length of the hourly quota window in seconds.
        clock_skew: Seconds the fake's clock is ahead of the SDK's.
        jobs: Live job states by request ID.
        api_requests: Every request the API received, in order.
        calls: Every request the API received, counted by endpoint template:
            ``"POST /shorts/create"``, ``"GET /shorts"``, ``"GET /shorts/:id"``,
            ``"GET /shorts/:id/status"``, ``"DELETE /shorts/:id"``, ``"GET /templates"``,
            ``"GET /music"``, ``"GET /game-videos"``, ``"GET /meme-hooks"``, and
            ``"<METHOD> <path>"`` (path relative to ``/api/v1``) for anything else.
            Counted on arrival, whether the request then succeeds, fails or is answered
            by an injected [`ApiFault`][ssemble_async.testing.ApiFault]. A ``collections.Counter``:
            an endpoint never called counts 0.
        rate_limited: The ``429 rate_limit_exceeded`` answers the fake gave because the
            hourly or daily quota was spent, by the same keys (a 429 from an injected
            fault is not counted here).
            [`reset_counters()`][ssemble_async.testing.FakeSsembleAPI.reset_counters] clears both
            counters.
        clip_requests: Every request the clip host received, in order.
        clip_bytes_sent: Body bytes of each clip that the clip host handed to the
            connection for GET requests, over all of them, by ``(request_id, clip_id)``
            (clips never requested are absent). Counted in blocks of 64 KiB as each is
            handed over, so the count is never behind what a client has read. A test
            compares two snapshots to learn how many bytes a download fetched, e.g. that a
            resume fetched only what was missing.
        webhook_deliveries: Every webhook attempt the fake made, in order (see
            [`WebhookDelivery`][ssemble_async.testing.WebhookDelivery]).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        hourly_limit: int = 100_000,
        daily_limit: int = 1_000_000,
        pagination_style: Literal["docs", "plan", "none"] = "docs",
        max_page_size: int | None = None,
        ignore_page: bool = False,
        delete_style: Literal["200", "204"] = "200",
        id_key_style: Literal["_id", "requestId"] = "_id",
        create_style: Literal["mcode", "plan"] = "mcode",
        auto_job: FakeJob | None = None,
        port: int = 0,
        clip_port: int = 0,
        clip_bytes_per_second: float | None = None,
        quota_window: float = 3600.0,
        clock_skew: float = 0.0,
    ) -> None:
        if not quota_window > 0:
            raise ValueError("quota_window must be a positive number of seconds")
        alphabet = string.ascii_letters + string.digits
        self.api_key = api_key or "sk_ssemble_" + "".join(
            secrets.choice(alphabet) for _ in range(32)
        )
        self.hourly_limit, self.daily_limit = hourly_limit, daily_limit
        self.quota_window, self.clock_skew = quota_window, clock_skew
        self.pagination_style, self.delete_style = pagination_style, delete_style
        self.max_page_size, self.ignore_page = max_page_size, ignore_page
        self.id_key_style, self.create_style = id_key_style, create_style
        self.auto_job = auto_job
        self.clip_bytes_per_second = clip_bytes_per_second
        self._ports = (port, clip_port)
        self.jobs: dict[str, JobState] = {}
        self.api_requests: list[RecordedRequest] = []
        self.clip_requests: list[RecordedRequest] = []
        self.clip_bytes_sent: dict[tuple[str, str], int] = {}
        self.calls: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self._api_faults: list[ApiFault] = []
        self._clip_faults: list[ClipFault] = []
        self._clips_by_token: dict[str, ClipState] = {}
        self._remaining_hour, self._remaining_day = hourly_limit, daily_limit
        self._reset = self._first_reset()
        self._last_created = datetime.min.replace(tzinfo=timezone.utc)
        self._runners: dict[Literal["api", "clip"], web.AppRunner] = {}
        self._urls: tuple[str, str] | None = None
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._webhook_faults: list[WebhookFault] = []
        self._webhook_session: aiohttp.ClientSession | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._webhook_errors: list[BaseException] = []
        self._webhook_pending = 0
        self._webhook_idle: anyio.Event | None = None
        self._webhook_wake: anyio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the API and the clip host on free loopback ports.

        Raises:
            RuntimeError: If the fake was already started.
        """
        if self._runners:
            raise RuntimeError("FakeSsembleAPI is already started")
        try:
            api_root = await self._serve("api", self._ports[0])
            clip_root = await self._serve("clip", self._ports[1])
            self._urls = (api_root + _PREFIX, clip_root)
            self._webhook_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_WEBHOOK_TIMEOUT)
            )
            self._webhook_idle = anyio.Event()
            self._webhook_idle.set()
            self._spawn(self._webhook_scheduler(), delivery=False)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop both servers and every webhook delivery under way. Calling it again does nothing.

        Deliveries not finished are cancelled (and awaited); no task of the fake is left.
        """
        tasks = list(self._webhook_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._webhook_wake = None
        if self._webhook_session is not None:
            session, self._webhook_session = self._webhook_session, None
            await session.close()
        self._urls = None
        while self._runners:
            await self._runners.popitem()[1].cleanup()

    async def __aenter__(self) -> FakeSsembleAPI:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def pause_api(self) -> None:
        """Stop the API server: connections to its port are refused until it resumes.

        [`resume_api()`][ssemble_async.testing.FakeSsembleAPI.resume_api] serves again. Open
        connections are closed too (requests in flight are cut). The clip host keeps
        serving, and [`base_url`][ssemble_async.testing.FakeSsembleAPI.base_url] stays the same.
        Pausing a paused API does nothing.

        Raises:
            RuntimeError: If the fake is not running.
        """
        self._started_urls()
        runner = self._runners.pop("api", None)
        if runner is not None:
            await runner.cleanup()

    async def resume_api(self) -> None:
        """Serve the API again on the port it had; does nothing when it is not paused.

        Raises:
            RuntimeError: If the fake is not running.
            OSError: If another program took the port meanwhile.
        """
        api_url = self._started_urls()[0]
        if "api" not in self._runners:
            await self._serve("api", urlsplit(api_url).port or 0)

    async def refuse_connections(self, seconds: float) -> None:
        """Refuse connections to the API for ``seconds``, then serve it again.

        Returns once the API serves again; run it beside the code under test (in a task
        group), or call [`pause_api()`][ssemble_async.testing.FakeSsembleAPI.pause_api] and
        [`resume_api()`][ssemble_async.testing.FakeSsembleAPI.resume_api] to control the outage.
        """
        await self.pause_api()
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.resume_api()

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:8123/api/v1`` (no trailing slash)."""
        return self._started_urls()[0]

    @property
    def clip_base_url(self) -> str:
        """The clip host's root URL, e.g. ``http://127.0.0.1:8124``."""
        return self._started_urls()[1]

    # -- scripting -----------------------------------------------------------------------

    def add_job(self, job: FakeJob) -> str:
        """Add a scripted job and return its request ID.

        Raises:
            ValueError: If a job with that ID exists or two of its clips share an ID.
        """
        if job.request_id in self.jobs:
            raise ValueError(f"a job with request ID {job.request_id} already exists")
        if len({clip.clip_id for clip in job.clips}) != len(job.clips):
            raise ValueError("the clips of a job must have distinct clip IDs")
        now = self._now()
        now = self._last_created = max(now, self._last_created + timedelta(milliseconds=1))
        clips: dict[str, ClipState] = {}
        for clip in job.clips:
            content = clip.content
            if content is None:
                content = make_mp4(clip.size, seed=f"{job.request_id}/{clip.clip_id}")
            state = ClipState(
                clip=clip,
                content=content,
                etag=f'"{hashlib.sha256(content).hexdigest()[:32]}"',
                recompiling_left=clip.recompiling_reads,
            )
            if not clip.error:
                self._issue_url(state)
            clips[clip.clip_id] = state
        self.jobs[job.request_id] = JobState(
            job=job, clips=clips, created_at=now, updated_at=now, clock=self._now
        )
        if job.webhook_url is not None and self._webhook_wake is not None:
            self._webhook_wake.set()  # the scheduler looks at the new job
        return job.request_id

    def inject_api_fault(self, fault: ApiFault) -> None:
        """Answer the next ``fault.times`` matching API requests with ``fault``'s response."""
        self._api_faults.append(fault)

    def inject_clip_fault(self, fault: ClipFault) -> None:
        """Disturb the next ``fault.times`` matching clip downloads as ``fault`` says."""
        self._clip_faults.append(fault)

    def clear_api_faults(self) -> None:
        """Drop every injected API fault that has not been used up yet."""
        self._api_faults.clear()

    def clear_clip_faults(self) -> None:
        """Drop every injected clip fault that has not been used up yet."""
        self._clip_faults.clear()

    def inject_webhook_fault(self, fault: WebhookFault) -> None:
        """Disturb the next ``fault.times`` matching webhook deliveries as ``fault`` says."""
        self._webhook_faults.append(fault)

    def clear_webhook_faults(self) -> None:
        """Drop every injected webhook fault that has not been used up yet."""
        self._webhook_faults.clear()

    async def deliveries_settled(self, *, timeout: float = 600.0) -> None:  # noqa: ASYNC109
        """Wait until no webhook delivery is under way (retries and copies included).

        Jobs whose end has passed on the fake's clock are dispatched first, so a delivery
        due now counts as under way. A time-driven job that has not reached its end yet
        is not waited for: sleep on the package clock until then.

        Args:
            timeout: Seconds on the package clock (virtual under ``instant_waits()``).

        Raises:
            TimeoutError: If deliveries are still under way after ``timeout`` seconds.
            RuntimeError: If a webhook task of the fake crashed (a bug of the fake).
        """
        deadline = _clock.monotonic() + timeout
        self._dispatch_due()
        while self._webhook_pending and self._webhook_idle is not None:
            if not await _clock.wait_event(self._webhook_idle, deadline):
                raise TimeoutError(f"webhook deliveries still under way after {timeout:g} s")
        if self._webhook_errors:
            raise RuntimeError("a webhook task of the fake crashed") from self._webhook_errors[0]

    async def send_webhook(self, url: str, payload: Mapping[str, Any]) -> int | None:
        """POST ``payload`` to ``url`` once, as a webhook delivery, and return the status.

        The attempt is recorded in
        ``webhook_deliveries`` with
        ``forged=True``; no retry and no [`WebhookFault`][ssemble_async.testing.WebhookFault]
        applies. None: no answer (refused, timeout).

        Raises:
            RuntimeError: If the fake is not running.
        """
        record = await self._post_webhook(url, dict(payload), attempt=1, copy=0, forged=True)
        return record.status

    async def forge_webhook(
        self,
        url: str,
        *,
        request_id: str | None = None,
        event: str = "shorts.completed",
        failure_reason: str = "Processing failed",
    ) -> int | None:
        """Send a forged delivery, in the documented shape, for a job the fake does not have.

        Args:
            url: The receiver.
            request_id: The payload's ``requestId``; a fresh ID no job has when None.
            event: ``shorts.completed`` (three reduced clips whose URLs answer 404) or
                ``shorts.failed`` (with ``failure_reason``); ``status`` is the part after
                ``shorts.``.
            failure_reason: ``data.failureReason`` of a ``shorts.failed`` event.

        Returns:
            The receiver's status, or None when it did not answer. The attempt is
            recorded as [`send_webhook()`][ssemble_async.testing.FakeSsembleAPI.send_webhook]
            records it.

        Raises:
            RuntimeError: If the fake is not running.
        """
        if request_id is None:
            request_id = new_request_id()
            while request_id in self.jobs:
                request_id = new_request_id()
        data: dict[str, Any]
        if event == "shorts.completed":
            clip_root = self.clip_base_url
            data = {
                "shorts": [
                    {
                        "id": clip.clip_id,
                        "title": clip.title,
                        "video_url": f"{clip_root}/{secrets.token_hex(10)}/{clip.clip_id}.mp4",
                        "duration": clip.duration,
                        "viral_score": clip.viral_score / 10,
                    }
                    for clip in FakeJob().clips
                ]
            }
        else:
            data = {"failureReason": failure_reason}
        payload = {
            "event": event,
            "requestId": request_id,
            "status": event.removeprefix("shorts."),
            "timestamp": _iso(self._now()),
            "data": data,
        }
        return await self.send_webhook(url, payload)

    def reset_counters(self) -> None:
        """Clear the counters of API requests; the recorded requests stay.

        Clears ``calls`` and
        ``rate_limited``.
        """
        self.calls.clear()
        self.rate_limited.clear()

    def set_quota(
        self,
        *,
        remaining_hour: int | None = None,
        remaining_day: int | None = None,
        reset: datetime | None = None,
        hourly_limit: int | None = None,
    ) -> None:
        """Set the rate-limit counters; None leaves a value as it is.

        Args:
            remaining_hour: Calls left in the current window; at 0 every call gets 429.
            remaining_day: Calls left today; at 0 every call gets 429.
            reset: When the current window resets, in the fake's clock (naive means UTC),
                rounded up to whole milliseconds as ``X-RateLimit-Reset`` shows it. When
                it passes, the hourly count is restored to ``hourly_limit`` and the next
                reset is ``quota_window`` seconds later.
            hourly_limit: A new hourly quota (``X-RateLimit-Limit-Hour``), restored at
                each reset from now on; the calls left now stay as they are.
        """
        self._roll_quota()
        if hourly_limit is not None:
            self.hourly_limit = hourly_limit
        if remaining_hour is not None:
            self._remaining_hour = remaining_hour
        if remaining_day is not None:
            self._remaining_day = remaining_day
        if reset is not None:
            reset = reset if reset.tzinfo else reset.replace(tzinfo=timezone.utc)
            self._reset = _ceil_ms(reset.astimezone(timezone.utc))

    @property
    def quota_reset(self) -> datetime:
        """When the current quota window resets: aware UTC, in the fake's clock."""
        self._roll_quota()
        return self._reset

    @property
    def quota_remaining(self) -> int:
        """Calls left in the current quota window (the hourly count)."""
        self._roll_quota()
        return max(0, self._remaining_hour)

    def now(self) -> datetime:
        """The fake server's current time: the SDK's clock plus ``clock_skew`` (aware UTC)."""
        return self._now()

    def clip_url(self, request_id: str, clip_id: str) -> str:
        """Return the clip's current URL on the clip host (``""`` for an error clip)."""
        return self._clip_url(self.jobs[request_id].clips[clip_id])

    def clip_bytes(self, request_id: str, clip_id: str) -> bytes:
        """Return the exact bytes the clip host serves for the clip."""
        return self.jobs[request_id].clips[clip_id].content

    def expire_clip_url(self, request_id: str, clip_id: str) -> str:
        """Give the clip a new URL (the old one then answers 404) and return it."""
        state = self.jobs[request_id].clips[clip_id]
        if not state.clip.error:
            self._issue_url(state)
        return self._clip_url(state)

    # -- plumbing ------------------------------------------------------------------------

    def _started_urls(self) -> tuple[str, str]:
        if self._urls is None:
            raise RuntimeError("FakeSsembleAPI is not running; use `async with` or start()")
        return self._urls

    async def _serve(self, role: Literal["api", "clip"], port: int) -> str:
        app = self._api_app() if role == "api" else self._clip_app()
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        self._runners[role] = runner
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def _issue_url(self, state: ClipState) -> None:
        self._clips_by_token.pop(state.token or "", None)
        state.token = secrets.token_hex(10)
        state.last_modified = self._http_date()
        self._clips_by_token[state.token] = state

    def _clip_url(self, state: ClipState) -> str:
        if state.token is None:
            return ""
        return f"{self.clip_base_url}/{state.token}/{quote(state.clip.clip_id, safe='')}.mp4"

    def _now(self) -> datetime:
        now = _clock.utcnow().astimezone(timezone.utc)
        return now + timedelta(seconds=self.clock_skew) if self.clock_skew else now

    def _http_date(self) -> str:
        return format_datetime(self._now(), usegmt=True)

    def _first_reset(self) -> datetime:
        now = self._now()
        if self.quota_window == 3600:
            return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return _ceil_ms(now + timedelta(seconds=self.quota_window))

    def _roll_quota(self) -> None:
        """Start a new quota window when the current one's reset has passed."""
        now = self._now()
        if now >= self._reset:
            window = timedelta(seconds=self.quota_window)
            self._reset += ((now - self._reset) // window + 1) * window
            self._remaining_hour = self.hourly_limit

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit-Hour": str(self.hourly_limit),
            "X-RateLimit-Remaining-Hour": str(max(0, self._remaining_hour)),
            "X-RateLimit-Limit-Day": str(self.daily_limit),
            "X-RateLimit-Remaining-Day": str(max(0, self._remaining_day)),
            "X-RateLimit-Reset": _iso(
                self._reset, "milliseconds" if self._reset.microsecond else "seconds"
            ),
        }

    def _authenticate(self, request: web.Request) -> None:
        key = request.headers.get("X-API-Key")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if key is None and scheme.lower() == "bearer" and token.strip():
            key = token.strip()
        if key is None:
            raise _ApiError(
                401,
                "missing_api_key",
                "API key required: send it in the X-API-Key header or as a Bearer token",
            )
        if key != self.api_key:
            raise _ApiError(
                401, "invalid_api_key", "Invalid API key: wrong format, not found, or revoked"
            )

    def _spend_quota(self, endpoint: str) -> None:
        """Spend one call of the quota, or count a 429 for ``endpoint`` and raise it."""
        if self._remaining_hour <= 0 or self._remaining_day <= 0:
            self.rate_limited[endpoint] += 1
            raise _ApiError(
                429,
                "rate_limit_exceeded",
                f"Rate limit exceeded; the hourly window resets at {_iso(self._reset)}",
            )
        self._remaining_hour -= 1
        self._remaining_day -= 1

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.api_requests.append(_record(request, await request.read()))
        api_path = request.path.removeprefix(_PREFIX)
        endpoint = _endpoint(request, api_path)
        self.calls[endpoint] += 1
        response: web.StreamResponse
        fault = _take_fault(self._api_faults, lambda f: f.matches(request.method, api_path))
        if fault is not None:
            await asyncio.sleep(fault.delay)
            response = _raw(fault.status, fault.body, fault.content_type, fault.headers)
            response.headers.setdefault("Date", self._http_date())
            return response
        self._roll_quota()
        try:
            self._authenticate(request)
            self._spend_quota(endpoint)
            response = await handler(request)
        except _ApiError as exc:
            response = exc.response()
        except web.HTTPException as exc:  # no such route or method
            if not request.path.startswith(_PREFIX + "/"):
                # outside the API root the web server answers, not the API: no envelope
                page = f"<!DOCTYPE html><title>Error</title><pre>Cannot {request.method}"
                page += f" {request.path}</pre>"
                return _raw(exc.status, page.encode(), "text/html", {"Date": self._http_date()})
            code = "resource_not_found" if exc.status == 404 else "invalid_request"
            response = _ApiError(exc.status, code, exc.reason).response()
        self._dispatch_due()  # a read may have ended a job: start its webhook (in a task)
        response.headers.update(self._rate_headers())
        response.headers.setdefault("Date", self._http_date())
        return response

    # -- API -----------------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware])
        add = app.router.add_route
        add("POST", f"{_PREFIX}/shorts/create", self._create)
        add("GET", f"{_PREFIX}/shorts", self._list_requests)
        add("GET", f"{_PREFIX}/shorts/{{request_id}}/status", self._get_status)
        add("GET", f"{_PREFIX}/shorts/{{request_id}}", self._get_shorts)
        add("DELETE", f"{_PREFIX}/shorts/{{request_id}}", self._delete)
        add("GET", f"{_PREFIX}/templates", self._templates)
        for path, key, items in (
            ("music", "music", MUSIC),
            ("game-videos", "gameVideos", GAME_VIDEOS),
            ("meme-hooks", "memeHooks", MEME_HOOKS),
        ):
            add("GET", f"{_PREFIX}/{path}", self._asset_handler(key, items))
        return app

    def _job_for(self, request: web.Request) -> JobState:
        request_id = request.match_info["request_id"]
        if not _OBJECT_ID.fullmatch(request_id):
            raise _invalid("Invalid request ID format: expected a 24-character hex string")
        state = self.jobs.get(request_id.lower())
        if state is None:
            raise _ApiError(404, "resource_not_found", _NOT_FOUND)
        state.sync_clock(self._now())
        return state

    def _page(self, key: str, items: Sequence[Any], query: Mapping[str, str]) -> web.Response:
        return self._render_page(key, items, query, lambda item: item)[0]

    def _render_page(
        self,
        key: str,
        items: Sequence[_ItemT],
        query: Mapping[str, str],
        render: Callable[[_ItemT], Any],
    ) -> tuple[web.Response, list[_ItemT]]:
        """Serve one page of ``items``, rendered; return the response and the items served."""
        page, limit = _paging(query)
        if self.ignore_page:
            page = 1
        if self.max_page_size is not None:
            limit = min(limit, self.max_page_size)
        total, pages = len(items), -(-len(items) // limit)
        chosen = list(items[(page - 1) * limit : page * limit])
        served = [render(item) for item in chosen]
        if self.pagination_style == "none":
            return _data({key: served}), chosen
        pagination = (
            {"page": page, "limit": limit, "totalPages": pages, "totalCount": total}
            if self.pagination_style == "docs"
            else {
                "currentPage": page,
                "totalPages": pages,
                "totalItems": total,
                "itemsPerPage": limit,
            }
        )
        return _data({key: served, "pagination": pagination}), chosen

    def _asset_handler(self, key: str, items: Sequence[dict[str, Any]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return self._page(key, items, request.query)

        return handler

    async def _templates(self, request: web.Request) -> web.Response:
        return _data(
            {
                "templates": list(TEMPLATES),
                "defaultTemplateId": DEFAULT_TEMPLATE_ID,
                "defaultTemplateName": "karaoke",
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        try:
            parsed = json.loads(await request.read())
        except ValueError:
            raise _invalid("Request body must be valid JSON") from None
        body = _validate_create(parsed)
        start, end = body["start"], body["end"]
        adjustment = None
        if end > _VIDEO_DURATION:
            if _VIDEO_DURATION - start < 1:
                raise _invalid("start is beyond the end of the video", "start")
            adjustment = {
                "message": "End time exceeded video length and was clamped",
                "original": {"start": start, "end": end},
                "adjusted": {"start": start, "end": _VIDEO_DURATION},
                "videoDuration": _VIDEO_DURATION,
            }
            end = _VIDEO_DURATION
        template = self.auto_job or FakeJob()
        template_id = body.get("templateId")
        job = attrs.evolve(
            template,
            request_id=new_request_id(),
            url=body.get("url"),
            file_url=body.get("fileUrl"),
            start=start,
            end=end,
            language=body.get("language", template.language),
            caption_language=body.get("captionLanguage", ""),
            preferred_length=body.get("preferredLength", template.preferred_length),
            template=template_slug(template_id or "") or template.template,
            webhook_url=body.get("webhookUrl"),
        )
        request_id = self.add_job(job)
        self.jobs[request_id].create_body = body
        if self.create_style == "plan":
            data: dict[str, Any] = {
                "requestId": request_id,
                "status": "queued",
                "message": "Request created successfully and queued for processing",
                "estimatedTime": "5-10 minutes",
            }
        else:
            data = {
                "requestId": request_id,
                "status": "queued",
                "creditsUsed": 1,
                "estimatedCompletionTime": "5-30 minutes",
            }
            if adjustment is not None:
                data["timeAdjustment"] = adjustment
        return _data(data, status=201)

    async def _get_status(self, request: web.Request) -> web.Response:
        state = self._job_for(request)
        job = state.job
        status, step, progress, message = state.view()
        if self.id_key_style == "_id":
            data: dict[str, Any] = {
                "_id": job.request_id,
                "status": status,
                "step": step,
                "stepMessage": message,
                "progress": progress,
                "userEmail": job.user_email,
                "isDemo": job.is_demo,
            }
        else:
            data = {
                "requestId": job.request_id,
                "status": status,
                "progress": progress,
                "message": message,
                "estimatedTimeRemaining": None
                if state.finished
                else f"{max(1, (100 - progress) // 10)} minutes",
            }
        if state.status == "failed":
            data["failureReason"] = job.failure_reason
        state.count_read(self._now())
        return _data(data)

    async def _get_shorts(self, request: web.Request) -> web.Response:
        state = self._job_for(request)
        job = state.job
        status, _, progress, _ = state.view()
        completed = state.status == "completed"
        data: dict[str, Any] = {
            self.id_key_style: job.request_id,
            "status": status,
            "progress": progress,
            "userEmail": job.user_email,
            "url": job.url or "",
            "start": job.start,
            "end": job.end,
            "title": job.title,
            "language": job.language,
            "template": job.template,
            "captionLanguage": job.caption_language,
            "heatmap": [],
            "sentences": [
                {"index": i, "sentence": text, "start": start, "end": end}
                for i, (start, end, text) in enumerate(job.sentences if completed else ())
            ],
            "preferredLength": job.preferred_length,
            "projectId": job.project_id,
            "shorts": [self._read_clip(c) for c in state.clips.values()] if completed else [],
            "createdAt": _iso(state.created_at),
            "updatedAt": _iso(state.updated_at),
        }
        if job.file_url is not None:
            data["fileUrl"] = job.file_url
        if state.status == "failed":
            data["failureReason"] = job.failure_reason
        state.count_read(self._now())
        return _data(data)

    def _read_clip(self, state: ClipState) -> dict[str, Any]:
        """Render a clip for one read of a completed job, moving its recompile along."""
        if state.new_url_due:
            self._issue_url(state)
            state.new_url_due = False
        recompiling = state.recompiling_left > 0
        if recompiling:
            state.recompiling_left -= 1
            state.new_url_due = state.recompiling_left == 0
        clip = state.clip
        data: dict[str, Any] = {
            "id": clip.clip_id,
            "title": clip.title,
            "sentenceIndexes": list(clip.sentence_indexes),
            "reason": clip.reason,
            "description": clip.description,
            "viral_score": clip.viral_score,
            "video_url": self._clip_url(state),
            "startTimestamp": clip.start_timestamp,
            "endTimestamp": clip.end_timestamp,
            "duration": clip.duration,
            "width": clip.width,
            "height": clip.height,
            "recompiling": recompiling,
            "error": clip.error,
        }
        if not clip.omit_error_message:
            data["errorMessage"] = clip.error_message
        return data

    async def _list_requests(self, request: web.Request) -> web.Response:
        query = request.query
        status = _choice(query, "status", _STATUSES)
        sort_by = _choice(query, "sortBy", ("createdAt", "updatedAt")) or "createdAt"
        order = _choice(query, "sortOrder", ("asc", "desc")) or "desc"
        now = self._now()
        for state in self.jobs.values():
            state.sync_clock(now)
        states = [s for s in self.jobs.values() if status in (None, s.status)]
        states.sort(
            key=lambda s: s.created_at if sort_by == "createdAt" else s.updated_at,
            reverse=order == "desc",
        )
        response, served = self._render_page("requests", states, query, self._summary)
        # A listing reads every job it shows (after rendering it: the item shows the state
        # before the read), as a status read would; time-driven jobs ignore reads.
        for state in served:
            state.count_read(now)
        return response

    @staticmethod
    def _summary(state: JobState) -> dict[str, Any]:
        job = state.job
        status, _, progress, _ = state.view()
        return {
            "requestId": job.request_id,
            "status": status,
            "progress": progress,
            "createdAt": _iso(state.created_at),
            "updatedAt": _iso(state.updated_at),
            **({"url": job.url} if job.url else {}),
            "duration": job.end - job.start,
        }

    async def _delete(self, request: web.Request) -> web.Response:
        state = self._job_for(request)
        del self.jobs[state.job.request_id]
        for clip in state.clips.values():
            self._clips_by_token.pop(clip.token or "", None)
        if self.delete_style == "204":
            return web.Response(status=204)
        return _data({"message": "Request successfully deleted"})

    # -- webhooks ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], *, delivery: bool) -> None:
        """Run ``coro`` in a task of the fake, cancelled and awaited by `close()`."""
        task = asyncio.get_running_loop().create_task(coro)
        self._webhook_tasks.add(task)
        if delivery:
            self._webhook_pending += 1
            if self._webhook_idle is not None and self._webhook_idle.is_set():
                self._webhook_idle = anyio.Event()

        def done(task: asyncio.Task[None]) -> None:
            self._webhook_tasks.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                self._webhook_errors.append(exc)
            if delivery:
                self._webhook_pending -= 1
                if not self._webhook_pending and self._webhook_idle is not None:
                    self._webhook_idle.set()

        task.add_done_callback(done)

    async def _webhook_scheduler(self) -> None:
        """Start the deliveries of jobs that end, waking at each time-driven job's end."""
        while True:
            wake = self._webhook_wake = anyio.Event()
            self._dispatch_due()
            ends = [
                state.step_reached_at(len(state.job.steps))
                for state in self.jobs.values()
                if state.job.webhook_url is not None
                and state.job.time_driven
                and not state.webhook_dispatched
            ]
            deadline = None
            if ends:
                deadline = _clock.monotonic() + (min(ends) - self._now()).total_seconds()
            await _clock.wait_event(wake, deadline)

    def _take_webhook_fault(self, request_id: str) -> WebhookFault | None:
        return _take_fault(
            self._webhook_faults, lambda f: f.request_id is None or f.request_id == request_id
        )

    def _dispatch_due(self) -> None:
        """Start the delivery of every job with a webhook URL that reached its outcome."""
        if self._webhook_session is None:
            return
        now = self._now()
        for state in list(self.jobs.values()):
            url = state.job.webhook_url
            if url is None or state.webhook_dispatched:
                continue
            state.sync_clock(now)
            if not state.finished:
                continue
            state.webhook_dispatched = True
            if state.job.outcome == "cancelled":  # the reference has no event for it
                continue
            fault = self._take_webhook_fault(state.job.request_id)
            if fault is not None and fault.lost:
                continue
            self._spawn(self._deliver(url, self._webhook_payload(state), fault), delivery=True)

    def _webhook_payload(self, state: JobState) -> dict[str, Any]:
        job = state.job
        data: dict[str, Any]
        if job.outcome == "completed":
            data = {
                "shorts": [
                    {
                        "id": clip.clip.clip_id,
                        "title": clip.clip.title,
                        "video_url": self._clip_url(clip),
                        "duration": clip.clip.duration,
                        "viral_score": clip.clip.viral_score / 10,  # 0-10 in webhooks
                    }
                    for clip in state.clips.values()
                ]
            }
        else:
            data = {"failureReason": job.failure_reason}
        return {
            "event": f"shorts.{job.outcome}",
            "requestId": job.request_id,
            "status": job.outcome,
            "timestamp": _iso(state.updated_at),
            "data": data,
        }

    async def _deliver(self, url: str, payload: dict[str, Any], fault: WebhookFault | None) -> None:
        """One delivery: up to 3 attempts until a 2xx, repeated as a fault says."""
        copies, gap = (1 + fault.duplicate, fault.duplicate_after) if fault else (1, 0.0)
        if fault is not None and fault.delay:
            await _clock.sleep(fault.delay)
        for copy in range(copies):
            if copy:
                await _clock.sleep(gap)
            for attempt, wait in enumerate(_WEBHOOK_WAITS, start=1):
                if wait:
                    await _clock.sleep(wait)
                record = await self._post_webhook(url, payload, attempt=attempt, copy=copy)
                if record.acknowledged:
                    break

    async def _post_webhook(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        attempt: int,
        copy: int,
        forged: bool = False,
    ) -> WebhookDelivery:
        """Make one attempt and record it."""
        session = self._webhook_session
        if session is None:
            raise RuntimeError("FakeSsembleAPI is not running; use `async with` or start()")
        at = self._now()
        status: int | None = None
        error: str | None = None
        headers = {"Content-Type": "application/json", "User-Agent": WEBHOOK_USER_AGENT}
        try:
            # A real exchange: the virtual clock must not jump while it is under way.
            with _clock.real_work():
                async with session.post(
                    url, data=json.dumps(payload).encode(), headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        record = WebhookDelivery(
            request_id=str(payload.get("requestId", "")),
            url=url,
            event=str(payload.get("event", "")),
            attempt=attempt,
            status=status,
            payload=payload,
            at=at,
            copy=copy,
            forged=forged,
            error=error,
        )
        self.webhook_deliveries.append(record)
        return record

    # -- clip host -----------------------------------------------------------------------

    def _clip_app(self) -> web.Application:
        app = web.Application(middlewares=[self._clip_middleware])
        app.router.add_get("/{path:.*}", self._serve_clip)
        return app

    @web.middleware
    async def _clip_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Date every answer of the clip host by the fake's clock."""
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.setdefault("Date", self._http_date())
            raise
        if not response.prepared:
            response.headers.setdefault("Date", self._http_date())
        return response

    async def _serve_clip(self, request: web.Request) -> web.StreamResponse:
        self.clip_requests.append(_record(request))
        token, _, name = request.match_info["path"].partition("/")
        state = self._clips_by_token.get(token)
        fault = _take_fault(
            self._clip_faults,
            lambda f: f.clip_id is None or (state is not None and state.clip.clip_id == f.clip_id),
        )
        if fault is not None and fault.status is not None:
            if fault.chunked:
                return await _chunked(request, fault)
            return _raw(fault.status, fault.body, fault.content_type, fault.headers)
        if state is None or not name.endswith(".mp4"):
            return _raw(404, _NO_SUCH_KEY, "application/xml", {})
        size = len(state.content)
        headers = {
            "Content-Type": "video/mp4",
            "Date": self._http_date(),
            "ETag": state.etag,
            "Last-Modified": state.last_modified,
            "Accept-Ranges": "bytes",
        }
        validator = request.headers.get("If-Range", state.etag)
        use_range = validator in (state.etag, state.last_modified) and not (
            fault and fault.ignore_range
        )
        wanted = _byte_range(request.headers.get("Range"), size) if use_range else None
        first, last = wanted or (0, size - 1)
        if wanted is not None:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        response = web.StreamResponse(status=200 if wanted is None else 206, headers=headers)
        announced = last - first + 1
        if fault is not None and fault.content_length is not None:
            announced = fault.content_length
        response.content_length = announced
        await response.prepare(request)
        body = memoryview(state.content if request.method == "GET" else b"")[first : last + 1]
        cut = min(len(body), announced)  # aiohttp never sends more than it announced
        if fault is not None and fault.truncate_at is not None:
            cut = min(fault.truncate_at, cut)
        pause = cut if fault is None or fault.stall_at is None else min(fault.stall_at, cut)
        key = next(
            (rid, cid)
            for rid, job in self.jobs.items()
            for cid, clip in job.clips.items()
            if clip is state
        )

        async def send(data: memoryview) -> None:
            # Block by block, each counted as it is handed to the connection: the count
            # is never behind what the client has read, nor ahead of it by more than the
            # block in flight when a transfer is cut off.
            for offset in range(0, len(data), _CHUNK):
                block = data[offset : offset + _CHUNK]
                if request.method == "GET":
                    self.clip_bytes_sent[key] = self.clip_bytes_sent.get(key, 0) + len(block)
                await _send(response, block)
                if self.clip_bytes_per_second:
                    await asyncio.sleep(len(block) / self.clip_bytes_per_second)

        await send(body[:pause])
        if fault is not None:
            await asyncio.sleep(fault.stall_seconds)
        await send(body[pause:cut])
        if request.method == "GET" and cut < announced:
            _drop(request, reset=fault is not None and fault.reset)
            return response
        await response.write_eof()
        return response
