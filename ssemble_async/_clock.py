"""Time for the whole package: the one place that sleeps, and the switch that skips waits.

Backoff, quota waits and polling all sleep through `sleep()`. With
[`instant_waits()`][ssemble_async.instant_waits] on, waits are skipped by a discrete-event clock:
when every task of the event loop is asleep (nothing ran for a moment), the clock jumps to the
earliest wake-up and wakes the tasks due then. Sleeps that overlap in time overlap on this clock
too: eight tasks each sleeping 10 s move it by 10 s, not 80 s. Timeouts and deadlines
measured with `monotonic()` and `utcnow()` behave as if the time had passed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

import anyio

__all__ = [
    "cancel_at",
    "instant_waits",
    "monotonic",
    "real_work",
    "sleep",
    "sleep_until",
    "utcnow",
    "wait_event",
]

#: Real seconds without any task running (and no sleep starting or ending) before the
#: virtual clock jumps: long enough for a thread's file operation to come back.
IDLE_BEFORE_JUMP = 0.002


class _State:
    instant = False
    skipped = 0.0
    busy = 0  # real operations under way that the virtual clock must wait for


def monotonic() -> float:
    """Seconds on a monotonic clock, including the waits that were skipped."""
    return time.monotonic() + _State.skipped


def utcnow() -> dt.datetime:
    """The current UTC time, including the waits that were skipped."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=_State.skipped)


class _Timer:
    """A callback due at a time of the virtual clock."""

    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: _Timer) -> bool:
        return self.deadline < other.deadline


class _Timers:
    """The virtual timers of one event loop, earliest first, and the idle check that jumps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[_Timer] = []
        self.activity = 0  # bumped whenever a timer is set, fires or is cancelled
        self.check: asyncio.TimerHandle | None = None

    def add(self, timer: _Timer) -> None:
        heapq.heappush(self.heap, timer)
        self.touch()

    def touch(self) -> None:
        """Something happened: look again once the loop has been idle for a moment."""
        self.activity += 1
        if self.check is None:
            self.check = self.loop.call_later(IDLE_BEFORE_JUMP, self._check, self.activity)

    def _busy(self) -> bool:
        ready = getattr(self.loop, "_ready", None)  # CPython's queue of runnable callbacks
        return _State.busy > 0 or bool(ready)

    def fire_due(self) -> None:
        now = monotonic()
        fired = False
        while self.heap and (self.heap[0].cancelled or self.heap[0].deadline <= now):
            timer = heapq.heappop(self.heap)
            if not timer.cancelled:
                timer.cancelled = fired = True
                timer.callback()
        if fired:
            self.touch()

    def _check(self, seen: int) -> None:
        self.check = None
        while self.heap and self.heap[0].cancelled:
            heapq.heappop(self.heap)
        if not self.heap or not _State.instant:
            return
        if seen != self.activity or self._busy():
            self.check = self.loop.call_later(IDLE_BEFORE_JUMP, self._check, self.activity)
            return
        _State.skipped += max(0.0, self.heap[0].deadline - monotonic())
        self.fire_due()


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Timers] = weakref.WeakKeyDictionary()


def _virtual_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop when waits are instant (None: real time, or not asyncio)."""
    if not _State.instant:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _call_at(
    loop: asyncio.AbstractEventLoop, deadline: float, callback: Callable[[], None]
) -> Callable[[], None]:
    """Run ``callback`` when the virtual clock reaches ``deadline``; return a canceller."""
    timers = _timers.get(loop)
    if timers is None:
        timers = _timers[loop] = _Timers(loop)
    timer = _Timer(deadline, callback)
    timers.add(timer)
    # real time moves the virtual clock too: fire then at the latest
    handle = loop.call_later(max(0.0, deadline - monotonic()), timers.fire_due)

    def cancel() -> None:
        handle.cancel()
        if not timer.cancelled:
            timer.cancelled = True
            timers.touch()

    return cancel


@contextmanager
def real_work() -> Iterator[None]:
    """Mark a real operation (an API call): the virtual clock does not jump meanwhile.

    A loopback call that takes a few milliseconds must not let a deadline or a poll timer
    fire "hours" early; with waits real, this changes nothing.
    """
    _State.busy += 1
    try:
        yield
    finally:
        _State.busy -= 1


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` (on the virtual clock when waits are instant)."""
    seconds = max(0.0, seconds)
    loop = _virtual_loop() if seconds > 0 else None
    if loop is None:
        if _State.instant and seconds > 0:  # not asyncio: skipped waits add up
            _State.skipped += seconds
            seconds = 0.0
        await anyio.sleep(seconds)
        return
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    cancel = _call_at(loop, monotonic() + seconds, wake)
    try:
        await future
    finally:
        cancel()


async def sleep_until(deadline: float) -> None:
    """Wait until `monotonic()` reaches ``deadline``."""
    await sleep(deadline - monotonic())


@contextmanager
def cancel_at(deadline: float | None) -> Iterator[anyio.CancelScope]:
    """A cancel scope that ends the block when `monotonic()` reaches ``deadline``.

    None: no deadline. Unlike ``anyio.fail_after``, the deadline is on the package's clock,
    so it holds under [`instant_waits()`][ssemble_async.instant_waits]; ``scope.cancelled_caught``
    tells whether it ended the block.
    """
    if deadline is None:
        with anyio.CancelScope() as scope:
            yield scope
        return
    loop = _virtual_loop()
    if loop is None:
        with anyio.CancelScope(deadline=anyio.current_time() + deadline - monotonic()) as scope:
            yield scope
        return
    with anyio.CancelScope() as scope:
        cancel = _call_at(loop, deadline, scope.cancel)
        try:
            yield scope
        finally:
            cancel()


async def wait_event(event: anyio.Event, deadline: float | None) -> bool:
    """Wait for ``event`` until ``deadline`` (package clock); True when it was set."""
    with cancel_at(deadline):
        await event.wait()
    return event.is_set()


class instant_waits:
    """Make every wait of ssemble_async (retry backoff, quota waits, polling) instant.

    For users' tests. Call it to switch, or use it as a context manager to switch back on
    exit:

    ```python
    with ssemble_async.instant_waits():
        await client.wait_for_completion(request_id)
    ```

    Waits are skipped by a virtual clock that jumps to the earliest wake-up whenever every
    task of the event loop is asleep, so concurrent waits overlap as they would in real
    time, and ``timeout`` arguments still expire as if the time had passed. Leaving the
    ``with`` block sets the clock back.

    Args:
        enabled: True to skip waits, False to wait for real again.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._previous = (_State.instant, _State.skipped)
        _State.instant = enabled

    def __enter__(self) -> instant_waits:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _State.instant, _State.skipped = self._previous

    @staticmethod
    def active() -> bool:
        """True while waits are instant."""
        return _State.instant
