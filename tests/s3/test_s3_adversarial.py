"""S3 destinations: faults found by an adversarial review, each test failing before its fix.

Against the fake API and a real S3-compatible server (moto) on 127.0.0.1.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from ssemble_async import Client, ClipState, ConfigurationError, RetryPolicy
from ssemble_async._s3 import PART_SIZE
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI
from tests.cli._support import assert_one_line_error, ssemble
from tests.download.conftest import lying_range

from .conftest import Bucket, environment, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def one_clip(fake: FakeSsembleAPI, size: int) -> tuple[str, str]:
    rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
    return rid, fake.jobs[rid].job.clips[0].clip_id


def refusals(size: int, cut: int, etag: str) -> list[ClipFault]:
    """What a clip host may answer a resume of ``cut`` bytes: a 416 that names another size,
    a 206 for another range, and a 206 of a file that changed (a CDN that ignores If-Range)."""
    mp4 = b"\0\0\0 ftypisom" + b"\0" * 1000
    return [
        ClipFault(status=416, headers={"Content-Range": f"bytes */{size + 1}"}),
        ClipFault(
            status=206,
            body=mp4,
            content_type="video/mp4",
            headers={"Content-Range": f"bytes 0-{len(mp4) - 1}/{size}", "ETag": etag},
        ),
        ClipFault(
            status=206,
            body=mp4,
            content_type="video/mp4",
            headers={"Content-Range": f"bytes {cut}-{cut + len(mp4) - 1}/{size}", "ETag": '"new"'},
        ),
    ]


@pytest.mark.parametrize("refusal", [0, 1, 2], ids=["416", "206-other-range", "206-changed"])
async def test_a_clip_of_one_part_that_starts_over_drops_the_bytes_it_had(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, refusal: int
) -> None:
    """A clip of one part is held in memory until its PutObject. A cut body, then a resume
    the host refused in one of these ways, set the transfer back to byte 0 without
    emptying that buffer: the whole file came after the bytes of the first try, and the
    object stored was ``cut + size`` bytes (the verified size in its metadata said
    ``size``) - reported ``downloaded``."""
    size, cut = 3 * MiB + 5, MiB + 7
    rid, clip_id = await one_clip(fake_ssemble, size)
    etag = fake_ssemble.jobs[rid].clips[clip_id].etag
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=cut))
    fake_ssemble.inject_clip_fault(refusals(size, cut, etag)[refusal])
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    data = await bucket.in_thread("read", f"{rid}/{clip_id}.mp4")
    assert len(data) == size
    assert sha(data) == sha(fake_ssemble.clip_bytes(rid, clip_id))
    assert outcome.size == size


@pytest.mark.parametrize("endpoint", ["not-a-url", "http://[::1"], ids=["no-scheme", "bad-ipv6"])
async def test_an_endpoint_that_is_not_a_url_is_a_configuration_error(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket, endpoint: str
) -> None:
    """Before: a bare ``ValueError: Invalid endpoint`` from botocore, which the command line
    reported as ``unexpected ValueError ... please report it`` (exit 1)."""
    rid, _ = await one_clip(fake_ssemble, 70_000)
    async with Client(
        fake_ssemble.api_key, base_url=fake_ssemble.base_url, s3_endpoint_url=endpoint
    ) as client:
        with pytest.raises(ConfigurationError, match="S3 endpoint"):
            await client.download_many([rid], bucket.url)
    env = environment(fake_ssemble)
    for command in (
        ["download", rid, "-o", bucket.url, "--s3-endpoint-url", endpoint],
        ["s3-cleanup", bucket.url, "--s3-endpoint-url", endpoint],
    ):
        done = await ssemble(*command, env=env)
        assert done.code == 2, (command, done.err)
        assert_one_line_error(done, "S3 endpoint")
        assert "unexpected" not in done.err
    assert not fake_ssemble.calls


@pytest.mark.parametrize(
    "prefix",
    ["clips/", "été/ü ñ", "a+b/c%20d", ""],
    ids=["trailing-slash", "unicode-and-space", "plus-and-percent", "bucket-root"],
)
async def test_odd_prefixes_resume_and_complete(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, prefix: str
) -> None:
    """Keys with characters that URLs encode: an upload cut after its first part is found
    again (ListMultipartUploads, ListParts) and completed byte-identical."""
    size = PART_SIZE + 2 * MiB + 3
    rid, clip_id = await one_clip(fake_ssemble, size)
    fake_ssemble.inject_clip_fault(ClipFault(truncate_at=PART_SIZE + MiB))
    fake_ssemble.inject_clip_fault(ClipFault(status=503, times=50))
    dest = f"{bucket.url}/{prefix}" if prefix else bucket.url
    first = await client.download_many([rid], dest)
    assert first.outcomes[0].state is ClipState.FAILED
    fake_ssemble.clear_clip_faults()
    again = await client.download_many([rid], dest)
    (outcome,) = again.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    assert outcome.transferred == size - PART_SIZE
    key = "/".join(p for p in (prefix.strip("/"), rid, f"{clip_id}.mp4") if p)
    assert outcome.url == f"{bucket.url}/{key}"
    assert sha(await bucket.in_thread("read", key)) == sha(fake_ssemble.clip_bytes(rid, clip_id))
    assert await bucket.in_thread("uploads") == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("declared", [100_000, PART_SIZE + 1000], ids=["put", "multipart"])
async def test_a_host_that_sends_more_than_it_announced_is_cut_off(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, declared: int, chunked: bool
) -> None:
    """A 206 whose Content-Range says the clip has ``declared`` bytes, with a longer body:
    the transfer read it all (a clip of one part: all of it in memory; of several: parts
    uploaded past the clip's end) before finding the size wrong. It now stops at the first
    byte too many, and the retry stores the real clip."""
    rid, clip_id = await one_clip(fake_ssemble, declared)
    body = b"\0\0\0 ftypisom" + b"\0" * (3 * PART_SIZE)
    fake_ssemble.inject_clip_fault(lying_range(clip_id, 0, declared, body, chunked=chunked))
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    data = await bucket.in_thread("read", f"{rid}/{clip_id}.mp4")
    assert sha(data) == sha(fake_ssemble.clip_bytes(rid, clip_id))
    # the overrun cost at most one read beyond the clip (aiohttp reads up to 64 KiB at once)
    assert outcome.transferred is not None
    assert outcome.transferred <= 2 * declared + 2 * MiB


async def test_an_overlong_answer_leaves_no_upload_to_resume(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket
) -> None:
    """A chunked 206 that says the clip's size and sends more: the parts uploaded before
    the first byte too many are of that answer. They stayed in the upload (and the manifest
    vouched for it) through the wait before the next try: a run killed then left them for
    the next run to resume after. The upload is now aborted before the answer is given up:
    during that wait there is no upload of the clip at all."""
    size = PART_SIZE + 2 * MiB
    rid, clip_id = await one_clip(fake_ssemble, size)
    body = b"\0\0\0 ftypisom" + bytes(range(256)) * (4096 * 3 * 4)  # 12 MiB
    fake_ssemble.inject_clip_fault(lying_range(clip_id, 0, size, body, chunked=True))
    backing_off = anyio.Event()

    class Backoff(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "announced" in record.getMessage():  # the retry notice, just before the wait
                backing_off.set()

    handler = Backoff()
    logging.getLogger("ssemble_async").addHandler(handler)
    seen: list[object] = []
    try:
        async with (
            Client(
                fake_ssemble.api_key,
                base_url=fake_ssemble.base_url,
                # a wait long enough to list the uploads in, however loaded the machine
                retry=RetryPolicy(attempts=4, initial_wait=3, max_wait=3, jitter=0),
            ) as client,
            anyio.create_task_group() as group,
        ):

            async def look_during_the_wait() -> None:
                await backing_off.wait()
                seen.append(await bucket.in_thread("uploads"))

            group.start_soon(look_during_the_wait)
            report = await client.download_many([rid], bucket.url)
    finally:
        logging.getLogger("ssemble_async").removeHandler(handler)
    assert seen == [[]]
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.DOWNLOADED, outcome.message
    data = await bucket.in_thread("read", f"{rid}/{clip_id}.mp4")
    assert sha(data) == sha(fake_ssemble.clip_bytes(rid, clip_id))
