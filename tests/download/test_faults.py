"""Faults on the clip host: each ends byte-identical or clearly failed, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssemble_async import Client, ClipState, ShortsRequest
from ssemble_async.testing import ApiFault, ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from .conftest import assert_files_match, final_files, lying_range

pytestmark = pytest.mark.anyio

SIZE = 1_000_000


def one_clip_job(fake: FakeSsembleAPI, size: int = SIZE) -> tuple[str, str]:
    clip = FakeClip(size=size)
    rid = fake.add_job(FakeJob(steps=(), clips=(clip,)))
    return rid, clip.clip_id


def gets(fake: FakeSsembleAPI) -> list[dict[str, str]]:
    return [dict(r.headers) for r in fake.clip_requests if r.method == "GET"]


def reset_after(clip_id: str, cut: int, times: int = 1) -> ClipFault:
    """Send ``cut`` bytes, then drop the connection.

    The last byte follows a short pause so that the client has read the rest: bytes still
    in aiohttp's buffer when the connection drops are lost to it (it raises before handing
    them over), and the test wants to see exactly where the resume starts.
    """
    return ClipFault(
        clip_id=clip_id, truncate_at=cut, stall_at=cut - 1, stall_seconds=0.05, times=times
    )


@pytest.mark.parametrize("cut", [2, 8, 9, 65_536, 500_000, SIZE - 1])
async def test_connection_reset_resumes_with_range(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path, cut: int
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(reset_after(clip_id, cut))
    report = await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    first, second = gets(fake_ssemble)
    assert "Range" not in first
    etag = fake_ssemble.jobs[rid].clips[clip_id].etag
    assert second["Range"] in (f"bytes={cut - 1}-", f"bytes={cut}-")
    assert second["If-Range"] == etag
    assert SIZE <= report.outcomes[0].transferred <= SIZE + 1


@pytest.mark.parametrize("cut", [1, 7, 100_000])
async def test_connection_reset_with_everything_in_flight(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path, cut: int
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, truncate_at=cut, times=2))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert len(gets(fake_ssemble)) == 3


async def test_repeated_resets_each_resume(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(reset_after(clip_id, 100_000, times=9))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    requests = gets(fake_ssemble)
    assert len(requests) == 10
    assert all("Range" in headers for headers in requests[1:])
    assert report.outcomes[0].transferred < SIZE + 9 * 2


async def test_range_ignored_restarts_from_zero(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(reset_after(clip_id, 300_000))
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, ignore_range=True))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert "Range" in gets(fake_ssemble)[1]
    assert report.outcomes[0].transferred >= 299_999 + SIZE


async def leave_a_part(
    fake: FakeSsembleAPI,
    client: Client,
    request: ShortsRequest | str,
    clip_id: str,
    cut: int,
    dest: Path,
) -> tuple[Path, int]:
    """A run cut off after ``cut`` bytes, then refused until it gave up: it leaves a
    ``.part`` its manifest vouches for. Returns it and its size."""
    fake.inject_clip_fault(ClipFault(clip_id=clip_id, truncate_at=cut))
    fake.inject_clip_fault(ClipFault(clip_id=clip_id, status=503, times=50))
    first = await client.download_many([request], dest, chunk_size=64 * 1024)
    assert first.outcomes[0].state is ClipState.FAILED
    fake.clear_clip_faults()
    (part,) = dest.rglob("*.part")
    kept = part.stat().st_size
    assert 0 < kept <= cut
    return part, kept


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [100_000, 3_000_000], ids=["one-write", "many-batches"])
async def test_a_host_that_sends_more_than_it_announced_is_cut_off(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path, size: int, chunked: bool
) -> None:
    """A 206 whose Content-Range gives the clip's size, with a body far longer: the
    transfer wrote it all into the ``.part``, batch by batch, before finding the size
    wrong (a host that never stops would fill the disk). Now an answer whose
    Content-Length is not its range's length is refused before a byte is written, and a
    chunked one is stopped at the first byte too many; the retry saves the real clip."""
    rid, clip_id = one_clip_job(fake_ssemble, size)
    body = b"\0\0\0 ftypisom" + bytes(range(256)) * (64 * 1024 * 3)  # 48 MiB
    fake_ssemble.inject_clip_fault(lying_range(clip_id, 0, size, body, chunked=chunked))
    report = await client.download_shorts(rid, tmp_path, chunk_size=256 * 1024)
    assert report.ok, report.outcomes[0].message
    assert_files_match(fake_ssemble, report)
    transferred = report.outcomes[0].transferred
    assert transferred is not None
    # written: at most the announced size of the long answer, then the clip
    assert transferred <= 2 * size, transferred
    assert len(gets(fake_ssemble)) == 2
    assert "Range" not in gets(fake_ssemble)[-1]  # started over


async def test_an_overlong_answer_leaves_no_part_to_resume(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    """A resume answered by a chunked 206 that says the rest of the clip and sends more
    (the whole file from its first byte): its first batches were written after the bytes
    kept before. When the run then ended without another try (here: the URL refused, and
    the request could not be read again for a fresh one), the ``.part`` held them under
    the entry that vouched for it, and the next run resumed after them and renamed a clip
    of the right size and wrong bytes into place. The ``.part`` is now cut to nothing
    before the answer is given up."""
    size = 3_000_000
    rid, clip_id = one_clip_job(fake_ssemble, size)
    content = fake_ssemble.clip_bytes(rid, clip_id)
    request = await client.get_shorts(rid)
    part, kept = await leave_a_part(fake_ssemble, client, request, clip_id, 1_000_000, tmp_path)
    etag = fake_ssemble.jobs[rid].clips[clip_id].etag
    # the whole file, where its rest was announced
    fake_ssemble.inject_clip_fault(
        lying_range(clip_id, kept, size, content, chunked=True, etag=etag)
    )
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, status=403))
    fake_ssemble.inject_api_fault(ApiFault(status=503, times=100))  # no fresh URL to be had
    second = await client.download_many([request], tmp_path, chunk_size=256 * 1024)
    assert second.outcomes[0].state is ClipState.FAILED
    assert not part.exists() or part.stat().st_size == 0
    fake_ssemble.clear_clip_faults()
    fake_ssemble.clear_api_faults()
    third = await client.download_many([rid], tmp_path, chunk_size=256 * 1024)
    assert third.ok, third.outcomes[0].message
    assert_files_match(fake_ssemble, third)


async def test_an_answer_longer_than_its_range_is_refused_before_a_byte_is_written(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    """A 206 whose Content-Length is more than the length of the range it says (the whole
    file, sent as its rest) is not written at all: the transfer starts over."""
    size = 1_000_000
    rid, clip_id = one_clip_job(fake_ssemble, size)
    _, kept = await leave_a_part(fake_ssemble, client, rid, clip_id, 300_000, tmp_path)
    etag = fake_ssemble.jobs[rid].clips[clip_id].etag
    content = fake_ssemble.clip_bytes(rid, clip_id)
    fake_ssemble.inject_clip_fault(
        lying_range(clip_id, kept, size, content, chunked=False, etag=etag)
    )
    report = await client.download_shorts(rid, tmp_path, chunk_size=64 * 1024)
    assert report.ok, report.outcomes[0].message
    assert_files_match(fake_ssemble, report)
    assert "Range" in gets(fake_ssemble)[-2]  # the resume, refused...
    assert "Range" not in gets(fake_ssemble)[-1]  # ...then started over
    assert report.outcomes[0].transferred == size  # nothing of the refused answer


async def test_stall_beyond_the_idle_timeout_is_retried(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, stall_at=200_000, stall_seconds=5))
    report = await client.download_shorts(rid, tmp_path, idle_timeout=0.3)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert gets(fake_ssemble)[1]["Range"].startswith("bytes=")


async def test_slow_but_steady_transfer_is_not_cut(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, stall_at=200_000, stall_seconds=0.2))
    report = await client.download_shorts(rid, tmp_path, idle_timeout=1)
    assert report.ok
    assert len(gets(fake_ssemble)) == 1


async def test_5xx_burst_is_retried(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, status=503, times=3))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)


async def test_persistent_5xx_fails_the_clip_and_only_it(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    bad, good = FakeClip(), FakeClip()
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(bad, good)))
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=bad.clip_id, status=500, times=100))
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert failed.clip_id == bad.clip_id
    assert "500" in (failed.message or "")
    assert "gave up after 4 tries" in (failed.message or "")
    assert isinstance(failed.error, Exception)
    assert [p.name for p in final_files(tmp_path)] == [f"{good.clip_id}.mp4"]


async def test_expired_urls_are_refreshed_once_per_request(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    clips = [FakeClip() for _ in range(4)]
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=clips))
    stale = await client.get_shorts(rid)
    for clip in clips:
        fake_ssemble.expire_clip_url(rid, clip.clip_id)
    reads_before = len(fake_ssemble.api_requests)
    report = await client.download_shorts(stale, tmp_path, concurrency=4)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert len(fake_ssemble.api_requests) == reads_before + 1  # one re-read for four clips
    statuses = [r for r in fake_ssemble.clip_requests if r.method == "GET"]
    assert len(statuses) == 8


async def test_url_refused_even_when_fresh_fails(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, status=403, times=100))
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert "expired" in (failed.message or "")
    assert "still gives this URL" in (failed.message or "")
    assert final_files(tmp_path) == []
    # the read, one re-read that gave the same URL, and no second re-read
    assert fake_ssemble.calls["GET /shorts/:id"] == 2
    assert len([r for r in fake_ssemble.clip_requests if r.method == "GET"]) == 2


async def test_a_refusal_that_passes_needs_no_second_read(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=clip_id, status=403, times=1))
    report = await client.download_shorts(rid, tmp_path)
    assert report.ok
    assert_files_match(fake_ssemble, report)
    assert fake_ssemble.calls["GET /shorts/:id"] == 2  # the read and one re-read


async def test_a_host_refusing_everything_costs_one_read_per_request(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=[FakeClip() for _ in range(6)]))
    fake_ssemble.inject_clip_fault(ClipFault(status=403, times=1000))
    report = await client.download_shorts(rid, tmp_path, concurrency=3)
    assert len(report.by_state(ClipState.FAILED)) == 6
    assert fake_ssemble.calls["GET /shorts/:id"] <= 3  # not one re-read (or more) per clip


async def test_html_page_with_200_is_never_saved(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    page = b"<html><body>Please log in</body></html>"
    fake_ssemble.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=200, body=page, content_type="text/html", times=100)
    )
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert "error page" in (failed.message or "")
    assert final_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.part"))


async def test_body_that_is_not_an_mp4_fails_at_once(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(
        ClipFault(
            clip_id=clip_id, status=200, body=b"PK\x03\x04zipzipzip", content_type="video/mp4"
        )
    )
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert "not an MP4" in (failed.message or "")
    assert len(gets(fake_ssemble)) == 1
    assert final_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.part"))


async def test_redirect_loop_fails_clearly(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    url = fake_ssemble.clip_url(rid, clip_id)
    fake_ssemble.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=302, headers={"Location": url}, times=100)
    )
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert "redirected more than 5 times" in (failed.message or "")


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.mp4"])
async def test_redirect_to_a_non_http_url_fails_at_once(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path, location: str
) -> None:
    rid, clip_id = one_clip_job(fake_ssemble)
    fake_ssemble.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=302, headers={"Location": location}, times=100)
    )
    report = await client.download_shorts(rid, tmp_path)
    (failed,) = report.by_state(ClipState.FAILED)
    assert "cannot be fetched" in (failed.message or "")
    assert len(gets(fake_ssemble)) == 1
