from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ssemble_async import DownloadReport
from ssemble_async.testing import FakeSsembleAPI


@pytest.fixture(autouse=True)
def _instant(instant: None) -> None:
    """Backoff and polling are instant in these tests."""


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
