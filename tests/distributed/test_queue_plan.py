"""The work queue's decisions (``_queue_plan``), without Redis or a server."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import (
    ClipOutcome,
    ClipState,
    DownloadReport,
    NotFoundError,
    PollPolicy,
    QuotaBudget,
    RateLimit,
    RateLimitError,
    RequestFailedError,
    RequestNotReadyError,
    ServerError,
)
from ssemble_async._errors import HINT_WRONG_BASE_URL
from ssemble_async._queue_plan import (
    FIRST_RETRY,
    LAST_RETRY,
    Verdict,
    judge,
    judge_error,
    quota_delay,
    recheck_delay,
    retry_delay,
)
from ssemble_async._quota import RESET_MARGIN, URGENT_RESERVE

RID = "665a1b2c3d4e5f6a7b8c9d0e"
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
POLICY = PollPolicy()


def budget(remaining: int | None, until: float | None, *, limit: int = 100) -> QuotaBudget:
    reset = None if until is None else NOW + dt.timedelta(seconds=until)
    return QuotaBudget(limit=limit, remaining=remaining, reset=reset)


def outcome(state: ClipState, clip_id: str = "c1", **extra: object) -> ClipOutcome:
    return ClipOutcome(request_id=RID, clip_id=clip_id, state=state, **extra)  # type: ignore[arg-type]


# -- judging a run ---------------------------------------------------------------------------


def test_every_clip_there_is_done_with_the_counts() -> None:
    report = DownloadReport(
        outcomes=(
            outcome(ClipState.DOWNLOADED, "a", transferred=10),
            outcome(ClipState.ALREADY_PRESENT, "b"),
            outcome(ClipState.SKIPPED_ERROR, "c"),
        )
    )
    judged = judge(RID, report)
    assert judged.verdict is Verdict.DONE
    assert judged.counts == {"downloaded": 1, "already_present": 1, "skipped_error": 1}
    assert judged.transferred == 10


def test_a_request_not_done_or_clips_re_rendering_is_not_ready() -> None:
    waiting = DownloadReport(request_errors={RID: RequestNotReadyError(RID, "processing")})
    assert judge(RID, waiting).verdict is Verdict.NOT_READY
    assert "processing" in judge(RID, waiting).reason
    rendering = DownloadReport(
        outcomes=(outcome(ClipState.DOWNLOADED, "a"), outcome(ClipState.NOT_READY, "b"))
    )
    judged = judge(RID, rendering)
    assert (judged.verdict, judged.counts) == (
        Verdict.NOT_READY,
        {"downloaded": 1, "not_ready": 1},
    )


def test_failed_cancelled_or_missing_requests_fail_for_good() -> None:
    for error in (
        RequestFailedError(RID, "failed", "source gone"),
        RequestFailedError(RID, "cancelled", None),
        NotFoundError("no such request", status=404, code="not_found"),
    ):
        judged = judge(RID, DownloadReport(request_errors={RID: error}))
        assert judged.verdict is Verdict.FAILED, error
        assert judged.reason == str(error)


def test_a_wrong_base_url_a_server_error_or_a_failed_clip_is_tried_again() -> None:
    wrong_url = NotFoundError("HTML page", status=404, code="not_found", hint=HINT_WRONG_BASE_URL)
    assert judge_error(wrong_url).verdict is Verdict.RETRY
    assert judge_error(ServerError("down", status=503, code="unavailable")).verdict is Verdict.RETRY
    assert judge_error(OSError(28, "No space left on device")).verdict is Verdict.RETRY
    clip = DownloadReport(outcomes=(outcome(ClipState.FAILED, "a", message="host kept failing"),))
    judged = judge(RID, clip)
    assert (judged.verdict, judged.reason) == (
        Verdict.RETRY,
        "1 clip(s) failed; a: host kept failing",
    )


def test_a_spent_quota_waits_for_its_reset_whether_the_read_or_a_fresh_url_met_it() -> None:
    reset = NOW + dt.timedelta(minutes=20)
    spent = RateLimitError(
        "quota spent", rate_limit=RateLimit(remaining_hour=0, reset=reset), sent=False
    )
    for report in (
        DownloadReport(request_errors={RID: spent}),
        DownloadReport(outcomes=(outcome(ClipState.FAILED, "a", error=spent),)),
    ):
        judged = judge(RID, report)
        assert (judged.verdict, judged.reset) == (Verdict.QUOTA, reset)


# -- spacing the checks ----------------------------------------------------------------------


def test_with_the_budget_unknown_the_policy_spaces_the_checks() -> None:
    delays = [
        recheck_delay(budget(None, None), NOW, waiting=1, checks=n, policy=POLICY)
        for n in (1, 2, 9)
    ]
    assert delays == [10.0, 15.0, 60.0]


def test_checks_of_all_waiting_jobs_share_what_the_quota_has_left() -> None:
    # 100 calls, 5 + 2 kept back: 93 for 500 jobs in 3000 s -> one check per job per ~16129 s,
    # but never past one more window after the reset
    delay = recheck_delay(budget(100, 3000), NOW, waiting=500, checks=1, policy=POLICY)
    assert delay == 3000 + RESET_MARGIN + 3600
    delay = recheck_delay(budget(100, 3000), NOW, waiting=31, checks=1, policy=POLICY)
    assert delay == 3000 * 31 / (100 - POLICY.reserve - URGENT_RESERVE)


def test_with_nothing_to_spare_the_next_check_is_after_the_reset() -> None:
    spare = POLICY.reserve + URGENT_RESERVE
    assert recheck_delay(budget(spare, 600), NOW, waiting=1, checks=1, policy=POLICY) == 601.0


@given(
    remaining=st.integers(0, 1000),
    until=st.floats(1.0, 3600.0),
    waiting=st.integers(1, 10_000),
    checks=st.integers(1, 100),
)
def test_the_checks_together_never_outrun_the_quota(
    remaining: int, until: float, waiting: int, checks: int
) -> None:
    delay = recheck_delay(
        budget(remaining, until), NOW, waiting=waiting, checks=checks, policy=POLICY
    )
    assert delay >= POLICY.initial
    spare = remaining - POLICY.reserve - URGENT_RESERVE
    if delay < until:  # every waiting job checking once per delay, until the reset
        assert waiting * until / delay <= spare + 1e-6


def test_a_spent_quota_is_waited_out_until_just_after_its_reset() -> None:
    reset = NOW + dt.timedelta(seconds=300)
    assert quota_delay(reset, NOW, POLICY) == 300 + RESET_MARGIN
    assert quota_delay(NOW - dt.timedelta(seconds=5), NOW, POLICY) == POLICY.initial
    assert quota_delay(None, NOW, POLICY) == POLICY.maximum


def test_retries_back_off_from_30_seconds_to_15_minutes() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 6, 100)] == [
        FIRST_RETRY,
        2 * FIRST_RETRY,
        4 * FIRST_RETRY,
        LAST_RETRY,
        LAST_RETRY,
    ]
