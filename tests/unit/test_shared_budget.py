"""The budget as Redis keeps it: what is stored comes back the same; garbage is no budget."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import QuotaBudget
from ssemble_async._redis_governor import budget_from_state, state_of_budget

moments = st.datetimes(
    min_value=dt.datetime(2020, 1, 1),
    max_value=dt.datetime(2040, 1, 1),
    timezones=st.just(dt.timezone.utc),
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
counts = st.one_of(st.none(), st.integers(-5, 10_000))


@given(
    counts,
    counts,
    counts,
    st.one_of(st.none(), moments),
    st.booleans(),
    st.floats(60, 86_400),
    st.floats(-5_000, 5_000),
    st.one_of(st.none(), moments),
    st.integers(0, 10),
    st.integers(0, 50),
)
def test_a_stored_budget_comes_back_the_same(
    limit: int | None,
    remaining: int | None,
    day: int | None,
    reset: dt.datetime | None,
    estimated: bool,
    window: float,
    skew: float,
    last_recheck: dt.datetime | None,
    headerless: int,
    in_flight: int,
) -> None:
    budget = QuotaBudget(
        limit=limit,
        remaining=remaining,
        remaining_day=day,
        reset=reset,
        estimated=estimated,
        window=window,
        skew=skew,
        in_flight=in_flight,
        last_recheck=last_recheck,
        headerless=headerless,
    )
    back = budget_from_state(state_of_budget(budget), in_flight)
    assert back == budget


@given(st.one_of(st.text(max_size=40), st.sampled_from(["", "[]", "null", '{"limit": "x"}'])))
def test_an_unreadable_state_is_a_budget_nothing_is_known_of(raw: str) -> None:
    budget = budget_from_state(raw, 2)
    assert budget.in_flight == 2
    assert budget.remaining is None or raw.startswith("{")
    assert budget.window > 0
