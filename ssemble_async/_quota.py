"""The quota budget and the decisions over it: pure functions, no I/O, no sleeping.

The API allows a number of calls per hourly window (100 on the standard tier) and says, in
the ``X-RateLimit-*`` headers of each answer, how many are left and when the window resets.
A [`QuotaBudget`][ssemble_async.QuotaBudget] is what a client knows of that: the last figures,
corrected by its own count, the calls in flight, and the offset between its clock and the server's.
The I/O side ([`QuotaGovernor`][ssemble_async.QuotaGovernor] implementations) holds one, asks
`next_call_delay()` before each call and folds each answer in with `settle()`; the watcher spaces
its rounds with `round_interval()`.

Rules:

- While nothing is known, one call (a probe) goes at a time until an answer tells.
- Within one window the lower of the server's count and the local count holds; a newer
  reset starts a new window with the server's count.
- A call counts only when it may have reached the server: a refused connection is free.
- Calls in flight are reserved, so concurrent tasks cannot overshoot together.
- When the reset passes, the budget refills once to the limit (and the next reset is one
  window later) instead of being forgotten.
- The server's reset time is read on the server's clock: the ``Date`` header of each answer
  measures the offset.
- Priorities: a call for a running transfer (or the caller's own) may spend the last call;
  re-checks of re-rendering clips leave a few for those, and are spread evenly until the
  reset; the watcher spaces its rounds to leave the one final read each waiting job still
  owes (`round_interval()`).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from typing import Protocol

import attrs

from ssemble_async._config import PollPolicy
from ssemble_async._ratelimit import RateLimit

__all__ = [
    "CallResult",
    "Delay",
    "Lease",
    "Priority",
    "QuotaBudget",
    "QuotaGovernor",
    "Reach",
    "next_call_delay",
    "refill",
    "reserve",
    "round_interval",
    "settle",
]

#: The window length assumed until two resets are seen (the API's is one hour).
DEFAULT_WINDOW = 3600.0
#: Seconds added after a reset before calling, for clock granularity (``Date`` has 1 s).
RESET_MARGIN = 1.0
#: Two resets within this many seconds are the same window (a rounded or re-sent value).
SAME_WINDOW = 2.0
#: Calls re-checks leave for transfers that need a fresh URL.
URGENT_RESERVE = 2
#: Answers without quota headers after which a budget still unknown stops probing.
HEADERLESS_ANSWERS = 3
#: The shortest render the API reports (5 minutes): polling never slows below one round
#: per this while any call is left for it.
SLOWEST_ROUND = 300.0


class Priority(enum.IntEnum):
    """Who asks for a call; a lower value goes first when the budget is short."""

    URGENT = 0  #: the caller's own call, a fresh URL for a running transfer, a final read
    RECHECK = 1  #: a re-read of a request whose clips are re-rendering
    POLL = 2  #: a round of the watcher


class Reach(enum.Enum):
    """Whether a call may have reached the server (and so counts against the quota)."""

    NO = "no"  #: the connection was never made: the call is free
    MAYBE = "maybe"  #: sent, answer unknown (timeout, reset, cancelled): counted
    YES = "yes"  #: answered


@attrs.frozen(kw_only=True)
class QuotaBudget:
    """What a client knows of its key's quota (a value; every change makes a new one).

    Attributes:
        limit: calls per window, when known.
        remaining: calls left in the window, when known (in-flight calls not subtracted).
        remaining_day: calls left today, when known.
        reset: when the window resets, on the server's clock.
        estimated: True when ``remaining``/``reset`` come from a refill, not from an answer.
        window: the window's length, seconds.
        skew: seconds the server's clock is ahead of ours (``Date`` minus our time).
        in_flight: calls granted and not settled yet.
        last_recheck: when the last re-check was granted (our clock), for spreading them.
        headerless: answers in a row without any quota header (a server that never sends
            them is not metered after a few).
    """

    limit: int | None = None
    remaining: int | None = None
    remaining_day: int | None = None
    reset: dt.datetime | None = None
    estimated: bool = False
    window: float = DEFAULT_WINDOW
    skew: float = 0.0
    in_flight: int = 0
    last_recheck: dt.datetime | None = None
    headerless: int = 0

    @property
    def known(self) -> bool:
        """True once an answer has told the count and the reset."""
        return self.remaining is not None and self.reset is not None

    def available(self) -> int | None:
        """Calls that may still be granted now (None when unknown)."""
        return None if self.remaining is None else self.remaining - self.in_flight

    def seconds_until_reset(self, now: dt.datetime) -> float | None:
        """Seconds from ``now`` (our clock) to the reset, or None when unknown (may be < 0)."""
        if self.reset is None:
            return None
        return (self.reset - now).total_seconds() - self.skew

    def reset_local(self) -> dt.datetime | None:
        """The reset on our clock."""
        return None if self.reset is None else self.reset - dt.timedelta(seconds=self.skew)

    def as_rate_limit(self) -> RateLimit:
        """The budget in the shape of the headers (reset on our clock)."""
        return RateLimit(
            limit_hour=self.limit,
            remaining_hour=None if self.remaining is None else max(0, self.remaining),
            remaining_day=self.remaining_day,
            reset=self.reset_local(),
        )


@attrs.frozen(kw_only=True)
class Lease:
    """One granted call, to be settled with its result."""

    priority: Priority
    granted_at: dt.datetime


@attrs.frozen(kw_only=True)
class CallResult:
    """What happened to a granted call.

    Attributes:
        reach: whether it may have reached the server.
        status: the HTTP status, when answered.
        rate_limit: the quota headers of the answer, when any.
        date: the answer's ``Date`` header.
        sent_at: when the call was sent (our clock).
        received_at: when the answer came (our clock).
    """

    reach: Reach
    status: int | None = None
    rate_limit: RateLimit | None = None
    date: dt.datetime | None = None
    sent_at: dt.datetime | None = None
    received_at: dt.datetime | None = None


@attrs.frozen
class Delay:
    """The answer of `next_call_delay()`.

    Attributes:
        seconds: 0 to call now; else the wait before asking again (None: until a call in
            flight settles).
        exhausted: True when the wait is for the quota's reset (the window is spent for
            this priority), False when it is for a probe or for spreading re-checks.
        daily: True when the daily quota is spent (its reset is not told: the wait is for
            the hourly reset, after which one call asks again).
    """

    seconds: float | None
    exhausted: bool = False
    daily: bool = False


class QuotaGovernor(Protocol):
    """Grants API calls within the key's quota; the in-process one is the default.

    Every call the client sends is granted by [`acquire()`][ssemble_async.QuotaGovernor.acquire] and
    reported by [`settle()`][ssemble_async.QuotaGovernor.settle], whatever happened to it (also when
    it was cancelled). A shared implementation (Redis) keeps the same budget for several processes.
    """

    async def acquire(
        self, priority: Priority = Priority.URGENT, *, deadline: float | None = None
    ) -> Lease:
        """Wait until a call of ``priority`` may go; raise ``RateLimitError`` when it may not.

        ``deadline`` (on the package's monotonic clock) bounds the wait: a grant that cannot
        come before it raises at once instead of waiting.
        """

    async def settle(self, lease: Lease, result: CallResult) -> None:
        """Fold a granted call's result into the budget."""

    def budget(self) -> QuotaBudget:
        """The budget as known now."""


def refill(budget: QuotaBudget, now: dt.datetime) -> QuotaBudget:
    """The budget after its reset passed: full again, the next reset one window later."""
    until = budget.seconds_until_reset(now)
    # the reset is known to about a second (Date's resolution): refill one margin after it
    if until is None or until > -RESET_MARGIN or budget.limit is None:
        return budget
    reset = budget.reset
    assert reset is not None
    windows = math.floor(-until / budget.window) + 1
    day = budget.remaining_day
    return attrs.evolve(
        budget,
        remaining=budget.limit,
        # a spent day may have ended meanwhile (its reset is not told): the next answer says
        remaining_day=None if day is not None and day <= 0 else day,
        reset=reset + dt.timedelta(seconds=windows * budget.window),
        estimated=True,
    )


def _keep(priority: Priority) -> int:
    return 0 if priority is Priority.URGENT else URGENT_RESERVE


def next_call_delay(
    budget: QuotaBudget, now: dt.datetime, priority: Priority = Priority.URGENT
) -> Delay:
    """Whether a call of ``priority`` may go now, and if not how long to wait.

    ``budget`` must have been passed through `refill()` for ``now``.
    """
    until = budget.seconds_until_reset(now)
    if budget.remaining_day is not None and budget.remaining_day <= 0:
        # the day's reset is not told: wait for the hourly one, then ask again
        if until is None or until <= 0:
            return Delay(None if budget.in_flight else 0.0)
        return Delay(until + RESET_MARGIN, exhausted=True, daily=True)
    available = budget.available()
    if available is None:
        if budget.headerless >= HEADERLESS_ANSWERS:
            return Delay(0.0)  # a server that never tells: not metered
        # nothing known: one probe at a time until an answer tells
        return Delay(None if budget.in_flight else 0.0)
    if available <= _keep(priority):
        if until is None or until <= 0:  # the reset is unknown or past: one call asks
            return Delay(None if budget.in_flight else 0.0)
        return Delay(until + RESET_MARGIN, exhausted=True)
    if priority is Priority.RECHECK and budget.last_recheck is not None and until is not None:
        spare = available - _keep(priority)
        spacing = max(0.0, until) / spare
        due = budget.last_recheck + dt.timedelta(seconds=spacing)
        if due > now:
            return Delay((due - now).total_seconds())
    return Delay(0.0)


def reserve(budget: QuotaBudget, lease: Lease) -> QuotaBudget:
    """The budget with ``lease``'s call in flight."""
    recheck = lease.granted_at if lease.priority is Priority.RECHECK else budget.last_recheck
    return attrs.evolve(budget, in_flight=budget.in_flight + 1, last_recheck=recheck)


def _skew(result: CallResult, previous: float) -> float:
    if result.date is None or result.sent_at is None or result.received_at is None:
        return previous
    midpoint = result.sent_at + (result.received_at - result.sent_at) / 2
    # Date is cut to the second: the server's time was up to 1 s later than it says
    return (result.date - midpoint).total_seconds() + 0.5


def _lower(count: int, budget: QuotaBudget) -> int:
    return count if budget.remaining is None else min(count, budget.remaining)


def settle(budget: QuotaBudget, result: CallResult) -> QuotaBudget:
    """The budget after a granted call ended with ``result``."""
    budget = attrs.evolve(
        budget, in_flight=max(0, budget.in_flight - 1), skew=_skew(result, budget.skew)
    )
    if result.reach is Reach.NO:
        return budget  # never reached the server: nothing spent
    headers = result.rate_limit
    if headers is None or headers.remaining_hour is None:
        counted = None if budget.remaining is None else budget.remaining - 1
        if result.status == 429 and headers is not None and headers.reset is not None:
            return attrs.evolve(budget, remaining=0, reset=headers.reset, estimated=False)
        headerless = budget.headerless + 1 if headers is None else 0
        return attrs.evolve(budget, remaining=counted, headerless=headerless)
    budget = attrs.evolve(budget, headerless=0)
    remaining = 0 if result.status == 429 else headers.remaining_hour
    budget = attrs.evolve(
        budget,
        limit=budget.limit if headers.limit_hour is None else headers.limit_hour,
        remaining_day=budget.remaining_day
        if headers.remaining_day is None
        else headers.remaining_day,
    )
    new_reset, old_reset = headers.reset, budget.reset
    if new_reset is None:
        # a count without a reset: the same window as far as anyone can tell
        return attrs.evolve(budget, remaining=_lower(remaining, budget))
    if old_reset is None or (new_reset - old_reset).total_seconds() > SAME_WINDOW:
        window = budget.window
        if old_reset is not None and not budget.estimated:
            gap = (new_reset - old_reset).total_seconds()
            window = gap if 60 <= gap <= 86400 else window
        return attrs.evolve(
            budget, remaining=remaining, reset=new_reset, estimated=False, window=window
        )
    if (old_reset - new_reset).total_seconds() > SAME_WINDOW:
        if budget.estimated or result.status == 429:
            # our refill guessed the reset, or the server refuses now: its window is the truth
            return attrs.evolve(budget, remaining=remaining, reset=new_reset, estimated=False)
        # an answer from an older window (it came late): the call still counts
        counted = None if budget.remaining is None else budget.remaining - 1
        return attrs.evolve(budget, remaining=counted)
    if budget.estimated:
        # our refill guessed this window: the server's count is the truth
        return attrs.evolve(budget, remaining=remaining, estimated=False)
    return attrs.evolve(budget, remaining=_lower(remaining, budget))


def round_interval(
    budget: QuotaBudget, now: dt.datetime, *, owed: int, rounds: int, policy: PollPolicy
) -> float:
    """Seconds from one round of the watcher to the next.

    The interval grows as [`PollPolicy`][ssemble_async.PollPolicy] says (10 s, x1.5, up to 60 s by
    default) and is stretched so that the calls left, less the final read each of the ``owed`` jobs
    still needs and ``policy.reserve``, last until the reset; it is never stretched past the reset
    (the budget refills then), and never below one round per 5 minutes (the shortest
    render; give or take three seconds: a second's doubt about the reset adds no round, and a
    round due within a margin of the reset moves to one margin after it) while the window
    has calls for it at all.
    """
    growth = min(policy.maximum, policy.initial * policy.factor ** min(rounds, 64))
    available = budget.available()
    until = budget.seconds_until_reset(now)
    if available is None or until is None or until <= 0:
        return growth
    spare = available - owed - policy.reserve - URGENT_RESERVE
    # (a second's doubt about the reset must not add a round)
    usable = available - URGENT_RESERVE
    # more jobs owed than calls left: the final reads cannot all come before the reset
    # anyway, so rounds may use what is left; else half of it, the rest for final reads
    share = usable if owed > available else usable // 2
    slowest = min(math.ceil((until - 2) / SLOWEST_ROUND), share)
    spare = max(spare, slowest)
    if spare < 1 or until / spare >= until - RESET_MARGIN:
        # the next round is for the new window: one margin after the reset, not at it
        return max(growth, until + RESET_MARGIN)
    return max(growth, until / spare)
