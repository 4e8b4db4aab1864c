"""The in-process `QuotaGovernor`: one budget for every task of one client.

It only acts on the pure decisions of `ssemble_async._quota`: asks
`next_call_delay()` before each call, sleeps when told to, and folds each answer in
with `settle()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math

import anyio
import attrs

from ssemble_async import _clock
from ssemble_async._config import QuotaPolicy
from ssemble_async._errors import RateLimitError
from ssemble_async._quota import (
    RESET_MARGIN,
    CallResult,
    Delay,
    Lease,
    Priority,
    QuotaBudget,
    next_call_delay,
    refill,
    reserve,
    settle,
)

__all__ = ["PAST_DEADLINE", "LocalGovernor", "quota_error"]

logger = logging.getLogger("ssemble_async")

#: ``RateLimitError.code`` when the quota cannot be had before the caller's deadline.
PAST_DEADLINE = "quota_past_deadline"


def quota_error(
    budget: QuotaBudget, delay: Delay, now: dt.datetime, *, code: str
) -> RateLimitError:
    """The error for a call held back by the governor (nothing was sent): the quota is
    spent, or (``PAST_DEADLINE`` without ``delay.exhausted``) the call could not be granted
    before its deadline for another reason, such as a first call still out."""
    limit = budget.as_rate_limit()
    wait = delay.seconds or 0.0
    reset = budget.reset_local() or now
    which = "daily" if delay.daily else "hourly"
    message = (
        f"the hourly quota is spent ({budget.limit or '?'} calls); it resets at"
        f" {reset:%Y-%m-%d %H:%M:%S} UTC, in {wait:.0f} s. The call was not sent."
    )
    if delay.daily:
        message = (
            "the daily quota is spent; the call was not sent. One call asks again after the"
            f" hourly reset at {reset:%Y-%m-%d %H:%M:%S} UTC, in {wait:.0f} s."
        )
    if code == PAST_DEADLINE:
        message = (
            f"the {which} quota is spent until {reset:%H:%M:%S} UTC ({wait:.0f} s), after the"
            " deadline of this call; it was not sent."
        )
        if not delay.exhausted:  # held for another reason than a spent quota
            why = (
                "nothing is known of the quota yet and the first call is still out"
                if not budget.known
                else "the calls left are held for calls in flight or spaced re-checks"
            )
            message = f"{why}; this call was not sent before its deadline."
    return RateLimitError(message, code=code, rate_limit=limit, retry_after=wait, sent=False)


def describe_wait(budget: QuotaBudget, seconds: float) -> str:
    """``quota spent; waiting until 22:00 UTC (19 min)``."""
    reset = budget.reset_local()
    minutes = max(1, math.ceil(seconds / 60))
    # to the nearest minute: a reset on the hour seen through the server's clock offset
    # (22:00 less half a second) is 22:00, not 21:59
    when = "its reset" if reset is None else f"{reset + dt.timedelta(seconds=30):%H:%M} UTC"
    return f"quota spent; waiting until {when} ({minutes} min)"


class LocalGovernor:
    """Grants the calls of one client within the quota its answers report.

    Args:
        policy: what to do when the quota is spent (wait for the reset, or raise).
    """

    def __init__(self, policy: QuotaPolicy) -> None:
        self.policy = policy
        self._budget = QuotaBudget()
        self._changed = anyio.Event()
        self._announced: dt.datetime | None = None  # the reset whose wait was logged

    def budget(self) -> QuotaBudget:
        """The budget as known now."""
        return self._budget

    def seed(self, budget: QuotaBudget) -> None:
        """Start from what an earlier run knew, before any answer of this one.

        ``budget`` should be marked ``estimated``: the first answer replaces its count. Once
        an answer has told the figures, a seed changes nothing.
        """
        if not self._budget.known and not self._budget.in_flight:
            self._budget = budget
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def acquire(
        self, priority: Priority = Priority.URGENT, *, deadline: float | None = None
    ) -> Lease:
        """Wait until a call of ``priority`` may go; see `QuotaGovernor`."""
        while True:
            now = _clock.utcnow()
            self._budget = refill(self._budget, now)
            delay = next_call_delay(self._budget, now, priority)
            if delay.seconds == 0:
                lease = Lease(priority=priority, granted_at=now)
                self._budget = reserve(self._budget, lease)
                return lease
            wake = None if delay.seconds is None else _clock.monotonic() + delay.seconds
            if delay.exhausted:
                if self.policy.on_exhausted == "raise":
                    raise quota_error(self._budget, delay, now, code="quota_exhausted")
                if (
                    delay.seconds is not None
                    and delay.seconds > self.policy.max_wait + 2 * RESET_MARGIN
                ):
                    raise quota_error(self._budget, delay, now, code="quota_exhausted")
                if deadline is not None and wake is not None and wake > deadline:
                    raise quota_error(self._budget, delay, now, code=PAST_DEADLINE)
                if self._announced != self._budget.reset and delay.seconds is not None:
                    self._announced = self._budget.reset  # once per window, not per call
                    logger.warning("%s", describe_wait(self._budget, delay.seconds))
            until = deadline if wake is None else wake if deadline is None else min(wake, deadline)
            woke = await _clock.wait_event(self._changed, until)
            if not woke and deadline is not None and _clock.monotonic() >= deadline:
                raise quota_error(
                    self._budget,
                    attrs.evolve(delay, seconds=delay.seconds or 0.0),
                    _clock.utcnow(),
                    code=PAST_DEADLINE,
                )

    async def settle(self, lease: Lease, result: CallResult) -> None:
        """Fold a granted call's result into the budget and wake the waiting calls."""
        self._budget = settle(self._budget, result)
        self._notify()
