"""Downloads into a bucket (``dest="s3://bucket/prefix"``) through the public Client, against
the fake API and a real S3-compatible server (moto)."""

from __future__ import annotations

import base64
import hashlib
import json

import anyio
import pytest

from ssemble_async import (
    Client,
    ClipState,
    ConfigurationError,
    DownloadError,
    InvalidArgumentError,
)
from ssemble_async._s3 import PART_SIZE
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from .conftest import Bucket, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def done_job(*clips: FakeClip, **kwargs: object) -> FakeJob:
    return FakeJob(steps=(), clips=clips, **kwargs)  # type: ignore[arg-type]


def clip_gets(fake: FakeSsembleAPI) -> list[str]:
    return [r.path for r in fake.clip_requests if r.method == "GET"]


def composite_sha256(data: bytes, part_size: int) -> str:
    """The checksum S3 gives an object uploaded in parts with SHA-256 checksums (without
    the ``-<parts>`` suffix that some stores add): the SHA-256 of the parts' SHA-256s."""
    digests = b"".join(
        hashlib.sha256(data[i : i + part_size]).digest() for i in range(0, len(data), part_size)
    )
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


async def test_clips_land_in_the_bucket_byte_identical_with_sidecars_and_manifest(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(size=20 * MiB + 123, viral_score=90, title="big"),
            FakeClip(size=8 * MiB, viral_score=80, title="one part exactly"),
            FakeClip(size=300_000, viral_score=70, title="small"),
        )
    )
    report = await client.download_many([rid], f"{bucket.url}/clips/")
    assert report.ok, report
    assert report.counts()[ClipState.DOWNLOADED] == 3
    keys = await bucket.in_thread("keys")
    for outcome in report.outcomes:
        key = f"clips/{rid}/{outcome.clip_id}.mp4"
        assert outcome.url == f"{bucket.url}/{key}"
        assert outcome.path is None
        served = fake_ssemble.clip_bytes(rid, outcome.clip_id)
        assert outcome.size == len(served) == outcome.transferred
        assert sha(await bucket.in_thread("read", key)) == sha(served)
        sidecar = json.loads(await bucket.in_thread("read", key + ".json"))
        assert sidecar["clip_id"] == outcome.clip_id
        assert sidecar["request_id"] == rid
        assert sidecar["title"] == outcome.title
    manifest = json.loads(await bucket.in_thread("read", f"clips/{rid}/manifest.json"))
    assert manifest["request_id"] == rid
    assert manifest["status"] == "completed"
    assert sorted(manifest["clip_ids"]) == sorted(o.clip_id for o in report.outcomes)
    for outcome in report.outcomes:
        entry = manifest["clips"][outcome.clip_id]
        assert entry["complete"] is True
        assert entry["size"] == outcome.size
        assert entry["partial"] is None
    assert len(keys) == 3 * 2 + 1
    assert await bucket.in_thread("uploads") == []
    # the big clip went up in 8 MiB parts, each with its SHA-256
    big = next(o for o in report.outcomes if o.title == "big")
    head = await anyio.to_thread.run_sync(
        lambda: bucket.s3.head_object(
            Bucket=bucket.name, Key=f"clips/{rid}/{big.clip_id}.mp4", ChecksumMode="ENABLED"
        )
    )
    assert head["ChecksumSHA256"].partition("-")[0] == composite_sha256(
        fake_ssemble.clip_bytes(rid, big.clip_id), PART_SIZE
    )
    assert head["Metadata"]["ssemble-size"] == str(big.size)


async def test_a_second_run_downloads_nothing_and_reads_no_request(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(size=9 * MiB, viral_score=90),
            FakeClip(size=70_000, viral_score=60),
            FakeClip(error=True, error_message="render failed", viral_score=10),
        )
    )
    first = await client.download_many([rid], bucket.url)
    assert first.ok
    assert first.counts()[ClipState.DOWNLOADED] == 2
    assert first.counts()[ClipState.SKIPPED_ERROR] == 1
    gets, reads = len(clip_gets(fake_ssemble)), len(fake_ssemble.api_requests)

    again = await client.download_many([rid], bucket.url)
    assert again.ok
    assert again.counts()[ClipState.ALREADY_PRESENT] == 2
    assert again.counts()[ClipState.SKIPPED_ERROR] == 1
    assert again.transferred == 0
    assert len(clip_gets(fake_ssemble)) == gets  # no clip fetched
    assert len(fake_ssemble.api_requests) == reads  # the manifest said all: no API call
    by_id = {o.clip_id: o for o in first.outcomes}
    for outcome in again.by_state(ClipState.ALREADY_PRESENT):
        assert outcome.url == by_id[outcome.clip_id].url
        assert outcome.size == by_id[outcome.clip_id].size


