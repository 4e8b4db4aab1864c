from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ssemble_async import DownloadReport
from ssemble_async.testing import ClipFault, FakeSsembleAPI


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


def lying_range(
    clip_id: str, first: int, size: int, body: bytes, *, chunked: bool, etag: str | None = None
) -> ClipFault:
    """A 206 that says it holds the clip's bytes from ``first`` to its end (of ``size``) and
    sends ``body`` instead: chunked, or with ``body``'s own Content-Length."""
    headers = {"Content-Range": f"bytes {first}-{size - 1}/{size}"}
    if etag is not None:  # the same file as the bytes kept: a resume
        headers["ETag"] = etag
    return ClipFault(
        clip_id=clip_id,
        status=206,
        body=body,
        content_type="video/mp4",
        headers=headers,
        chunked=chunked,
    )
