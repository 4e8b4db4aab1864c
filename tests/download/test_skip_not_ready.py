"""``download_many(skip_not_ready=True)``: download what is ready, report the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssemble_async import Client, ClipState, RequestNotReadyError
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from .conftest import final_files

pytestmark = pytest.mark.anyio


async def test_skip_not_ready_downloads_the_completed_and_reports_the_others(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    done = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip())))
    queued = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    report = await client.download_many([done, queued], tmp_path, skip_not_ready=True)
    assert report.counts()[ClipState.DOWNLOADED] == 2
    assert {o.request_id for o in report.outcomes} == {done}
    error = report.request_errors[queued]
    assert isinstance(error, RequestNotReadyError)
    assert (error.request_id, error.status) == (queued, "queued")
    assert not report.ok
    assert len(final_files(tmp_path)) == 2
    assert not (tmp_path / queued).exists()


async def test_without_it_download_many_still_refuses_before_downloading(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    done = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))
    queued = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    with pytest.raises(RequestNotReadyError):
        await client.download_many([done, queued], tmp_path)
    assert fake_ssemble.clip_requests == []