async def test_objects_are_found_present_without_the_manifest(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    """An object this package completed says its verified size in its metadata: a run
    whose manifest was lost (or never written) fetches nothing again."""
    rid = fake_ssemble.add_job(
        done_job(FakeClip(size=9 * MiB, viral_score=90), FakeClip(size=70_000))
    )
    assert (await client.download_many([rid], f"{bucket.url}/p")).ok
    await anyio.to_thread.run_sync(
        lambda: bucket.s3.delete_object(Bucket=bucket.name, Key=f"p/{rid}/manifest.json")
    )
    gets = len(clip_gets(fake_ssemble))
    again = await client.download_many([rid], f"{bucket.url}/p")
    assert again.counts()[ClipState.ALREADY_PRESENT] == 2
    assert len(clip_gets(fake_ssemble)) == gets
    assert f"p/{rid}/manifest.json" in await bucket.in_thread("keys")


@pytest.mark.parametrize("size", [70_000, 9 * MiB], ids=["put", "multipart"])
async def test_a_complete_object_is_never_overwritten(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, size: int
) -> None:
    """The object is written with If-None-Match: * (moto honours it): a store that holds
    an object under the key already answers 412, and the object is left as it is."""
    rid = fake_ssemble.add_job(done_job(FakeClip(size=size)))
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    key = f"{rid}/{clip_id}.mp4"
    foreign = b"not yours" * 10
    await anyio.to_thread.run_sync(
        lambda: bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=foreign)
    )
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.FAILED
    assert outcome.message is not None
    assert "never overwritten" in outcome.message
    assert "overwrite=True" in outcome.message
    assert isinstance(outcome.error, DownloadError)
    assert await bucket.in_thread("read", key) == foreign
    assert await bucket.in_thread("uploads") == []  # the refused upload was aborted

    replaced = await client.download_many([rid], bucket.url, overwrite=True)
    assert replaced.ok
    assert sha(await bucket.in_thread("read", key)) == sha(fake_ssemble.clip_bytes(rid, clip_id))


@pytest.mark.parametrize("size", [70_000, 9 * MiB], ids=["put", "multipart"])
async def test_a_412_for_the_same_clip_means_already_present(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, size: int
) -> None:
    """An object of the clip's size that the run could not know of (no manifest, no
    metadata: another writer's) makes the conditional write fail with 412; a HEAD finds
    it is the clip's size, and the clip is already_present."""
    rid = fake_ssemble.add_job(done_job(FakeClip(size=size)))
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    key = f"{rid}/{clip_id}.mp4"
    data = fake_ssemble.clip_bytes(rid, clip_id)
    await anyio.to_thread.run_sync(
        lambda: bucket.s3.put_object(Bucket=bucket.name, Key=key, Body=data)
    )
    report = await client.download_many([rid], bucket.url)
    (outcome,) = report.outcomes
    assert outcome.state is ClipState.ALREADY_PRESENT
    assert outcome.size == size
    assert outcome.transferred == size  # fetched before the store said it has it
    assert await bucket.in_thread("uploads") == []


async def test_a_changed_source_starts_the_upload_over(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    """A download left mid-upload records the validator of the bytes sent; when the clip
    host's file is no longer that one (If-Range fails: a full answer), the old upload is
    aborted and the clip is fetched and uploaded again from its first byte."""
    size = 2 * PART_SIZE + 3 * MiB
    rid = fake_ssemble.add_job(done_job(FakeClip(size=size)))
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    key = f"{rid}/{clip_id}.mp4"
    fake_ssemble.clip_bytes_per_second = 8 * MiB
    async with client.stream_downloads([rid], bucket.url):
        with anyio.fail_after(60):
            while True:
                uploads = await bucket.in_thread("uploads")
                if uploads and await bucket.in_thread("parts", key, uploads[0]["UploadId"]):
                    break
                await anyio.sleep(0.05)
    # leaving the block stopped the transfer: its upload and its record stay
    (left,) = await bucket.in_thread("uploads")
    manifest_key = f"{rid}/manifest.json"
    manifest = json.loads(await bucket.in_thread("read", manifest_key))
    assert (
        manifest["clips"][clip_id]["partial"]["validator"]
        == fake_ssemble.jobs[rid].clips[clip_id].etag
    )
    manifest["clips"][clip_id]["partial"]["validator"] = '"stale"'  # the file changed since
    body = json.dumps(manifest).encode()
    await anyio.to_thread.run_sync(
        lambda: bucket.s3.put_object(Bucket=bucket.name, Key=manifest_key, Body=body)
    )

    fake_ssemble.clip_bytes_per_second = None
    seen = len(fake_ssemble.clip_requests)
    report = await client.download_many([rid], bucket.url)
    assert report.ok
    (outcome,) = report.outcomes
    assert outcome.transferred == size  # all of it again
    (asked,) = [r for r in fake_ssemble.clip_requests[seen:] if r.method == "GET"]
    assert asked.headers.get("If-Range") == '"stale"'
    assert sha(await bucket.in_thread("read", key)) == sha(fake_ssemble.clip_bytes(rid, clip_id))
    uploads = await bucket.in_thread("uploads")
    assert left["UploadId"] not in [u["UploadId"] for u in uploads]
    assert uploads == []


async def test_file_names_and_choices_are_the_folders(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(viral_score=91, title="Why I quit: my job!"),
            FakeClip(viral_score=75, title="Second"),
            FakeClip(viral_score=20, title="Left out"),
        )
    )
    report = await client.download_many(
        [rid], f"{bucket.url}/named", name="{rank}-{title}", min_score=50
    )
    assert report.ok
    assert await bucket.in_thread("keys") == sorted(
        [
            f"named/{rid}/1-Why_I_quit_my_job.mp4",
            f"named/{rid}/1-Why_I_quit_my_job.mp4.json",
            f"named/{rid}/2-Second.mp4",
            f"named/{rid}/2-Second.mp4.json",
            f"named/{rid}/manifest.json",
        ]
    )


