"""The virtual clock of instant_waits(): concurrent sleeps overlap, deadlines hold."""

from __future__ import annotations

import random
import time

import anyio
import pytest

from ssemble_async import _clock, instant_waits

pytestmark = pytest.mark.anyio


async def test_eight_tasks_sleeping_ten_seconds_take_ten_seconds(instant: None) -> None:
    started, real = _clock.monotonic(), time.monotonic()
    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(_clock.sleep, 10)
    assert 10 <= _clock.monotonic() - started < 10.5
    assert time.monotonic() - real < 2


async def test_overlapping_sleepers_wake_in_order_at_their_times(instant: None) -> None:
    rng = random.Random(7)
    durations = [rng.uniform(0.5, 500) for _ in range(40)]
    woke: list[tuple[float, float]] = []
    started = _clock.monotonic()

    async def sleeper(seconds: float) -> None:
        await _clock.sleep(seconds)
        woke.append((seconds, _clock.monotonic() - started))

    async with anyio.create_task_group() as group:
        for seconds in durations:
            group.start_soon(sleeper, seconds)
    assert [s for s, _ in woke] == sorted(durations)
    for seconds, at in woke:
        assert seconds <= at < seconds + 0.5


async def test_a_chain_of_sleeps_adds_up(instant: None) -> None:
    started = _clock.monotonic()

    async def chain() -> None:
        for _ in range(5):
            await _clock.sleep(60)

    async with anyio.create_task_group() as group:
        group.start_soon(chain)
        group.start_soon(_clock.sleep, 100)
    assert 300 <= _clock.monotonic() - started < 300.5


async def test_cancel_at_ends_the_block_at_its_deadline(instant: None) -> None:
    started = _clock.monotonic()
    with _clock.cancel_at(started + 3) as scope:
        await _clock.sleep(1000)
    assert scope.cancelled_caught
    assert 3 <= _clock.monotonic() - started < 3.5


async def test_cancel_at_lets_an_exception_through_unwrapped(instant: None) -> None:
    with pytest.raises(KeyError), _clock.cancel_at(_clock.monotonic() + 3):
        raise KeyError("mine")


async def test_wait_event_times_out_or_returns_when_set(instant: None) -> None:
    event = anyio.Event()
    started = _clock.monotonic()
    assert not await _clock.wait_event(event, started + 5)
    assert 5 <= _clock.monotonic() - started < 5.5

    async def set_later() -> None:
        await _clock.sleep(2)
        event.set()

    async with anyio.create_task_group() as group:
        group.start_soon(set_later)
        assert await _clock.wait_event(event, _clock.monotonic() + 100)


async def test_a_cancelled_sleeper_does_not_hold_the_clock(instant: None) -> None:
    started = _clock.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(_clock.sleep, 10_000)
        await _clock.sleep(1)
        group.cancel_scope.cancel()
    await _clock.sleep(2)
    assert 3 <= _clock.monotonic() - started < 3.5


async def test_leaving_instant_waits_sets_the_clock_back() -> None:
    before = _clock.monotonic()
    with instant_waits():
        await _clock.sleep(3600)
        assert _clock.monotonic() - before >= 3600
    assert _clock.monotonic() - before < 60


async def test_real_waits_without_instant_waits() -> None:
    with instant_waits(False):
        started = time.monotonic()
        with _clock.cancel_at(_clock.monotonic() + 0.05) as scope:
            await _clock.sleep(10)
        assert scope.cancelled_caught
        assert 0.04 <= time.monotonic() - started < 1
