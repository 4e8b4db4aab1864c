"""Webhooks: learn that a job ended without polling, and get its clips on disk.

Ssemble POSTs a JSON body to a job's ``webhookUrl`` when it completes or fails (section
2.10 of the API reference): unsigned, up to three tries.
[`webhook_app()`][ssemble_async.webhooks.webhook_app] is an ``aiohttp.web.Application`` that
receives those deliveries and turns each into verified files:

```python
from aiohttp import web
from ssemble_async import Client
from ssemble_async.webhooks import webhook_app

client = Client()
app = web.Application()
app.add_subapp("/hooks", webhook_app(client, dest="clips/"))
# deliveries go to https://your.host/hooks/ssemble/webhook
```

The payload is only a hint: each request id is confirmed with one ``GET /shorts/:id``
(concurrent and repeated deliveries of an id share it), then downloaded into ``dest`` as
[`Client.download_shorts()`][ssemble_async.Client.download_shorts] would, and/or handed to
``on_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import anyio
import attrs
from aiohttp import web
from anyio.abc import TaskGroup

from ssemble_async import _clock
from ssemble_async._client import Client
from ssemble_async._config import PollPolicy
from ssemble_async._converter import MAX_WEBHOOK_BYTES, parse_webhook
from ssemble_async._download_models import DownloadReport
from ssemble_async._errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    SsembleError,
)
from ssemble_async._governor import PAST_DEADLINE
from ssemble_async._ids import is_hex24
from ssemble_async._manifest import JOURNAL, MANIFEST
from ssemble_async._models import RequestState, ShortsRequest, WebhookEvent, WebhookShort
from ssemble_async._pipeline import finished_on_disk
from ssemble_async._quota import round_interval

__all__ = [
    "WebhookEvent",
    "WebhookOutcome",
    "WebhookReceiver",
    "WebhookShort",
    "handled",
    "parse_webhook",
    "webhook_app",
]

logger = logging.getLogger("ssemble_async")

#: Request ids remembered as handled, so a repeated delivery costs nothing.
REMEMBERED = 10_000
#: Default seconds between two looks for jobs that ended without a delivery.
RECONCILE_EVERY = 300.0
#: Pages one reconciliation may read.
RECONCILE_PAGES = 5
#: Waits between tries of a confirmation the API failed (about 15 minutes in all).
CONFIRM_BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0, 420.0)

#: Called with each ended request the receiver confirmed (completed, failed or cancelled).
RequestCallback = Callable[[ShortsRequest], Awaitable[None] | None]


@attrs.frozen(kw_only=True)
class WebhookOutcome:
    """What the receiver did with one request id.

    Attributes:
        request_id: the request.
        status: its state as confirmed by ``GET /shorts/:id`` (``UNKNOWN`` when it could
            not be read).
        report: the download's report, when the request completed and ``dest`` was given.
        error: why it was not handled (not found, an API error, the callback's error).
        source: ``"delivery"``, or ``"reconcile"`` when found without one.
    """

    request_id: str
    status: RequestState
    report: DownloadReport | None = None
    error: BaseException | None = attrs.field(default=None, eq=False)
    source: str = "delivery"


OutcomeCallback = Callable[[WebhookOutcome], Awaitable[None] | None]


async def _call(callback: Callable[[Any], Awaitable[None] | None], value: Any) -> None:
    result = callback(value)
    if inspect.isawaitable(result):
        await result


def unfinished_requests(dest: Path) -> list[str]:
    """Request folders in ``dest`` that a run left unfinished (blocking: call in a thread).

    A folder named by a request id, with a manifest or a ``.part`` file, whose clips are
    not all complete or skipped.
    """
    try:
        folders = sorted(p for p in dest.iterdir() if p.is_dir() and is_hex24(p.name))
    except OSError:
        return []
    left: list[str] = []
    for folder in folders:
        started = (folder / MANIFEST).exists() or (folder / JOURNAL).exists()
        if not started and not any(folder.glob("*.part")):
            continue
        if finished_on_disk(folder) is None:
            left.append(folder.name.lower())
    return left


class WebhookReceiver:
    """Turns webhook deliveries into confirmed requests and verified files, in any framework.

    [`webhook_app()`][ssemble_async.webhooks.webhook_app] wraps one for aiohttp. In another
    framework (Starlette, FastAPI...), run it for the application's lifetime and hand it each
    delivery's body:

    ```python
    receiver = WebhookReceiver(client, dest="clips/")

    @asynccontextmanager
    async def lifespan(app):
        async with receiver:          # the work runs in its task group
            yield

    async def hook(request):          # POST /ssemble/webhook
        status, answer = receiver.deliver(
            await request.body(), request.headers.get("content-type")
        )
        return JSONResponse(answer, status_code=status)
    ```

    Leaving the ``async with`` block stops taking deliveries, cancels the work still running
    (a download cut there keeps its resumable ``.part``) and waits for it. The arguments are
    those of [`webhook_app()`][ssemble_async.webhooks.webhook_app].
    """

    def __init__(
        self,
        client: Client,
        *,
        dest: str | os.PathLike[str] | None = None,
        on_request: RequestCallback | None = None,
        on_outcome: OutcomeCallback | None = None,
        reconcile: bool | float = False,
        concurrency: int = 4,
        **download_options: Any,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        options = dict(download_options)
        if "clip_concurrency" in options:
            options["concurrency"] = options.pop("clip_concurrency")
        self.client = client
        self.dest = None if dest is None else Path(dest)
        self.on_request = on_request
        self.on_outcome = on_outcome
        if reconcile is not False and reconcile is not True and not reconcile > 0:
            raise ValueError(f"reconcile must be True, False or seconds > 0, got {reconcile!r}")
        self.reconcile = RECONCILE_EVERY if reconcile is True else (float(reconcile) or None)
        self.download_options = options
        self.concurrency = concurrency
        self.max_pending = max(64, 16 * concurrency)
        """Request ids taken but not handled yet beyond which deliveries get a 503 (the
        sender tries again later; reconciliation finds them too)."""
        self._handled: OrderedDict[str, WebhookOutcome] = OrderedDict()
        self.running: set[str] = set()
        self.group: TaskGroup | None = None
        self._running_group: TaskGroup | None = None
        self.started_at = _clock.utcnow()

    @property
    def handled(self) -> Mapping[str, WebhookOutcome]:
        """The request ids handled so far (the latest 10,000), with their outcomes."""
        return MappingProxyType(self._handled)

    async def __aenter__(self) -> WebhookReceiver:
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.started_at = _clock.utcnow()
        group = anyio.create_task_group()
        await group.__aenter__()
        self._running_group = self.group = group
        if self.dest is not None:
            group.start_soon(self._resume_unfinished, self.dest)
        if self.reconcile is not None:
            group.start_soon(self._reconcile_loop, self.reconcile)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._running_group = self._running_group, None
        self.group = None  # no new work from here on
        if group is None:
            return None
        group.cancel_scope.cancel()
        return await group.__aexit__(exc_type, exc, tb)

    async def _resume_unfinished(self, dest: Path) -> None:
        """Take up the requests a run before this one left unfinished in ``dest``."""
        for request_id in await anyio.to_thread.run_sync(unfinished_requests, dest):
            logger.info("resuming %s, left unfinished in %s", request_id, dest)
            self.submit(request_id, "resume")

    # -- deliveries ----------------------------------------------------------------------

    def deliver(self, body: bytes, content_type: str | None) -> tuple[int, dict[str, str]]:
        """Take one delivery; return the HTTP status and JSON body to answer it with.

        ``202`` when it was taken (the work goes on in the background), ``400`` when the
        body is not a delivery, ``413`` when it is too large, ``415`` when it is not JSON,
        ``503`` when the receiver is not running.
        """
        media = (content_type or "").split(";")[0].strip().lower()
        if media != "application/json":
            logger.warning("webhook delivery refused: content type %r", content_type)
            return 415, {"error": "expected application/json"}
        try:
            event = parse_webhook(body)
        except SsembleError as exc:
            status = 413 if len(body) > MAX_WEBHOOK_BYTES else 400
            logger.warning("webhook delivery refused: %s", exc)
            return status, {"error": "not a webhook delivery"}
        if self.group is None:
            return 503, {"error": "the receiver is not running"}
        if not self.submit(event.request_id, "delivery"):
            return 503, {"error": "too many deliveries waiting; try again later"}
        return 202, {"received": event.request_id}

    def submit(self, request_id: str, source: str) -> bool:
        """Handle ``request_id`` once; False when not running or too many are waiting."""
        if self.group is None:
            return False
        if request_id in self._handled or request_id in self.running:
            logger.debug("webhook for %s again: already handled", request_id)
            return True
        if len(self.running) >= self.max_pending:
            logger.warning(
                "webhook for %s refused: %d requests waiting", request_id, len(self.running)
            )
            return False
        self.running.add(request_id)
        self.group.start_soon(self._process, request_id, source)
        return True

    async def _process(self, request_id: str, source: str) -> None:
        try:
            async with self.limiter:
                outcome = await self._confirm_and_act(request_id, source)
        except Exception as exc:  # the receiver outlives any one request (a disk error...)
            logger.exception("webhook for %s could not be handled", request_id)
            outcome = WebhookOutcome(
                request_id=request_id, status=RequestState.UNKNOWN, error=exc, source=source
            )
        finally:
            self.running.discard(request_id)
        if outcome is None:
            return  # not ended yet: its own delivery (or a look) comes when it ends
        if outcome.error is not None:
            outcome = attrs.evolve(outcome, error=outcome.error.with_traceback(None))
        elif outcome.report is None or outcome.report.ok:
            # handled for good; a failure is tried again by a later delivery or look
            self._handled[request_id] = outcome
            while len(self._handled) > REMEMBERED:
                self._handled.popitem(last=False)
        if self.on_outcome is not None:
            try:
                await _call(self.on_outcome, outcome)
            except Exception:  # the caller's callback: reported, never fatal
                logger.exception("on_outcome failed for %s", request_id)

    async def _confirm(self, request_id: str) -> ShortsRequest:
        """``GET /shorts/:id``, tried again over about 15 minutes while the API fails (a
        2xx answer told the sender the delivery arrived: it will not send it again)."""
        for wait in (*CONFIRM_BACKOFF, None):
            try:
                return await self.client.get_shorts(request_id)
            except (NotFoundError, AuthenticationError, PermissionDeniedError):
                raise
            except SsembleError as exc:
                if wait is None:
                    raise
                logger.warning(
                    "webhook for %s: could not confirm it (%s); again in %.0f s",
                    request_id,
                    exc,
                    wait,
                )
                await _clock.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _confirm_and_act(self, request_id: str, source: str) -> WebhookOutcome | None:
        try:
            request = await self._confirm(request_id)  # the one confirmation call
        except NotFoundError as exc:
            logger.warning("webhook for %s: no such request (forged, or deleted)", request_id)
            return WebhookOutcome(
                request_id=request_id, status=RequestState.UNKNOWN, error=exc, source=source
            )
        if request.status not in (
            RequestState.COMPLETED,
            RequestState.FAILED,
            RequestState.CANCELLED,
        ):
            # Ssemble sends its delivery when a job ends: this one is forged or replayed
            logger.warning(
                "webhook for %s, which is still %s: ignored until it ends",
                request_id,
                request.status_raw,
            )
            return None
        report: DownloadReport | None = None
        error: BaseException | None = None
        if request.status is RequestState.COMPLETED and self.dest is not None:
            try:
                report = await self.client.download_many(
                    [request], self.dest, **self.download_options
                )
            except SsembleError as exc:
                error = exc
        elif request.status is not RequestState.COMPLETED:
            logger.warning(
                "request %s ended %s: %s",
                request_id,
                request.status_raw,
                request.failure_reason or "no reason given",
            )
        if self.on_request is not None:
            try:
                await _call(self.on_request, request)
            except Exception as exc:  # the caller's callback: reported, never fatal
                logger.exception("on_request failed for %s", request_id)
                error = error or exc
        return WebhookOutcome(
            request_id=request_id, status=request.status, report=report, error=error, source=source
        )

    # -- reconciliation ------------------------------------------------------------------

    async def _reconcile_loop(self, every: float) -> None:
        """Look now and then for jobs that ended since the start without a delivery."""
        policy = PollPolicy(initial=every, maximum=every, factor=1.0, reserve=5)
        since = self.started_at
        while True:
            budget = self.client.quota
            await _clock.sleep(
                round_interval(budget, _clock.utcnow(), owed=0, rounds=0, policy=policy)
            )
            with contextlib.suppress(RateLimitError):
                since = await self._reconcile_once(since)

    async def _reconcile_once(self, since: dt.datetime) -> dt.datetime:
        api = self.client._watcher.api
        skew = dt.timedelta(seconds=self.client.quota.skew)
        newest = since
        page, previous, seen = 1, None, 0
        try:
            while page <= RECONCILE_PAGES:
                items, ids, more = await api.list_updates(page, previous, seen, deadline=None)
                for item in items:
                    updated = item.updated_at
                    if updated is None or updated + dt.timedelta(seconds=2) < since + skew:
                        continue
                    newest = max(newest, updated - skew)
                    if item.status in (RequestState.COMPLETED, RequestState.FAILED):
                        self.submit(item.request_id.lower(), "reconcile")
                last = items[-1].updated_at if items else None
                if not more or last is None or last < since + skew:
                    break
                page, previous, seen = page + 1, ids, seen + len(items)
        except RateLimitError as exc:
            if exc.code != PAST_DEADLINE:
                raise
            return since  # no call left now: the next look
        except SsembleError as exc:
            logger.warning("looking for jobs without a delivery failed: %s", exc)
            return since
        return newest


class _AiohttpReceiver:
    """Runs a `WebhookReceiver` for the lifetime of an aiohttp application."""

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.supervisor: asyncio.Task[None] | None = None

    async def start(self, _: web.Application) -> None:
        self.stopping = anyio.Event()
        running = anyio.Event()
        # the app owns this task: it is awaited on cleanup, after the work has stopped
        self.supervisor = asyncio.get_running_loop().create_task(self._run(running))
        await running.wait()
        if self.supervisor.done():
            await self.supervisor  # it could not start: its error, now

    async def _run(self, running: anyio.Event) -> None:
        try:
            async with self.receiver:
                running.set()
                await self.stopping.wait()
        finally:
            running.set()

    async def stop(self, _: web.Application) -> None:
        self.stopping.set()
        if self.supervisor is not None:
            await self.supervisor

    async def handle(self, request: web.Request) -> web.StreamResponse:
        # read by hand: mounted as a sub-app, the parent's client_max_size would apply
        body = bytearray()
        while chunk := await request.content.read(64 * 1024):
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                logger.warning("webhook delivery refused: over %d bytes", MAX_WEBHOOK_BYTES)
                return web.json_response(
                    {"error": f"body over {MAX_WEBHOOK_BYTES} bytes"}, status=413
                )
        status, answer = self.receiver.deliver(bytes(body), request.headers.get("Content-Type"))
        return web.json_response(answer, status=status)


#: Where a `webhook_app` keeps its receiver.
RECEIVER = web.AppKey("ssemble_async.webhooks.receiver", WebhookReceiver)


def webhook_app(
    client: Client,
    *,
    dest: str | os.PathLike[str] | None = None,
    on_request: RequestCallback | None = None,
    on_outcome: OutcomeCallback | None = None,
    path: str = "/ssemble/webhook",
    reconcile: bool | float = False,
    concurrency: int = 4,
    **download_options: Any,
) -> web.Application:
    """An ``aiohttp.web.Application`` that receives Ssemble's webhook deliveries.

    Every delivery is answered at once (``202``); the work runs in a task group the app
    owns, cancelled and awaited on the app's cleanup (a download cut there keeps its
    resumable ``.part``, and the next run or delivery resumes it). For each request id:

    1. one ``GET /shorts/:id`` confirms it (the payload is unsigned: a hint); concurrent and
       repeated deliveries of an id share that call, and an id already handled costs
       nothing; a forged or unknown id costs that call and nothing else;
    2. a completed request is downloaded into ``dest`` (as
       [`Client.download_many()`][ssemble_async.Client.download_many]: same layout, sidecars,
       manifest and guarantees) and/or handed to ``on_request``; a failed one is logged and handed
       to ``on_request``; nothing is downloaded.

    A body that is not JSON, too large (over 256 KiB) or not a delivery is answered
    ``4xx``, logged, and nothing else happens. The payload carries no signature: put a
    secret in the path (``path="/ssemble/webhook/<long random token>"``) to keep strangers
    out. Mount it in your own service with ``app.add_subapp("/hooks", webhook_app(...))``;
    for another framework use [`WebhookReceiver`][ssemble_async.webhooks.WebhookReceiver].

    Args:
        client: the client that confirms and downloads (its quota governor meters both).
        dest: the folder to download completed requests into; None: download nothing.
        on_request: called with each ended request, after its download.
        on_outcome: called with a [`WebhookOutcome`][ssemble_async.webhooks.WebhookOutcome] per
            request id handled.
        path: the route of the deliveries within the app.
        reconcile: look for jobs that ended since the app started without a delivery (a
            receiver that was down misses them): True every 5 minutes, a number of seconds
            for another interval, at a low rate within the quota budget; off by default.
        concurrency: request ids handled at once.
        **download_options: keywords of
            [`Client.download_many()`][ssemble_async.Client.download_many] (``concurrency`` of the
            clips is ``clip_concurrency`` here).
    """
    receiver = WebhookReceiver(
        client,
        dest=dest,
        on_request=on_request,
        on_outcome=on_outcome,
        reconcile=reconcile,
        concurrency=concurrency,
        **download_options,
    )
    served = _AiohttpReceiver(receiver)
    app = web.Application(client_max_size=MAX_WEBHOOK_BYTES)
    app[RECEIVER] = receiver
    app.router.add_post(path, served.handle)
    app.on_startup.append(served.start)
    app.on_cleanup.append(served.stop)
    return app


def handled(app: web.Application) -> Mapping[str, WebhookOutcome]:
    """The request ids a [`webhook_app()`][ssemble_async.webhooks.webhook_app] handled so far."""
    return app[RECEIVER].handled
