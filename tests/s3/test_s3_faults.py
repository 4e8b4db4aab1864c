"""Clip host failures while a clip streams into a bucket: the fetch loop's decisions, as on
disk (resume with Range, start over, fresh URL, give up), with the upload kept in step."""

from __future__ import annotations

import anyio
import pytest

from ssemble_async import Client, ClipState
from ssemble_async._s3 import PART_SIZE
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from .conftest import Bucket, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
SIZE = PART_SIZE + 4 * MiB + 9  # two parts


def gets(fake: FakeSsembleAPI, since: int = 0) -> list[dict[str, str | None]]:
    return [
        {"range": r.headers.get("Range"), "if_range": r.headers.get("If-Range")}
        for r in fake.clip_requests[since:]
        if r.method == "GET"
    ]


async def one_clip(fake: FakeSsembleAPI, size: int) -> tuple[str, str]:
    rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
    return rid, fake.jobs[rid].job.clips[0].clip_id


async def assert_object(fake: FakeSsembleAPI, bucket: Bucket, rid: str, clip_id: str) -> None:
    data = await bucket.in_thread("read", f"{rid}/{clip_id}.mp4")
    assert sha(data) == sha(fake.clip_bytes(rid, clip_id))
    assert await bucket.in_thread("uploads") == []


@pytest.mark.parametrize("cut", [PART_SIZE + MiB, 3 * MiB], ids=["after-a-part", "in-part-1"])
async def test_a_cut_body_resumes_from_the_bytes_kept(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, cut: int
) -> None:
    rid, clip_id = await one_clip(fake_ssemble, SIZE)
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=cut))
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert outcome.transferred == SIZE  # no byte fetched twice
    etag = fake_ssemble.jobs[rid].clips[clip_id].etag
    assert gets(fake_ssemble) == [
        {"range": None, "if_range": None},
        {"range": f"bytes={cut}-", "if_range": etag},
    ]
    await assert_object(fake_ssemble, bucket, rid, clip_id)


async def test_a_host_that_ignores_range_makes_the_upload_start_over(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid, clip_id = await one_clip(fake_ssemble, SIZE)
    cut = PART_SIZE + MiB
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=cut))
    fake_ssemble.inject_clip_fault(ClipFault(ignore_range=True))
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert outcome.transferred == cut + SIZE
    await assert_object(fake_ssemble, bucket, rid, clip_id)


@pytest.mark.parametrize(
    "fault",
    [
        ClipFault(status=503),
        ClipFault(status=403),  # refused: the request is read again, the URL tried again
        ClipFault(status=200, body=b"<html>busy</html>", content_type="text/html"),
    ],
    ids=["503", "403", "error-page"],
)
@pytest.mark.parametrize("size", [70_000, SIZE], ids=["put", "multipart"])
async def test_passing_failures_are_retried(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, fault: ClipFault, size: int
) -> None:
    rid, clip_id = await one_clip(fake_ssemble, size)
    fake_ssemble.inject_clip_fault(fault)
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert len(gets(fake_ssemble)) == 2
    await assert_object(fake_ssemble, bucket, rid, clip_id)


async def test_something_that_is_not_an_mp4_is_never_stored(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid, _ = await one_clip(fake_ssemble, 70_000)
    fake_ssemble.inject_clip_fault(
        ClipFault(status=200, body=b"GIF89a" + b"\0" * 100, content_type="video/mp4")
    )
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.FAILED
    assert outcome.message is not None
    assert "not an MP4" in outcome.message
    assert await bucket.in_thread("keys") == [f"{rid}/manifest.json"]
    assert await bucket.in_thread("uploads") == []


async def test_a_clip_that_keeps_failing_keeps_its_parts_for_the_next_run(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid, clip_id = await one_clip(fake_ssemble, SIZE)
    cut = PART_SIZE + MiB
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=cut))
    fake_ssemble.inject_clip_fault(ClipFault(status=503, times=50))
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.FAILED
    assert outcome.message is not None
    assert f"{PART_SIZE} bytes kept in an unfinished upload: run again to resume" in (
        outcome.message
    )
    (upload,) = await bucket.in_thread("uploads")
    assert len(await bucket.in_thread("parts", upload["Key"], upload["UploadId"])) == 1

    fake_ssemble.clear_clip_faults()
    seen = len(fake_ssemble.clip_requests)
    again = await client.download_many([rid], bucket.url)
    (outcome,) = again.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert outcome.transferred == SIZE - PART_SIZE
    assert [g["range"] for g in gets(fake_ssemble, seen)] == [f"bytes={PART_SIZE}-"]
    await assert_object(fake_ssemble, bucket, rid, clip_id)


async def test_an_upload_aborted_under_a_running_transfer_fails_the_clip_plainly(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    """``ssemble s3-cleanup --older-than 0`` run while a download is writing: the store
    refuses the next part; the clip fails, saying so, and the next run starts it over."""
    rid, clip_id = await one_clip(fake_ssemble, 2 * PART_SIZE + MiB)
    key = f"{rid}/{clip_id}.mp4"
    fake_ssemble.clip_bytes_per_second = 8 * MiB
    async with client.stream_downloads([rid], bucket.url) as outcomes:
        with anyio.fail_after(60):
            while True:
                uploads = await bucket.in_thread("uploads")
                if uploads and await bucket.in_thread("parts", key, uploads[0]["UploadId"]):
                    break
                await anyio.sleep(0.05)
        upload_id = uploads[0]["UploadId"]
        await anyio.to_thread.run_sync(
            lambda: bucket.s3.abort_multipart_upload(
                Bucket=bucket.name, Key=key, UploadId=upload_id
            )
        )
        fake_ssemble.clip_bytes_per_second = None
        with anyio.fail_after(60):
            (outcome,) = [o async for o in outcomes]
    assert outcome.state is ClipState.FAILED
    assert outcome.message is not None
    # AWS answers 404 NoSuchUpload; moto answers 500: the clip fails on either
    assert f"{bucket.url}/{key}: the store answered" in outcome.message
    assert key not in await bucket.in_thread("keys")

    again = await client.download_many([rid], bucket.url)
    (outcome,) = again.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert outcome.transferred == 2 * PART_SIZE + MiB
    await assert_object(fake_ssemble, bucket, rid, clip_id)
