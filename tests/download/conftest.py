from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ssemble_async import Client, DownloadReport, RetryPolicy, instant_waits
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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_files_match(fake: FakeSsembleAPI, report: DownloadReport) -> None:
    """Every downloaded or present clip is byte-identical to what the clip host serves."""
    for outcome in report.outcomes:
        if outcome.state.value in ("downloaded", "already_present"):
            assert outcome.path is not None
            served = fake.clip_bytes(outcome.request_id, outcome.clip_id)
            assert sha(outcome.path.read_bytes()) == sha(served)
            assert outcome.size == len(served)


def final_files(dest: Path) -> list[Path]:
    return sorted(dest.rglob("*.mp4"))
