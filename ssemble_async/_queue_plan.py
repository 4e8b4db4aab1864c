"""The work queue's decisions (`ssemble_async.distributed`): pure functions, no I/O, no sleeping.

A job downloads one request. What it did is judged here, and the judgement says what the
queue does with the job:

- ``done``: every clip is on the destination (downloaded, already present, or skipped as
  an error clip): the job completes.
- ``not_ready``: the request is not completed on the server, or clips are still being
  re-rendered: the job is scheduled again later (`recheck_delay()`), no attempt spent.
- ``quota``: the hourly quota is spent: the job is scheduled again after the reset
  (`quota_delay()`), no attempt spent; no worker slot is held meanwhile.
- ``failed``: the request failed, was cancelled or does not exist: the job fails at once,
  with the reason.
- ``retry``: anything else (a clip host that kept failing, the network, the disk): the
  job is tried again after `retry_delay()`, spending one of its attempts.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

import attrs

from ssemble_async._config import PollPolicy
from ssemble_async._download_models import ClipState, DownloadReport
from ssemble_async._errors import (
    HINT_WRONG_BASE_URL,
    InvalidArgumentError,
    NotFoundError,
    RateLimitError,
    RequestFailedError,
    RequestNotReadyError,
)
from ssemble_async._quota import RESET_MARGIN, URGENT_RESERVE, QuotaBudget

__all__ = [
    "FIRST_RETRY",
    "LAST_RETRY",
    "Judgement",
    "Verdict",
    "judge",
    "judge_error",
    "quota_delay",
    "recheck_delay",
    "retry_delay",
]

#: Seconds before the first retry of a job that failed for a passing cause; doubles each time.
FIRST_RETRY = 30.0
#: The longest wait before a retry, seconds.
LAST_RETRY = 900.0


class Verdict(enum.Enum):
    """What the queue does with a job after a run (see the module's docstring)."""

    DONE = "done"
    NOT_READY = "not_ready"
    QUOTA = "quota"
    FAILED = "failed"
    RETRY = "retry"


@attrs.frozen(kw_only=True)
class Judgement:
    """The verdict on one run of a job, and what it rests on.

    Attributes:
        verdict: what the queue does with the job.
        reason: one line saying why (for the log and the job's error).
        counts: clips by state (``ClipState`` values), for the job's result.
        transferred: bytes fetched from the clip host in this run.
        reset: with ``quota``, when the quota resets (our clock), when known.
    """

    verdict: Verdict
    reason: str
    counts: Mapping[str, int] = attrs.field(factory=dict)
    transferred: int = 0
    reset: dt.datetime | None = None


def _is_final(error: BaseException) -> bool:
    """Whether ``error`` will not go away by trying the same request again."""
    if isinstance(error, NotFoundError):
        return error.hint != HINT_WRONG_BASE_URL  # a wrong base URL is the worker's to fix
    return isinstance(error, RequestFailedError | InvalidArgumentError)


def judge_error(error: BaseException) -> Judgement:
    """The verdict when reading or downloading the request raised ``error``."""
    reason = str(error) or type(error).__name__
    if isinstance(error, RequestNotReadyError):
        return Judgement(verdict=Verdict.NOT_READY, reason=f"the request is {error.status}")
    if isinstance(error, RateLimitError):
        reset = None if error.rate_limit is None else error.rate_limit.reset
        return Judgement(verdict=Verdict.QUOTA, reason="the hourly quota is spent", reset=reset)
    if _is_final(error):
        return Judgement(verdict=Verdict.FAILED, reason=reason)
    return Judgement(verdict=Verdict.RETRY, reason=reason)


def judge(request_id: str, report: DownloadReport) -> Judgement:
    """The verdict on a download of ``request_id`` that ended with ``report``."""
    error = report.request_errors.get(request_id)
    if error is not None:
        return judge_error(error)
    counts = {state.value: count for state, count in report.counts().items() if count}
    transferred = report.transferred
    failed = report.by_state(ClipState.FAILED)
    for outcome in failed:
        if isinstance(outcome.error, RateLimitError):  # a fresh URL the quota refused
            quota = judge_error(outcome.error)
            return attrs.evolve(quota, counts=counts, transferred=transferred)
    if failed:
        first = failed[0]
        verdict, reason = (
            Verdict.RETRY,
            f"{len(failed)} clip(s) failed; {first.clip_id}: {first.message or 'no cause given'}",
        )
    elif waiting := report.by_state(ClipState.NOT_READY):
        verdict, reason = Verdict.NOT_READY, f"{len(waiting)} clip(s) still re-rendering"
    else:
        verdict, reason = Verdict.DONE, "every clip is there"
    return Judgement(verdict=verdict, reason=reason, counts=counts, transferred=transferred)


def recheck_delay(
    budget: QuotaBudget, now: dt.datetime, *, waiting: int, checks: int, policy: PollPolicy
) -> float:
    """Seconds until a job whose request is not ready checks it again (one API call).

    Each job's checks slow down as ``policy`` says (``initial``, times ``factor`` per check,
    up to ``maximum``). Every job of the queue (``waiting``: the jobs not finished, this one
    included) needs at least one call, so the checks of all of them together are spread
    over what the quota has left until its reset, less ``policy.reserve`` and the calls kept
    for running transfers: with ``n`` calls to spare in ``t`` seconds, each job checks at
    most once per ``t * waiting / n`` seconds. With nothing to spare the next check is
    after the reset; with the budget unknown, the policy's interval holds.

    ``budget`` must have been passed through ``refill()`` for ``now``.
    """
    growth = min(policy.maximum, policy.initial * policy.factor ** min(checks - 1, 64))
    available = budget.available()
    until = budget.seconds_until_reset(now)
    if available is None or until is None or until <= 0:
        return growth
    spare = available - policy.reserve - URGENT_RESERVE
    if spare < 1:
        return max(growth, until + RESET_MARGIN)
    share = until * max(1, waiting) / spare
    # past the reset the window refills: no job waits longer than one more window
    return max(growth, min(share, until + RESET_MARGIN + budget.window))


def quota_delay(reset: dt.datetime | None, now: dt.datetime, policy: PollPolicy) -> float:
    """Seconds until a job held back by a spent quota tries again: just after the reset
    (``reset``, our clock), or the policy's longest interval when the reset is unknown."""
    if reset is None:
        return policy.maximum
    return max(policy.initial, (reset - now).total_seconds() + RESET_MARGIN)


def retry_delay(attempts: int) -> float:
    """Seconds before a job that failed for a passing cause (its ``attempts``-th run) runs
    again: `FIRST_RETRY`, doubling each time, up to `LAST_RETRY`."""
    return float(min(LAST_RETRY, FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 32)))
