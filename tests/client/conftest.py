from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ssemble_async import Client, RetryPolicy, instant_waits
from ssemble_async.testing import FakeSsembleAPI


@pytest.fixture(autouse=True)
def _instant() -> Iterator[None]:
    with instant_waits():
        yield


@pytest.fixture
async def client(fake_ssemble: FakeSsembleAPI) -> AsyncIterator[Client]:
    async with Client(
        fake_ssemble.api_key,
        base_url=fake_ssemble.base_url,
        retry=RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1, jitter=0),
    ) as client:
        yield client
