"""The quota budget's rules (pure functions of ssemble_async._quota), one test per rule."""

from __future__ import annotations

import datetime as dt

import attrs
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import PollPolicy, RateLimit, RetryPolicy
from ssemble_async._config import retry_delay
from ssemble_async._quota import (
    RESET_MARGIN,
    URGENT_RESERVE,
    CallResult,
    Lease,
    Priority,
    QuotaBudget,
    Reach,
    next_call_delay,
    refill,
    reserve,
    round_interval,
    settle,
)

NOW = dt.datetime(2026, 12, 2, 21, 40, tzinfo=dt.timezone.utc)
RESET = dt.datetime(2026, 12, 2, 22, 0, tzinfo=dt.timezone.utc)


def headers(remaining: int, reset: dt.datetime = RESET, limit: int = 100) -> RateLimit:
    return RateLimit(limit_hour=limit, remaining_hour=remaining, reset=reset)


def answered(
    remaining: int, reset: dt.datetime = RESET, status: int = 200, date: dt.datetime | None = None
) -> CallResult:
    return CallResult(
        reach=Reach.YES,
        status=status,
        rate_limit=headers(remaining, reset),
        date=date,
        sent_at=NOW,
        received_at=NOW,
    )


def grant(budget: QuotaBudget, priority: Priority = Priority.URGENT) -> QuotaBudget:
    return reserve(budget, Lease(priority=priority, granted_at=NOW))


KNOWN = QuotaBudget(limit=100, remaining=40, reset=RESET)


def test_unknown_quota_sends_one_probe_before_fanning_out() -> None:
    budget = QuotaBudget()
    assert next_call_delay(budget, NOW).seconds == 0
    budget = grant(budget)
    assert next_call_delay(budget, NOW).seconds is None  # wait for the probe's answer
    budget = settle(budget, answered(39))
    assert next_call_delay(budget, NOW).seconds == 0
    assert budget.remaining == 39 and budget.in_flight == 0


def test_within_one_window_the_lower_count_holds() -> None:
    budget = settle(grant(KNOWN), answered(50))  # a stale or lagging header says 50
    assert budget.remaining == 40
    budget = settle(grant(budget), answered(12))  # another user of the key spent some
    assert budget.remaining == 12


def test_a_newer_reset_starts_a_new_window_with_the_servers_count() -> None:
    later = RESET + dt.timedelta(hours=1)
    budget = settle(grant(attrs.evolve(KNOWN, remaining=0)), answered(99, later))
    assert budget.remaining == 99 and budget.reset == later


def test_a_late_answer_from_an_older_window_still_counts_its_call() -> None:
    budget = settle(grant(KNOWN), answered(3, RESET - dt.timedelta(hours=1)))
    assert budget.remaining == 39 and budget.reset == RESET


def test_an_earlier_reset_replaces_a_guessed_one() -> None:
    guessed = refill(attrs.evolve(KNOWN, remaining=0), RESET + dt.timedelta(seconds=1))
    assert guessed.estimated and guessed.reset == RESET + dt.timedelta(hours=1)
    real = RESET + dt.timedelta(minutes=1)  # the window is a minute, not an hour
    budget = settle(grant(guessed), answered(4, real))
    assert budget.remaining == 4 and budget.reset == real and not budget.estimated


def test_a_429_with_an_earlier_reset_is_believed() -> None:
    sooner = RESET - dt.timedelta(minutes=10)
    budget = settle(grant(KNOWN), answered(0, sooner, status=429))
    assert budget.remaining == 0 and budget.reset == sooner


def test_a_server_that_never_sends_quota_headers_is_not_metered_for_ever() -> None:
    budget = QuotaBudget()
    for _ in range(3):
        assert next_call_delay(grant(budget), NOW).seconds is None  # one probe at a time
        budget = settle(grant(budget), CallResult(reach=Reach.YES, status=200))
    assert next_call_delay(grant(grant(budget)), NOW).seconds == 0


def test_a_refused_connection_is_not_a_spent_call() -> None:
    budget = settle(grant(KNOWN), CallResult(reach=Reach.NO))
    assert budget.remaining == 40 and budget.in_flight == 0


def test_a_call_that_may_have_arrived_without_headers_counts_one() -> None:
    budget = settle(grant(KNOWN), CallResult(reach=Reach.MAYBE))
    assert budget.remaining == 39


@given(st.integers(0, 60), st.sampled_from(list(Priority)))
def test_reservations_never_overshoot(remaining: int, priority: Priority) -> None:
    budget = attrs.evolve(KNOWN, remaining=remaining)
    granted = 0
    while next_call_delay(budget, NOW, priority).seconds == 0 and granted <= 100:
        budget, granted = grant(budget, priority), granted + 1
        budget = attrs.evolve(budget, last_recheck=None)  # re-checks' spacing: time passes
    floor = 0 if priority is Priority.URGENT else URGENT_RESERVE
    assert granted == max(0, remaining - floor)


def test_priorities_urgent_spends_the_last_calls_rechecks_and_polls_leave_some() -> None:
    low = attrs.evolve(KNOWN, remaining=URGENT_RESERVE)
    assert next_call_delay(low, NOW, Priority.URGENT).seconds == 0
    for priority in (Priority.RECHECK, Priority.POLL):
        delay = next_call_delay(low, NOW, priority)
        assert delay.exhausted and delay.seconds == 20 * 60 + RESET_MARGIN


