"""Time for the whole package: the one place that sleeps, and the switch that skips waits.

Backoff, quota waits and polling all sleep through :func:`sleep`. With
:func:`instant_waits` on, a sleep returns at once and moves a virtual clock forward
instead, so timeouts and deadlines still behave as if the time had passed.
"""

from __future__ import annotations

import datetime as dt
import time
from types import TracebackType

import anyio
import anyio.lowlevel

__all__ = ["instant_waits", "monotonic", "sleep", "utcnow"]


class _State:
    instant = False
    skipped = 0.0


def monotonic() -> float:
    """Seconds on a monotonic clock, including the waits that were skipped."""
    return time.monotonic() + _State.skipped


def utcnow() -> dt.datetime:
    """The current UTC time, including the waits that were skipped."""
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=_State.skipped)


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` (a checkpoint only, when waits are instant)."""
    if _State.instant:
        _State.skipped += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()
    else:
        await anyio.sleep(max(0.0, seconds))


class instant_waits:
    """Make every wait of ssemble_async (retry backoff, quota waits, polling) instant.

    For users' tests. Call it to switch, or use it as a context manager to switch back on
    exit::

        with ssemble_async.instant_waits():
            await client.wait_for_completion(request_id)

    The package's clock moves forward by each skipped wait, so ``timeout`` arguments still
    expire as if the time had passed; leaving the ``with`` block sets the clock back.

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
