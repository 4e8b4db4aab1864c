"""The download pipeline through the public Client, against the fake API and clip host."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from ssemble_async import (
    Client,
    ClipState,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    RequestFailedError,
    RequestNotReadyError,
    RequestState,
    Short,
    ShortsRequest,
)
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from .conftest import assert_files_match, final_files

pytestmark = pytest.mark.anyio


def done_job(*clips: FakeClip, **kwargs: object) -> FakeJob:
    return FakeJob(steps=(), clips=clips, **kwargs)  # type: ignore[arg-type]


def clip_gets(fake: FakeSsembleAPI) -> list[str]:
    return [r.path for r in fake.clip_requests if r.method == "GET"]


def shorts_reads(fake: FakeSsembleAPI, rid: str) -> int:
    return sum(1 for r in fake.api_requests if r.path.endswith(f"/shorts/{rid}"))


async def test_downloads_every_clip_verified_with_metadata(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(size=3 * 1024 * 1024 + 7, viral_score=50, title="big"),
            FakeClip(size=40, viral_score=90, title="tiny", sentence_indexes=(0, 1)),
            FakeClip(size=300_000, viral_score=70, title="mid"),
        )
    )
    report = await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    assert report.ok
    assert report.counts()[ClipState.DOWNLOADED] == 3
    assert_files_match(fake_ssemble, report)
    assert report.transferred == 3 * 1024 * 1024 + 7 + 40 + 300_000
    request_dir = tmp_path / rid
    assert sorted(p.name for p in request_dir.iterdir() if p.suffix == ".mp4") == sorted(
        f"{o.clip_id}.mp4" for o in report.outcomes
    )
    assert not list(tmp_path.rglob("*.part"))
    tiny = next(o for o in report.outcomes if o.title == "tiny")
    assert tiny.path is not None
    sidecar = json.loads(tiny.path.with_name(tiny.path.name + ".json").read_text())
    assert sidecar["title"] == "tiny"
    assert sidecar["viral_score"] == 90
    assert sidecar["sentences"] and all(isinstance(s, str) for s in sidecar["sentences"])
    assert {"description", "start_timestamp", "end_timestamp", "duration"} <= sidecar.keys()
    manifest = json.loads((request_dir / "manifest.json").read_text())
    assert manifest["request_id"] == rid
    assert {e["state"] for e in manifest["clips"].values()} == {"downloaded"}
    assert all(e["complete"] and e["size"] > 0 for e in manifest["clips"].values())


async def test_clips_start_in_descending_viral_score(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    scores = [12, 95, 40, 77, 63]
    clips = [FakeClip(viral_score=s, title=str(s), size=1000) for s in scores]
    rid = fake_ssemble.add_job(done_job(*clips))
    await client.download_shorts(rid, tmp_path, concurrency=1)
    by_id = {c.clip_id: c.viral_score for c in clips}
    order = [by_id[path.rsplit("/", 1)[1].removesuffix(".mp4")] for path in clip_gets(fake_ssemble)]
    assert order == sorted(scores, reverse=True)


async def test_no_credential_reaches_the_clip_host(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip(), FakeClip()))
    first = fake_ssemble.jobs[rid].job.clips[0].clip_id
    other_host = fake_ssemble.clip_url(rid, first).replace("127.0.0.1", "localhost")
    fake_ssemble.inject_clip_fault(
        ClipFault(clip_id=first, status=302, headers={"Location": other_host}, times=1)
    )
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    hosts = {r.headers["Host"].split(":")[0] for r in fake_ssemble.clip_requests}
    assert hosts == {"127.0.0.1", "localhost"}  # the redirect to another host was followed
    for request in fake_ssemble.clip_requests:
        assert "X-API-Key" not in request.headers
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers
        assert all(fake_ssemble.api_key not in value for value in request.headers.values())


async def test_error_clips_are_never_fetched(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(error=True, error_message="Render failed"),
            FakeClip(error=True, omit_error_message=True),
            FakeClip(),
        )
    )
    report = await client.download_shorts(rid, tmp_path)
    skipped = report.by_state(ClipState.SKIPPED_ERROR)
    assert sorted(o.message or "" for o in skipped) == ["", "Render failed"]
    assert report.ok  # skipped errors are not failures
    assert len(clip_gets(fake_ssemble)) == 1
    assert len(final_files(tmp_path)) == 1


async def test_recompiling_clips_wait_with_one_read_per_round(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(recompiling_reads=3, title="a"),
            FakeClip(recompiling_reads=3, title="b"),
            FakeClip(recompiling_reads=2, title="c"),
            FakeClip(title="ready"),
        )
    )
    report = await client.download_shorts(rid, tmp_path, recompile_wait=600)
    assert report.counts()[ClipState.DOWNLOADED] == 4
    assert_files_match(fake_ssemble, report)
    # one read to plan, then one per round however many clips wait: the third round's
    # read (the fourth in all) is the first where no clip is recompiling any more
    assert shorts_reads(fake_ssemble, rid) == 4
    urls = {o.clip_id: o for o in report.outcomes}
    assert len(urls) == 4


async def test_recompiling_beyond_the_budget_is_not_ready(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip(recompiling_reads=1000), FakeClip()))
    report = await client.download_shorts(rid, tmp_path, recompile_wait=300)
    (late,) = report.by_state(ClipState.NOT_READY)
    assert "300" in (late.message or "")
    assert not report.ok
    assert report.counts()[ClipState.DOWNLOADED] == 1
    # rounds at 30, 90, 210 and the budget's end at 300 s: few calls for a long wait
    assert 3 <= shorts_reads(fake_ssemble, rid) <= 6
    assert late.path is not None and not late.path.exists()


async def test_not_completed_without_wait_refuses_before_downloading(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    done = fake_ssemble.add_job(done_job(FakeClip()))
    running = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    with pytest.raises(RequestNotReadyError) as info:
        await client.download_many([done, running], tmp_path)
    assert info.value.request_id == running
    assert info.value.status == "queued"
    assert fake_ssemble.clip_requests == []
    assert final_files(tmp_path) == []
    with pytest.raises(RequestNotReadyError):
        await client.download_shorts(running, tmp_path)


async def test_wait_true_waits_for_completion_then_downloads(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rids = [fake_ssemble.add_job(FakeJob(reads_per_step=2)) for _ in range(3)]
    report = await client.download_many(rids, tmp_path, wait=True)
    assert report.ok
    assert report.counts()[ClipState.DOWNLOADED] == 9
    assert_files_match(fake_ssemble, report)


async def test_failed_and_missing_requests_in_download_many_are_reported(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    good = fake_ssemble.add_job(done_job(FakeClip(), FakeClip()))
    failed = fake_ssemble.add_job(FakeJob(steps=(), outcome="failed", failure_reason="Too dark"))
    missing = "0123456789abcdef01234567"
    report = await client.download_many([good, failed, missing, good], tmp_path)
    assert report.counts()[ClipState.DOWNLOADED] == 2
    assert set(report.request_errors) == {failed, missing}
    assert isinstance(report.request_errors[failed], RequestFailedError)
    assert "Too dark" in str(report.request_errors[failed])
    assert isinstance(report.request_errors[missing], NotFoundError)
    assert not report.ok
    with pytest.raises(RequestFailedError):
        await client.download_shorts(failed, tmp_path)


async def test_malformed_ids_fail_before_any_call(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequestIdError):
        await client.download_many(["0123456789abcdef01234567", "../etc"], tmp_path)
    assert fake_ssemble.api_requests == []


async def test_hostile_ids_stay_inside_dest_and_apart(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip(), FakeClip(), FakeClip(), FakeClip()))
    clip_ids = [c.clip_id for c in fake_ssemble.jobs[rid].job.clips]
    real = await client.get_shorts(rid)
    hostile_ids = ["../../escape", "a/b", "a_b", "CON"]
    shorts = tuple(
        Short(id=hostile, video_url=fake_ssemble.clip_url(rid, clip_id), viral_score=1)
        for hostile, clip_id in zip(hostile_ids, clip_ids, strict=True)
    )
    request = ShortsRequest(
        request_id="../../../tmp/evil",
        status=RequestState.COMPLETED,
        status_raw="completed",
        shorts=shorts,
        sentences=real.sentences,
    )
    dest = tmp_path / "dest"
    report = await client.download_shorts(request, dest)
    assert report.ok
    paths = [o.path for o in report.outcomes]
    assert len({p for p in paths if p is not None}) == 4
    for path in paths:
        assert path is not None
        assert path.resolve().is_relative_to(dest.resolve())
        assert path.exists()
    assert list(tmp_path.iterdir()) == [dest]


async def test_unwritable_destination_fails_the_clips_clearly(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip(), FakeClip()))
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    report = await client.download_shorts(rid, blocker)
    assert report.counts()[ClipState.FAILED] == 2
    assert all("cannot write" in (o.message or "") for o in report.outcomes)
    assert fake_ssemble.clip_requests == []


async def test_streaming_form_yields_outcomes_and_statistics(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rids = [
        fake_ssemble.add_job(done_job(FakeClip(size=200_000), FakeClip(error=True)))
        for _ in range(3)
    ]
    seen = []
    async with client.stream_downloads(rids, tmp_path, concurrency=2) as outcomes:
        async for outcome in outcomes:
            seen.append(outcome.state)
            stats = outcomes.statistics()
            assert len(stats.in_flight) <= 2
        final = outcomes.statistics()
    assert sorted(seen) == sorted([ClipState.DOWNLOADED] * 3 + [ClipState.SKIPPED_ERROR] * 3)
    assert final.clips_known == 6
    assert final.clips_done == 6
    assert final.states[ClipState.DOWNLOADED] == 3
    assert final.bytes_done == final.bytes_expected == 600_000
    assert final.in_flight == () and final.queued == 0 and final.waiting == 0
    assert final.requests_pending == 0
    assert outcomes.report().ok


async def test_leaving_the_stream_early_stops_everything(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    clips = [FakeClip(size=2_000_000) for _ in range(6)]
    rid = fake_ssemble.add_job(done_job(*clips))
    for clip in clips:
        fake_ssemble.inject_clip_fault(
            ClipFault(clip_id=clip.clip_id, stall_at=500_000, stall_seconds=30)
        )
    with anyio.fail_after(10):
        async with client.stream_downloads([rid], tmp_path, concurrency=3) as outcomes:
            with anyio.move_on_after(0.5):
                async for _ in outcomes:
                    pass
            assert len(outcomes.statistics().in_flight) == 3
    assert final_files(tmp_path) == []  # nothing partial under a final name
    assert len(list(tmp_path.rglob("*.part"))) == 3


async def test_bad_arguments(client: Client, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        await client.download_many([], tmp_path, concurrency=0)
    with pytest.raises(InvalidArgumentError, match="chunk_size"):
        await client.download_many([], tmp_path, chunk_size=1)
    with pytest.raises(TypeError):
        await client.download_many([42], tmp_path)  # type: ignore[list-item]
    report = await client.download_many([], tmp_path)
    assert report.ok and report.outcomes == ()