def test_after_the_reset_the_budget_refills_once_to_the_limit() -> None:
    spent = attrs.evolve(KNOWN, remaining=0)
    after = RESET + dt.timedelta(seconds=5)
    budget = refill(spent, after)
    assert budget.remaining == 100 and budget.estimated
    assert budget.reset == RESET + dt.timedelta(hours=1)
    assert refill(budget, after) == budget  # once, not at every look
    assert next_call_delay(budget, after).seconds == 0
    # the first answer of the new window is the truth, higher or lower
    assert settle(grant(budget), answered(97, budget.reset)).remaining == 97


def test_refill_skips_whole_windows_that_passed() -> None:
    spent = attrs.evolve(KNOWN, remaining=0)
    budget = refill(spent, RESET + dt.timedelta(hours=2, minutes=5))
    assert budget.reset == RESET + dt.timedelta(hours=3)


def test_the_window_length_is_learnt_from_two_resets() -> None:
    budget = settle(grant(KNOWN), answered(99, RESET + dt.timedelta(minutes=10)))
    assert budget.window == 600


@given(st.floats(-3600, 3600))
def test_the_date_header_corrects_a_skewed_clock(skew: float) -> None:
    server_now = NOW + dt.timedelta(seconds=skew)
    date = server_now.replace(microsecond=0)  # Date is cut to the second
    budget = settle(
        grant(QuotaBudget()), answered(0, server_now + dt.timedelta(minutes=20), date=date)
    )
    until = budget.seconds_until_reset(NOW)
    assert until is not None and abs(until - 1200) <= 1.0
    delay = next_call_delay(budget, NOW)
    assert delay.exhausted and delay.seconds is not None
    assert 1200 <= delay.seconds <= 1200 + RESET_MARGIN + 1


def test_a_429_freezes_the_window_until_its_reset() -> None:
    budget = settle(grant(KNOWN), answered(7, status=429))
    assert budget.remaining == 0
    delay = next_call_delay(budget, NOW)
    assert delay.exhausted and delay.seconds == 20 * 60 + RESET_MARGIN


def test_a_429_whose_reset_has_passed_uses_the_backoff_never_zero() -> None:
    past = RateLimit(limit_hour=100, remaining_hour=0, reset=NOW - dt.timedelta(seconds=3))
    policy = RetryPolicy(initial_wait=0.5, jitter=0)
    delay = retry_delay(policy, 1, status=429, retry_after=None, rate_limit=past, now=NOW)
    assert delay == 0.5


def test_a_spent_day_waits_for_the_hourly_reset_then_asks_once() -> None:
    budget = attrs.evolve(KNOWN, remaining_day=0)
    delay = next_call_delay(budget, NOW)
    assert delay.daily and delay.exhausted and delay.seconds == 20 * 60 + RESET_MARGIN
    after = refill(budget, RESET + dt.timedelta(seconds=2))
    assert after.remaining_day is None  # the day may have ended: the next answer tells
    assert next_call_delay(after, RESET + dt.timedelta(seconds=2)).seconds == 0


def test_rechecks_are_spread_until_the_reset() -> None:
    budget = grant(attrs.evolve(KNOWN, remaining=22), Priority.RECHECK)
    budget = settle(budget, answered(21))
    delay = next_call_delay(budget, NOW, Priority.RECHECK)
    # 19 calls to spread over 1200 s after leaving 2 for urgent calls
    assert delay.seconds is not None and abs(delay.seconds - 1200 / 19) < 0.01
    assert next_call_delay(budget, NOW, Priority.URGENT).seconds == 0


POLICY = PollPolicy(initial=10, maximum=60, factor=1.5, reserve=5)


def test_round_interval_grows_by_the_policy_when_the_quota_is_plenty() -> None:
    plenty = attrs.evolve(KNOWN, limit=100_000, remaining=90_000)
    intervals = [round_interval(plenty, NOW, owed=3, rounds=n, policy=POLICY) for n in range(6)]
    assert intervals == [10, 15, 22.5, 33.75, 50.625, 60]


def test_round_interval_leaves_a_final_read_per_waiting_job() -> None:
    # 40 left, 13 jobs owed their final read, 5 kept, 2 for urgent calls: 20 rounds
    assert round_interval(KNOWN, NOW, owed=13, rounds=9, policy=POLICY) == 1200 / 20


@given(st.integers(0, 200), st.integers(0, 300), st.integers(1, 7200), st.integers(0, 50))
def test_round_interval_never_stretches_past_the_reset(
    remaining: int, owed: int, seconds: int, rounds: int
) -> None:
    budget = QuotaBudget(limit=100, remaining=remaining, reset=NOW + dt.timedelta(seconds=seconds))
    interval = round_interval(budget, NOW, owed=owed, rounds=rounds, policy=POLICY)
    assert interval <= max(POLICY.maximum, seconds + RESET_MARGIN)
    assert interval >= POLICY.initial
    # with calls for it, never slower than one round per 5 minutes, give or take the margins:
    # a second's doubt about the reset adds no round (302 s left is one round, not two), and
    # a round due within a margin of the reset moves to one margin after it (302 s -> 303 s)
    if remaining - URGENT_RESERVE >= 2 * -(-seconds // 300):
        assert interval <= max(300.0 + 3 * RESET_MARGIN, POLICY.maximum)


@given(
    rounds=st.integers(0, 1000),
    remaining=st.integers(0, 2000),
    until=st.floats(1, 3600),
    owed=st.integers(0, 500),
)
def test_polling_alone_never_outruns_the_quota(
    rounds: int, remaining: int, until: float, owed: int
) -> None:
    budget = QuotaBudget(limit=100, remaining=remaining, reset=NOW + dt.timedelta(seconds=until))
    interval = round_interval(budget, NOW, owed=owed, rounds=rounds, policy=PollPolicy())
    assert until / interval <= max(1, remaining - URGENT_RESERVE) + 1e-6
