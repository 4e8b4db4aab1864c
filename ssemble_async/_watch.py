"""One watcher per client for every wait: many jobs learned from one list call a round.

Every ``wait_for_completion``, ``wait_for_many`` and ``download_*(wait=True)`` of a client
registers its request ids here. One poll loop serves them all: each round reads
``GET /shorts?sortBy=updatedAt&sortOrder=desc`` and stops paging at the first item not
changed since what is already known; ids the list cannot show (and one id alone, whose
status costs the same as the list) fall back to ``GET /shorts/:id/status``, and a job seen
finished costs one ``GET /shorts/:id`` for its clips. Rounds are spaced by
`round_interval()` (the quota budget and the poll policy).

No task runs in the background: the waiting tasks take turns leading the loop (one round
at a time); when the leader is done, cancelled or past its deadline, the next one leads.
Each waiter runs its own progress callback, in its own task.
"""

from __future__ import annotations

import datetime as dt
import inspect
import itertools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Protocol

import anyio
import anyio.lowlevel
import attrs

from ssemble_async import _clock
from ssemble_async._config import PollPolicy
from ssemble_async._errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestFailedError,
    SsembleError,
    WaitTimeoutError,
)
from ssemble_async._governor import PAST_DEADLINE, describe_wait
from ssemble_async._models import RequestState, RequestStatus, RequestSummary, ShortsRequest
from ssemble_async._quota import RESET_MARGIN, Priority, QuotaBudget, round_interval

__all__ = ["Known", "ProgressCallback", "WaitResult", "WatchAPI", "Watcher"]

logger = logging.getLogger("ssemble_async")

ProgressCallback = Callable[[RequestStatus], Awaitable[None] | None]
"""Called with each status seen while waiting; may be a plain or an async function."""

#: What a wait ends with, per id: the completed request, or why it did not complete.
WaitResult = ShortsRequest | SsembleError

#: Pages one round may read (a list that keeps changing past this is read on next round).
MAX_ROUND_PAGES = 10
#: Items per list call (the API's largest page).
PAGE_SIZE = 100
#: A status we read ourselves is taken as true this many seconds before we read it
#: (the server's clock is known to about a second).
KNOWN_MARGIN = 2.0
#: Reads of one round at once.
READS_AT_ONCE = 8
_FINISHED = (RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED)
_FINAL_ERRORS = (AuthenticationError, PermissionDeniedError)


class WatchAPI(Protocol):
    """The API calls the watcher needs (the client provides them)."""

    async def read_request(
        self,
        request_id: str,
        *,
        priority: Priority,
        deadline: float | None,
        wait_for_quota: bool = True,
    ) -> ShortsRequest:
        """``GET /shorts/:id``."""

    async def read_status(
        self, request_id: str, *, priority: Priority, deadline: float | None
    ) -> RequestStatus:
        """``GET /shorts/:id/status``; never waits for the quota (``RateLimitError`` with
        code ``quota_past_deadline`` when it cannot go at once)."""

    async def list_updates(
        self, page: int, previous_ids: tuple[str, ...] | None, seen: int, *, deadline: float | None
    ) -> tuple[tuple[RequestSummary, ...], tuple[str, ...], bool]:
        """One page of ``GET /shorts`` newest update first: items, their ids, more pages;
        never waits for the quota (as `read_status()`)."""

    def quota_budget(self) -> QuotaBudget:
        """The quota budget as known now."""


@attrs.frozen(kw_only=True)
class Known:
    """A status the caller already read, and when (our clock)."""

    status: RequestStatus | ShortsRequest
    seen_at: dt.datetime


@attrs.define(eq=False)
class _Entry:
    request_id: str
    state: RequestState | None = None  # None: not known yet
    known_at: dt.datetime | None = None  # server clock: ``state`` was true then
    statuses: list[RequestStatus] = attrs.field(factory=list)
    result: WaitResult | None = None
    waiters: int = 0
    policies: list[PollPolicy] = attrs.field(factory=list)


def _status_of(item: RequestSummary | ShortsRequest) -> RequestStatus:
    if isinstance(item, ShortsRequest):
        return RequestStatus(
            request_id=item.request_id,
            status=item.status,
            status_raw=item.status_raw,
            progress=item.progress,
            failure_reason=item.failure_reason,
        )
    return RequestStatus(
        request_id=item.request_id,
        status=item.status,
        status_raw=item.status_raw,
        progress=item.progress,
    )


