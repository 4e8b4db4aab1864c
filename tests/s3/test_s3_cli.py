"""``ssemble download -o s3://...`` and ``ssemble s3-cleanup``, run as subprocesses."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import anyio
import pytest

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from .conftest import Bucket, environment, sha

pytestmark = pytest.mark.anyio


class Result:
    def __init__(self, code: int, out: bytes, err: bytes) -> None:
        self.code, self.out, self.err = code, out.decode(), err.decode()


async def ssemble(args: Sequence[str], env: dict[str, str]) -> Result:
    with anyio.fail_after(120):
        done = await anyio.run_process(
            [sys.executable, "-m", "ssemble_async", *args], env=env, check=False
        )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Result, needle: str) -> None:
    assert result.err.startswith("ssemble: error: "), result.err
    assert needle in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


async def test_download_into_a_bucket_prints_each_object(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip(size=100_000))))
    clips = [c.clip_id for c in fake_ssemble.jobs[rid].job.clips]
    result = await ssemble(
        ["download", rid, "-o", f"{bucket.url}/out", "-q"], environment(fake_ssemble)
    )
    assert result.code == 0, result.err
    assert sorted(result.out.split()) == sorted(f"{bucket.url}/out/{rid}/{c}.mp4" for c in clips)
    for clip_id in clips:
        data = await bucket.in_thread("read", f"out/{rid}/{clip_id}.mp4")
        assert sha(data) == sha(fake_ssemble.clip_bytes(rid, clip_id))

    again = await ssemble(
        ["download", rid, "-o", f"{bucket.url}/out", "--json"], environment(fake_ssemble)
    )
    assert again.code == 0, again.err
    report = json.loads(again.out)
    assert [o["state"] for o in report["outcomes"]] == ["already_present"] * 2
    assert {o["url"] for o in report["outcomes"]} == {
        f"{bucket.url}/out/{rid}/{c}.mp4" for c in clips
    }
    assert all(o["path"] is None for o in report["outcomes"])


@pytest.mark.parametrize(
    ("output", "needle"),
    [
        ("s3://", "names no bucket"),
        ("s3://bad bucket/x", "is not a bucket name"),
    ],
)
async def test_a_bad_s3_output_is_a_usage_error_before_any_call(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket, output: str, needle: str
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))
    result = await ssemble(["download", rid, "-o", output], environment(fake_ssemble))
    assert result.code == 2
    assert needle in result.err
    assert "Traceback" not in result.err
    assert fake_ssemble.api_requests == []


async def test_dry_run_into_a_bucket(fake_ssemble: FakeSsembleAPI, bucket: Bucket) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(size=70_000),)))
    clip_id = fake_ssemble.jobs[rid].job.clips[0].clip_id
    result = await ssemble(
        ["download", rid, "-o", f"{bucket.url}/x", "--dry-run", "--json"],
        environment(fake_ssemble),
    )
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert [(c["action"], c["url"], c["to_fetch"]) for c in plan["clips"]] == [
        ("download", f"{bucket.url}/x/{rid}/{clip_id}.mp4", 70_000)
    ]
    assert await bucket.in_thread("keys") == []


async def test_a_missing_bucket_is_one_line_and_exit_1(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))
    result = await ssemble(
        ["download", rid, "-o", f"{bucket.url}-gone/x"], environment(fake_ssemble)
    )
    assert result.code == 1
    assert_one_line_error(result, f"{bucket.url}-gone: no such bucket")
    assert fake_ssemble.api_requests == []


async def test_an_unreachable_endpoint_names_the_flag(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(),)))
    env = environment(fake_ssemble)
    env["AWS_MAX_ATTEMPTS"] = "1"
    result = await ssemble(
        ["download", rid, "-o", bucket.url, "--s3-endpoint-url", "http://127.0.0.1:9"], env
    )
    assert result.code == 1
    assert_one_line_error(result, "check --s3-endpoint-url (or AWS_ENDPOINT_URL)")


async def test_s3_cleanup_aborts_the_stale_uploads_under_the_prefix(bucket: Bucket) -> None:
    def start(key: str) -> str:
        upload_id: str = bucket.s3.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
        bucket.s3.upload_part(
            Bucket=bucket.name, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 100
        )
        return upload_id

    inside = await anyio.to_thread.run_sync(start, "clips/665a1b2c3d4e5f6a7b8c9d0e/a.mp4")
    outside = await anyio.to_thread.run_sync(start, "clips-other/665a1b2c3d4e5f6a7b8c9d0e/b.mp4")
    env = environment(None)

    # moto dates every upload in 2010: an --older-than of a million hours keeps them all
    kept = await ssemble(
        ["s3-cleanup", f"{bucket.url}/clips", "--older-than", "1000000", "--json"], env
    )
    assert kept.code == 0, kept.err
    assert json.loads(kept.out) == {"aborted": []}
    assert len(await bucket.in_thread("uploads")) == 2

    done = await ssemble(["s3-cleanup", f"{bucket.url}/clips/", "--json"], env)
    assert done.code == 0, done.err
    (aborted,) = json.loads(done.out)["aborted"]
    assert aborted["url"] == f"{bucket.url}/clips/665a1b2c3d4e5f6a7b8c9d0e/a.mp4"
    assert aborted["upload_id"] == inside
    assert [u["UploadId"] for u in await bucket.in_thread("uploads")] == [outside]

    told = await ssemble(["s3-cleanup", bucket.url], env)
    assert told.code == 0, told.err
    assert f"aborted {bucket.url}/clips-other/665a1b2c3d4e5f6a7b8c9d0e/b.mp4" in told.out
    assert "1 unfinished upload older than 24 hours aborted" in told.out
    assert await bucket.in_thread("uploads") == []


async def test_s3_cleanup_checks_its_url(bucket: Bucket) -> None:
    result = await ssemble(["s3-cleanup", "/tmp/clips"], environment(None))
    assert result.code == 2
    assert "is not s3://bucket/prefix" in result.err


async def test_listen_refuses_a_bucket_before_anything(bucket: Bucket) -> None:
    result = await ssemble(["listen", "--port", "0", "-o", bucket.url], environment(None))
    assert result.code == 2
    assert_one_line_error(result, "ssemble listen writes into a folder only")
