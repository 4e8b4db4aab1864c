"""What a call held back by the governor is told when nothing is known of the quota."""

from __future__ import annotations

import anyio
import pytest

from ssemble_async import CallResult, QuotaPolicy, RateLimitError, Reach, _clock
from ssemble_async._governor import LocalGovernor

pytestmark = pytest.mark.anyio


async def test_a_call_held_behind_the_first_probe_is_not_told_the_quota_is_spent() -> None:
    governor = LocalGovernor(QuotaPolicy())
    with anyio.fail_after(5):
        probe = await governor.acquire()  # nothing known: one call at a time until it answers
        with pytest.raises(RateLimitError) as info:
            await governor.acquire(deadline=_clock.monotonic() + 0.2)
        await governor.settle(probe, CallResult(reach=Reach.NO))
    assert info.value.code == "quota_past_deadline"
    # it was: "the hourly quota is spent until 05:17:18 UTC (0 s), after the deadline..."
    assert "spent" not in str(info.value), str(info.value)
    assert "first call is still out" in str(info.value)