def _ordered(items: Sequence[RequestSummary]) -> bool:
    """True when every item has an ``updatedAt`` and they come newest first."""
    times = [item.updated_at for item in items]
    if any(time is None for time in times):
        return False
    return all(a >= b for a, b in itertools.pairwise(times))  # type: ignore[operator]


class Watcher:
    """The one poll loop of a client (see the module's docstring)."""

    def __init__(self, api: WatchAPI, policy: PollPolicy) -> None:
        self.api = api
        self.policy = policy
        self.entries: dict[str, _Entry] = {}
        self.leading = False
        self.changed = anyio.Event()
        self.wakeup = anyio.Event()
        self.next_round: float | None = None
        self.rounds = 0
        self.watermark: dt.datetime | None = None
        self.announced: dt.datetime | None = None  # the reset whose wait was logged

    # -- registration -------------------------------------------------------------------

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def _policy(self) -> PollPolicy:
        policies = [p for e in self.entries.values() if e.waiters for p in e.policies]
        return min(policies, key=lambda p: (p.maximum, p.initial), default=self.policy)

    def _live(self) -> list[_Entry]:
        return [e for e in self.entries.values() if e.result is None and e.waiters]

    def _interval(self) -> float:
        return round_interval(
            self.api.quota_budget(),
            _clock.utcnow(),
            owed=len(self._live()),
            rounds=self.rounds,
            policy=self._policy(),
        )

    def _server_time(self, local: dt.datetime) -> dt.datetime:
        skew = self.api.quota_budget().skew
        return local + dt.timedelta(seconds=skew - KNOWN_MARGIN)

    def register(self, request_id: str, known: Known | None, policy: PollPolicy | None) -> _Entry:
        """Watch ``request_id`` for one more waiter; start from ``known`` when given."""
        entry = self.entries.get(request_id)
        if entry is None:
            entry = self.entries[request_id] = _Entry(request_id)
        entry.waiters += 1
        entry.policies.append(policy or self.policy)
        if entry.result is None and known is not None:
            self._learn(entry, known.status, self._server_time(known.seen_at))
        if entry.result is None:
            now = _clock.monotonic()
            if entry.state is None or entry.state in _FINISHED:
                self.next_round = now  # nothing known, or a final read due: at once
            elif self.next_round is None:
                self.next_round = now + self._interval()  # one interval after the read
            self.wakeup.set()
        return entry

    def unregister(self, entry: _Entry, policy: PollPolicy | None) -> None:
        """One waiter of ``entry`` is gone; forget the id when it was the last."""
        entry.waiters -= 1
        if policy in entry.policies:
            entry.policies.remove(policy)
        elif entry.policies:
            entry.policies.pop()
        if entry.waiters <= 0 and self.entries.get(entry.request_id) is entry:
            del self.entries[entry.request_id]
        if not self._live():
            self.next_round, self.rounds = None, 0

    # -- what is learnt -----------------------------------------------------------------

    def _learn(
        self, entry: _Entry, seen: RequestStatus | ShortsRequest | RequestSummary, at: dt.datetime
    ) -> None:
        status = seen if isinstance(seen, RequestStatus) else _status_of(seen)
        if not entry.statuses or entry.statuses[-1] != status:
            entry.statuses.append(status)
        entry.state = status.status
        entry.known_at = at if entry.known_at is None else max(entry.known_at, at)
        if isinstance(seen, ShortsRequest):
            if seen.status is RequestState.COMPLETED:
                entry.result = seen
            elif seen.status in (RequestState.FAILED, RequestState.CANCELLED):
                entry.result = RequestFailedError(
                    seen.request_id, seen.status_raw, seen.failure_reason
                )

    def _fail(self, entries: Iterable[_Entry], error: SsembleError) -> None:
        for entry in entries:
            if entry.result is None:
                entry.result = error

    # -- one round ----------------------------------------------------------------------

    async def _read(self, entry: _Entry, deadline: float | None) -> None:
        """Read one entry: its status while it runs, the whole request once it ended.

        A request that is gone ends its wait.
        """
        try:
            if entry.state in _FINISHED:
                request = await self.api.read_request(
                    entry.request_id,
                    priority=Priority.URGENT,
                    deadline=deadline,
                    wait_for_quota=False,
                )
                self._learn(entry, request, self._server_time(_clock.utcnow()))
                return
            status = await self.api.read_status(
                entry.request_id, priority=Priority.POLL, deadline=deadline
            )
        except NotFoundError as exc:
            entry.result = exc
            return
        except RateLimitError as exc:
            if exc.code == PAST_DEADLINE:
                self._announce_quota_wait()
                return  # no call left now: a later round reads it (the interval says when)
            raise
        self._learn(entry, status, self._server_time(_clock.utcnow()))
        if status.status in _FINISHED:
            await self._read(entry, deadline)  # its clips (or its failure reason)

    async def _list(self, live: list[_Entry], deadline: float | None) -> set[str]:
        """Read the list down to what is known; return the ids it could not show.

        Paging stops at the first item older than what is known of every waiting job (the
        list is sorted newest update first): a job not seen above it has not changed. Ids
        never known yet are looked for a little further (a page is cheaper than two status
        reads). When the whole list was read, a job not in it is gone; when the pages ran
        out before the known part (a busy account, a server that ignores ``sortBy``), the
        jobs not seen are unknown: both are read on their own.
        """
        since = min((e.known_at for e in live if e.known_at is not None), default=None)
        unknown = {e.request_id for e in live if e.known_at is None}
        seen_ids: set[str] = set()
        page, previous, seen, newest = 1, None, 0, None
        while True:
            items, ids, more = await self.api.list_updates(page, previous, seen, deadline=deadline)
            ordered = _ordered(items)
            for item in items:
                if item.updated_at is not None and (newest is None or item.updated_at > newest):
                    newest = item.updated_at
                entry = self.entries.get(item.request_id.lower())
                if entry is not None and entry.result is None:
                    at = item.updated_at or self._server_time(_clock.utcnow())
                    self._learn(entry, item, at)
                    unknown.discard(entry.request_id)
                    seen_ids.add(entry.request_id)
            last = items[-1].updated_at if items else None
            # every change since what was known is above this page, when it is sorted and
            # older (or when nothing was known)
            caught_up = since is None or (
                ordered and since is not None and last is not None and last < since
            )
            if (caught_up and len(unknown) < 2) or not more or page >= MAX_ROUND_PAGES:
                break
            page, previous, seen = page + 1, ids, seen + len(items)
        if caught_up or not more:
            if newest is not None:
                self.watermark = newest if self.watermark is None else max(self.watermark, newest)
                for entry in live:
                    if entry.known_at is not None and entry.result is None:
                        entry.known_at = max(entry.known_at, self.watermark)
            if caught_up:
                return unknown
        return {e.request_id for e in live if e.request_id not in seen_ids}

    async def _round(self, deadline: float | None) -> None:
        await anyio.lowlevel.checkpoint()  # waits started at the same moment join this round
        live = self._live()
        if not live:
            return
        waiting = [e for e in live if e.state not in _FINISHED]
        reads: list[_Entry] = []
        if len(waiting) <= 1:
            reads.extend(waiting)  # one id: its status is as cheap as the list
        else:
            unseen = await self._list(waiting, deadline)
            reads.extend(self.entries[rid] for rid in sorted(unseen))
        reads.extend(e for e in self._live() if e.state in _FINISHED and e not in reads)
        if reads:
            limiter = anyio.CapacityLimiter(READS_AT_ONCE)

            failures: list[SsembleError] = []

            async def read(entry: _Entry) -> None:
                async with limiter:
                    if entry.result is None and not failures:
                        try:
                            await self._read(entry, deadline)
                        except SsembleError as exc:
                            failures.append(exc)  # the round's error, raised unwrapped

            async with anyio.create_task_group() as group:
                for entry in reads:
                    group.start_soon(read, entry)
            if failures:
                raise failures[0]
        self.rounds += 1

    async def _lead_once(self, deadline: float | None) -> None:
        """Wait for the next round (or a new id), then run it; as the leader."""
        target = self.next_round
        if target is None:
            target = self.next_round = _clock.monotonic() + self._interval()
        if _clock.monotonic() < target:
            self.wakeup = wakeup = anyio.Event()
            until = target if deadline is None else min(target, deadline)
            await _clock.wait_event(wakeup, until)
            return  # woken, or due: the waiter's loop looks again
        started = _clock.monotonic()
        try:
            with _clock.cancel_at(deadline):
                await self._round(deadline)
        except RateLimitError as exc:
            # not now (no call left, or a probe under way): the next round's time says when
            if exc.code != PAST_DEADLINE:
                self._fail(self._live(), exc)
            else:
                self._announce_quota_wait()
        except _FINAL_ERRORS as exc:
            self._fail(self._live(), exc)
        except SsembleError as exc:
            logger.warning(
                "polling for %d requests failed (%s); trying again", len(self._live()), exc
            )
        if self._live():
            # from the round's start: a round that waited for the quota's reset (its final
            # reads) is followed by a look at what changed meanwhile, not a full interval on
            self.next_round = started + self._interval()
        else:
            self.next_round, self.rounds = None, 0

    def _announce_quota_wait(self) -> None:
        """Log, once per reset, that the waits go on after the quota's reset."""
        budget = self.api.quota_budget()
        until = budget.seconds_until_reset(_clock.utcnow())
        spent = (budget.remaining is not None and budget.remaining <= 0) or (
            budget.remaining_day is not None and budget.remaining_day <= 0
        )
        if spent and until is not None and until > 0 and self.announced != budget.reset:
            self.announced = budget.reset
            logger.warning("%s", describe_wait(budget, until + RESET_MARGIN))

    async def _serve(
        self,
        entries: Sequence[_Entry],
        deadline: float | None,
        done: Callable[[], bool],
        reported: dict[str, int],
        on_progress: ProgressCallback | None,
    ) -> bool:
        """Take part in the loop until ``done()``; False when the deadline passed first."""
        while True:
            if on_progress is not None:
                for entry in entries:
                    # (statuses may be added while a callback awaits: read the length anew)
                    while (seen := reported.get(entry.request_id, 0)) < len(entry.statuses):
                        reported[entry.request_id] = seen + 1
                        outcome = on_progress(entry.statuses[seen])
                        if inspect.isawaitable(outcome):
                            await outcome
            if done():
                return True
            if deadline is not None and _clock.monotonic() >= deadline:
                return False
            if self.leading:
                await _clock.wait_event(self.changed, deadline)
                continue
            self.leading = True
            try:
                await self._lead_once(deadline)
            finally:
                self.leading = False
                self._notify()

    # -- waits ----------------------------------------------------------------------------

    async def wait(
        self,
        request_id: str,
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's own budget, on the package clock)
        known: Known | None = None,
        on_progress: ProgressCallback | None = None,
        policy: PollPolicy | None = None,
    ) -> ShortsRequest:
        """Wait for one request (see ``Client.wait_for_completion``)."""
        deadline = _clock.monotonic() + timeout
        entry = self.register(request_id, known, policy)
        try:
            finished = await self._serve(
                [entry], deadline, lambda: entry.result is not None, {}, on_progress
            )
        finally:
            self.unregister(entry, policy)
        if not finished or entry.result is None:
            raise WaitTimeoutError(
                request_id, timeout, entry.statuses[-1].status_raw if entry.statuses else None
            )
        if isinstance(entry.result, SsembleError):
            raise entry.result
        return entry.result

    async def wait_many(
        self,
        requests: Sequence[tuple[str, Known | None]],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's own budget, on the package clock)
        on_progress: ProgressCallback | None = None,
    ) -> AsyncGenerator[tuple[str, WaitResult], None]:
        """Yield ``(id, result)`` for each request as it ends; timeouts for the rest."""
        deadline = _clock.monotonic() + timeout
        entries = [self.register(rid, known, None) for rid, known in requests]
        pending = {e.request_id: e for e in entries}
        reported: dict[str, int] = {}
        try:
            while pending:
                finished = await self._serve(
                    list(pending.values()),
                    deadline,
                    lambda: any(e.result is not None for e in pending.values()),
                    reported,
                    on_progress,
                )
                ready = [e for e in pending.values() if e.result is not None]
                if not finished and not ready:
                    for entry in list(pending.values()):
                        del pending[entry.request_id]
                        last = entry.statuses[-1].status_raw if entry.statuses else None
                        yield entry.request_id, WaitTimeoutError(entry.request_id, timeout, last)
                    return
                for entry in ready:
                    del pending[entry.request_id]
                    assert entry.result is not None
                    yield entry.request_id, entry.result
        finally:
            for entry in entries:
                self.unregister(entry, None)
