"""The shared `QuotaGovernor`: one budget per API key in Redis, for many processes.

Selected by ``quota_url="redis://host:port/db"`` (or ``rediss://``, ``unix://``); needs the
``distributed`` extra (redis-py). The budget is kept under a hash of the API key, never the
key itself, and changed only by Lua scripts; every decision uses Redis ``TIME`` as "now", so
no worker's clock decides. The decisions themselves are the pure functions of
`ssemble_async._quota`, the same as the in-process governor's:

- **acquire**: a script reads the budget, the version and Redis' time, and reaps the leases
  whose expiry passed (each counts as a spent call: its worker died or hung after sending);
  the worker decides with `next_call_delay()` (the live leases are the calls in flight);
  a grant is written by a second script only if nothing changed since the read (the
  version), with a lease that expires ``lease_seconds`` later.
- **settle**: the answer's headers are folded in with `settle()` the same way, and the
  lease removed. A lease that expired meanwhile was counted already: its late answer only
  brings its headers (a new window, a lower count), never a second count.
- **clocks**: each worker measures its offset to Redis' clock at every script call and
  moves its answer's times onto Redis' clock, so the ``Date`` skew is the API's clock
  against Redis'.
- **Redis unreachable** (or restarted): an unreachable store fails closed into probe mode
  (one call at a time in this process, by the in-process rules, until Redis answers again;
  logged once per outage; what the answers told meanwhile is folded into the shared
  budget when it is back); a restarted store without persistence has an empty budget,
  which the shared rules meter as unknown (one probe at a time for all workers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import anyio
import attrs

from ssemble_async import _clock
from ssemble_async._config import QuotaPolicy
from ssemble_async._errors import ConfigurationError
from ssemble_async._governor import PAST_DEADLINE, LocalGovernor, describe_wait, quota_error
from ssemble_async._quota import (
    RESET_MARGIN,
    SAME_WINDOW,
    CallResult,
    Delay,
    Lease,
    Priority,
    QuotaBudget,
    Reach,
    next_call_delay,
    refill,
    reserve,
    settle,
)
from ssemble_async._ratelimit import RateLimit

__all__ = ["RedisGovernor", "budget_from_state", "state_of_budget"]

logger = logging.getLogger("ssemble_async")

#: Seconds a granted call may take before its lease expires and counts as spent.
LEASE_SECONDS = 120.0
#: Seconds between two looks at the shared budget while a probe runs elsewhere.
PROBE_POLL = 0.2
#: Seconds given to withdrawing a grant whose caller is gone (cancelled, or Redis failed).
WITHDRAW_TIMEOUT = 5.0

# KEYS: budget, leases, version. Returns the budget JSON ("" when none), the version,
# Redis' time, the live leases, and whether ARGV[1] (a lease id, or "") is still live.
_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local raw = redis.call('GET', KEYS[1])
  if raw then
    local state = cjson.decode(raw)
    if type(state.remaining) == 'number' then
      state.remaining = state.remaining - #expired
      redis.call('SET', KEYS[1], cjson.encode(state))
    end
  end
  redis.call('INCR', KEYS[3])
end
local live = 0
if ARGV[1] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[1]) then live = 1 end
return {redis.call('GET', KEYS[1]) or '', tonumber(redis.call('GET', KEYS[3]) or '0'),
        string.format('%.6f', now), redis.call('ZCARD', KEYS[2]), live}
"""

# KEYS: budget, leases, version. ARGV: the version read, the new budget JSON, a lease id to
# add (or ""), its lifetime in seconds, a lease id to remove (or ""). Returns 1 when
# written, 0 when the version moved on (read again and decide again).
_WRITE = """
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3]) end
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[2], ARGV[5]) end
redis.call('INCR', KEYS[3])
return 1
"""


def _epoch(when: dt.datetime | None) -> float | None:
    return None if when is None else when.timestamp()


def _moment(seconds: object) -> dt.datetime | None:
    if not isinstance(seconds, int | float):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def state_of_budget(budget: QuotaBudget) -> str:
    """The shared part of a budget as stored (in-flight calls are the live leases)."""
    return json.dumps(
        {
            "limit": budget.limit,
            "remaining": budget.remaining,
            "remaining_day": budget.remaining_day,
            "reset": _epoch(budget.reset),
            "estimated": budget.estimated,
            "window": budget.window,
            "skew": budget.skew,
            "last_recheck": _epoch(budget.last_recheck),
            "headerless": budget.headerless,
        }
    )