async def test_a_missing_bucket_is_said_before_any_api_call(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip()))
    with pytest.raises(DownloadError, match="no such bucket"):
        await client.download_many([rid], f"{bucket.url}-missing/clips")
    assert fake_ssemble.api_requests == []


async def test_missing_credentials_are_a_configuration_error(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    rid = fake_ssemble.add_job(done_job(FakeClip()))
    with pytest.raises(ConfigurationError, match=r"no AWS credentials.*AWS_ACCESS_KEY_ID"):
        await client.download_many([rid], bucket.url)
    assert fake_ssemble.api_requests == []


async def test_a_dry_run_lists_what_is_in_the_bucket_and_writes_nothing(
    fake_ssemble: FakeSsembleAPI, client: Client, bucket: Bucket
) -> None:
    size = 2 * PART_SIZE + MiB
    rid = fake_ssemble.add_job(
        done_job(
            FakeClip(size=size, viral_score=90),
            FakeClip(size=70_000, viral_score=60),
            FakeClip(error=True, viral_score=10),
        )
    )
    big, small, _ = (c.clip_id for c in fake_ssemble.jobs[rid].job.clips)
    dest = f"{bucket.url}/p"

    plan = await client.plan_downloads([rid], dest)
    assert [(c.clip_id, c.action.value, c.to_fetch) for c in plan.clips] == [
        (big, "download", size),
        (small, "download", 70_000),
        (plan.clips[2].clip_id, "skip_error", 0),
    ]
    assert plan.clips[0].url == f"{dest}/{rid}/{big}.mp4"
    assert plan.clips[0].path is None
    assert await bucket.in_thread("keys") == []

    # cut short mid-upload: the rest of the big clip is to fetch
    fake_ssemble.clip_bytes_per_second = 8 * MiB
    async with client.stream_downloads([rid], dest):
        with anyio.fail_after(60):
            while True:
                uploads = await bucket.in_thread("uploads")
                key = f"p/{rid}/{big}.mp4"
                if uploads and await bucket.in_thread("parts", key, uploads[0]["UploadId"]):
                    break
                await anyio.sleep(0.05)
    fake_ssemble.clip_bytes_per_second = None
    (upload,) = await bucket.in_thread("uploads")
    kept = sum(p["Size"] for p in await bucket.in_thread("parts", key, upload["UploadId"]))
    keys = await bucket.in_thread("keys")
    plan = await client.plan_downloads([rid], dest)
    by_id = {c.clip_id: c for c in plan.clips}
    assert by_id[big].action.value == "resume"
    assert by_id[big].to_fetch == size - kept
    assert await bucket.in_thread("keys") == keys
    assert await bucket.in_thread("uploads") == [upload]

    assert (await client.download_many([rid], dest)).ok
    reads = len(fake_ssemble.api_requests)
    plan = await client.plan_downloads([rid], dest)
    assert [c.action.value for c in plan.clips] == ["present", "present", "skip_error"]
    assert plan.to_fetch == 0
    assert len(fake_ssemble.api_requests) == reads  # every clip there: the request not read


@pytest.mark.parametrize("dest", ["s3://", "s3:///clips", "s3://two words/x"])
async def test_a_malformed_s3_url_is_refused_before_anything(
    fake_ssemble: FakeSsembleAPI, client: Client, dest: str
) -> None:
    rid = fake_ssemble.add_job(done_job(FakeClip()))
    with pytest.raises(InvalidArgumentError, match="dest"):
        await client.download_many([rid], dest)
    assert fake_ssemble.api_requests == []