def _count(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def budget_from_state(raw: str, in_flight: int) -> QuotaBudget:
    """The budget a stored state describes (an empty or unreadable one: nothing known)."""
    try:
        data: Any = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    window, skew = data.get("window"), data.get("skew")
    return QuotaBudget(
        limit=_count(data.get("limit")),
        remaining=_count(data.get("remaining")),
        remaining_day=_count(data.get("remaining_day")),
        reset=_moment(data.get("reset")),
        estimated=data.get("estimated") is True,
        window=float(window) if isinstance(window, int | float) and window > 0 else 3600.0,
        skew=float(skew) if isinstance(skew, int | float) else 0.0,
        in_flight=in_flight,
        last_recheck=_moment(data.get("last_recheck")),
        headerless=_count(data.get("headerless")) or 0,
    )


@attrs.frozen(kw_only=True)
class _SharedLease(Lease):
    """A call granted from Redis (``lease_id`` in its lease set) or, while Redis cannot be
    reached, by this process's probe-mode governor (``lease_id`` None)."""

    lease_id: str | None = None


@attrs.frozen
class _Read:
    budget: QuotaBudget
    version: int
    now: dt.datetime  # Redis' time
    offset: float  # Redis' time minus this process's, seconds
    live: bool  # the lease asked about is still live


class RedisGovernor:
    """Grants the calls of every process that uses one API key through one Redis.

    Args:
        url: the Redis URL (``redis://``, ``rediss://`` or ``unix://``); it may hold a
            password and is never logged.
        api_key: the key whose quota is shared (only its SHA-256 names the Redis keys).
        policy: what to do when the quota is spent (wait for the reset, or raise).
        lease_seconds: how long a granted call may take before it counts as spent.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        policy: QuotaPolicy,
        *,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        try:
            from redis import asyncio as aioredis  # noqa: PLC0415 - the distributed extra
        except ImportError:
            raise ConfigurationError(
                "a quota_url of redis:// needs the distributed extra:"
                " pip install 'ssemble-async[distributed]'"
            ) from None
        self.policy = policy
        self.lease_seconds = lease_seconds
        try:
            self._redis = aioredis.Redis.from_url(
                url, socket_timeout=5.0, socket_connect_timeout=5.0, retry_on_timeout=False
            )
        except ValueError:
            # its message may quote a piece of the URL (a password cut at "#" or "/")
            raise ConfigurationError(
                "the Redis URL of the shared quota budget cannot be read (it is not repeated:"
                " it may hold a password); percent-encode any of : / ? # @ [ ] in its user"
                " name or password, e.g. redis://:p%23ss@host:6379/0"
            ) from None
        digest = hashlib.sha256(api_key.encode()).hexdigest()[:32]
        prefix = f"ssemble:quota:{digest}"
        self._keys = (f"{prefix}:budget", f"{prefix}:leases", f"{prefix}:version")
        self._read_script = self._redis.register_script(_READ)
        self._write_script = self._redis.register_script(_WRITE)
        self._where = _described(url, self._redis.connection_pool.connection_kwargs)
        self._budget = QuotaBudget()
        self._offset = 0.0  # Redis' clock minus this process's, seconds (at the last read)
        self._fallback = LocalGovernor(policy)
        self._probe = anyio.Semaphore(1)
        self._down = False
        self._announced: dt.datetime | None = None

    def budget(self) -> QuotaBudget:
        """The shared budget as this process last read or wrote it, on this process's clock
        (like the in-process governor's: ``skew`` is the server's clock against ours)."""
        if self._down:
            return self._fallback.budget()
        return _on_local_clock(self._budget, self._offset)

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    # -- Redis ------------------------------------------------------------------------------

    async def _read(self, lease_id: str = "") -> _Read:
        before = _clock.utcnow().timestamp()
        raw, version, now, live, alive = await self._read_script(keys=self._keys, args=[lease_id])
        after = _clock.utcnow().timestamp()
        redis_now = float(now)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        budget = budget_from_state(text, int(live))
        moment = dt.datetime.fromtimestamp(redis_now, dt.timezone.utc)
        self._budget, self._offset = budget, redis_now - (before + after) / 2
        return _Read(budget, int(version), moment, self._offset, bool(alive))

    async def _write(
        self, read: _Read, budget: QuotaBudget, *, add: str = "", remove: str = ""
    ) -> bool:
        written = await self._write_script(
            keys=self._keys,
            args=[read.version, state_of_budget(budget), add, self.lease_seconds, remove],
        )
        return bool(written)

    async def _withdraw(self, lease_id: str) -> None:
        """Drop a lease whose grant may have been written but never reached its caller
        (cancelled, or Redis failed to answer): its call is never sent, so it must neither
        hold the budget until it expires nor count as spent then."""
        from redis.exceptions import RedisError  # noqa: PLC0415 - the distributed extra

        # when Redis does not answer, the lease expires on its own and counts as spent
        with anyio.move_on_after(WITHDRAW_TIMEOUT, shield=True), suppress(RedisError, OSError):
            await self._redis.zrem(self._keys[1], lease_id)

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            logger.warning(
                "the shared quota store %s cannot be reached (%s); one call at a time until"
                " it answers again",
                self._where,
                type(exc).__name__,
            )

    def _came_back(self) -> None:
        if self._down:
            self._down = False
            logger.warning("the shared quota store %s answers again", self._where)

    # -- the governor -----------------------------------------------------------------------

    async def acquire(
        self, priority: Priority = Priority.URGENT, *, deadline: float | None = None
    ) -> Lease:
        """Wait until a call of ``priority`` may go; see `QuotaGovernor`."""
        from redis.exceptions import RedisError  # noqa: PLC0415 - the distributed extra

        while True:
            try:
                if self._down:
                    await self._fold_outage()
                lease = await self._try_shared(priority, deadline)
            except (RedisError, OSError) as exc:
                self._went_down(exc)
                return await self._acquire_alone(priority, deadline)
            self._came_back()
            if lease is not None:
                return lease

    async def _fold_outage(self) -> None:
        """Back after an outage: what the answers of the calls made alone meanwhile told
        goes into the shared budget, which does not know of those calls."""
        learnt = self._fallback.budget()
        until = learnt.seconds_until_reset(_clock.utcnow())  # (its skew is against our clock)
        if until is None or until <= 0:
            return  # nothing told, or of a window that is over
        while True:
            read = await self._read()
            budget = refill(read.budget, read.now)
            folded = _folded(budget, learnt)
            if folded == budget or await self._write(read, folded):
                return

    async def _acquire_alone(self, priority: Priority, deadline: float | None) -> Lease:
        """Probe mode: one call at a time in this process, by the in-process rules."""
        with _clock.cancel_at(deadline) as scope:  # the deadline bounds this wait too
            await self._probe.acquire()
        if scope.cancelled_caught:
            budget, now = self._fallback.budget(), _clock.utcnow()
            raise quota_error(budget, Delay(seconds=0.0), now, code=PAST_DEADLINE)
        try:
            granted = await self._fallback.acquire(priority, deadline=deadline)
        except BaseException:
            self._probe.release()
            raise
        return _SharedLease(priority=granted.priority, granted_at=granted.granted_at)

    async def _try_shared(self, priority: Priority, deadline: float | None) -> Lease | None:
        """One decision on the shared budget: a lease, or None after waiting (ask again)."""
        read = await self._read()
        budget = refill(read.budget, read.now)
        delay = next_call_delay(budget, read.now, priority)
        if delay.seconds == 0:
            lease_id = uuid.uuid4().hex
            lease = _SharedLease(priority=priority, granted_at=read.now, lease_id=lease_id)
            try:
                written = await self._write(read, reserve(budget, lease), add=lease_id)
            except BaseException:
                await self._withdraw(lease_id)
                raise
            if written:
                return lease
            return None  # someone else changed the budget meanwhile: decide again
        await self._wait(budget, delay, read, deadline)
        return None

    async def _wait(
        self, budget: QuotaBudget, delay: Delay, read: _Read, deadline: float | None
    ) -> None:
        # what is told (errors, the log) is on this process's clock, as the local governor's
        budget = _on_local_clock(budget, read.offset)
        now = read.now - dt.timedelta(seconds=read.offset)
        seconds = PROBE_POLL if delay.seconds is None else delay.seconds
        if delay.exhausted:
            if self.policy.on_exhausted == "raise" or (
                delay.seconds is not None
                and delay.seconds > self.policy.max_wait + 2 * RESET_MARGIN
            ):
                raise quota_error(budget, delay, now, code="quota_exhausted")
            if deadline is not None and _clock.monotonic() + seconds > deadline:
                raise quota_error(budget, delay, now, code=PAST_DEADLINE)
            if self._announced != budget.reset:
                self._announced = budget.reset  # once per window, not per call
                logger.warning("%s", describe_wait(budget, seconds))
        if deadline is not None:
            left = deadline - _clock.monotonic()
            if left <= 0:
                raise quota_error(budget, Delay(seconds=seconds), now, code=PAST_DEADLINE)
            seconds = min(seconds, left)
        # another worker's answer may change the budget: look again at least every second
        await _clock.sleep(min(seconds, 1.0))

    async def settle(self, lease: Lease, result: CallResult) -> None:
        """Fold a granted call's result into the shared budget and drop its lease."""
        from redis.exceptions import RedisError  # noqa: PLC0415 - the distributed extra

        lease_id = lease.lease_id if isinstance(lease, _SharedLease) else None
        if lease_id is None:  # granted in probe mode
            try:
                await self._fallback.settle(lease, result)
            finally:
                self._probe.release()
            return
        try:
            while True:
                read = await self._read(lease_id)
                moved = _on_redis_clock(result, read.offset)
                told = moved.rate_limit is not None and moved.rate_limit.remaining_hour is not None
                if not read.live and not told:
                    # the lease expired and was counted already: nothing more to count
                    moved = attrs.evolve(moved, reach=Reach.NO)
                budget = settle(refill(read.budget, read.now), moved)
                if await self._write(read, budget, remove=lease_id):
                    self._budget = budget  # (back from an outage: the next acquire says so)
                    return
        except (RedisError, OSError) as exc:
            # the lease expires on its own and counts as spent: never less than the truth
            self._went_down(exc)


def _on_redis_clock(result: CallResult, offset: float) -> CallResult:
    """The result with its times moved from this process's clock onto Redis'."""
    shift = dt.timedelta(seconds=offset)
    return attrs.evolve(
        result,
        sent_at=None if result.sent_at is None else result.sent_at + shift,
        received_at=None if result.received_at is None else result.received_at + shift,
    )


def _folded(shared: QuotaBudget, learnt: QuotaBudget) -> QuotaBudget:
    """The shared budget with the figures this process's last answer told while it was
    alone (``learnt``), as an answer is folded in: the lower count within one window, the
    server's in a newer one; an older window than the shared one's changes nothing."""
    if learnt.remaining is None or learnt.reset is None or learnt.estimated:
        return shared
    if shared.reset is not None and (shared.reset - learnt.reset).total_seconds() > SAME_WINDOW:
        return shared
    told = RateLimit(
        limit_hour=learnt.limit,
        remaining_hour=learnt.remaining,
        remaining_day=learnt.remaining_day,
        reset=learnt.reset,
    )
    folded = settle(shared, CallResult(reach=Reach.YES, status=200, rate_limit=told))
    return attrs.evolve(folded, in_flight=shared.in_flight)


def _on_local_clock(budget: QuotaBudget, offset: float) -> QuotaBudget:
    """A budget kept on Redis' clock, moved onto this process's (``offset``: Redis' clock
    minus ours): the skew becomes the server's clock against ours."""
    recheck = budget.last_recheck
    return attrs.evolve(
        budget,
        skew=budget.skew + offset,
        last_recheck=None if recheck is None else recheck - dt.timedelta(seconds=offset),
    )


def _described(url: str, settings: Mapping[str, Any]) -> str:
    """Where the store is, for the log: the scheme and the host and port (or the socket)
    redis-py connects to, never the user name, password, path or query of the URL."""
    scheme = url.partition("://")[0].lower()
    if settings.get("path"):
        return f"unix://{settings['path']}"
    return f"{scheme}://{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"
