"""The whole scale-out: `ssemble enqueue` and two `ssemble worker` processes move a backlog into
an S3-compatible bucket through one Redis (queue and quota): byte-verified, the key's quota
never exceeded, no clip fetched twice, and a worker killed mid-upload resumed by the other."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli._support import ssemble

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI
from ssemble_async.testing._redis import RedisServer
from ssemble_async.testing._s3 import aws_environment, s3_client, s3_server

from ._queue_support import (
    poll_until,
    queue_env,
    running_workers,
    stop,
    wait_for_status,
)

if os.environ.get("SSEMBLE_REQUIRE_S3") != "1":
    pytest.importorskip("aiobotocore", reason="the s3 extra is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")


pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
FAST = ("--sweep-interval", "1", "--poll-interval", "0.2")


@pytest.fixture
def s3() -> Iterator[tuple[str, Any]]:
    """A moto server on 127.0.0.1 with the bucket ``backlog``: its URL and a boto3 client."""
    with s3_server("backlog") as endpoint:
        yield endpoint, s3_client(endpoint)


def worker_env(
    fake: FakeSsembleAPI, redis: RedisServer, endpoint: str, home: Path
) -> dict[str, str]:
    return queue_env(
        fake, redis.url, SSEMBLE_QUOTA_URL=redis.url, **aws_environment(endpoint, home)
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_in_bucket(fake: FakeSsembleAPI, client: Any, ids: list[str]) -> None:
    """Every clip is in the bucket byte for byte, with its sidecar and the manifest."""
    listed = client.list_objects_v2(Bucket="backlog", Prefix="clips/")
    keys = {item["Key"] for item in listed.get("Contents", [])}
    for rid in ids:
        assert f"clips/{rid}/manifest.json" in keys
        for clip_id in fake.jobs[rid].clips:
            key = f"clips/{rid}/{clip_id}.mp4"
            assert key in keys and f"{key}.json" in keys
            body = client.get_object(Bucket="backlog", Key=key)["Body"].read()
            assert sha(body) == sha(fake.clip_bytes(rid, clip_id))


async def test_two_workers_move_a_backlog_into_the_bucket_within_the_quota(
    redis_server: RedisServer, s3: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, client = s3
    # a key of 4 calls per 3 s window: 8 requests need the quota of several windows
    async with FakeSsembleAPI(hourly_limit=4, quota_window=3.0) as fake:
        ids = [
            fake.add_job(
                FakeJob(steps=(), clips=(FakeClip(size=300_001), FakeClip(size=9 * MIB + 7)))
                if n == 0
                else FakeJob(steps=(), clips=(FakeClip(size=200_003), FakeClip(size=150_001)))
            )
            for n in range(8)
        ]
        env = worker_env(fake, redis_server, endpoint, tmp_path)
        args = ("-o", "s3://backlog/clips", "--concurrency", "2", *FAST)
        async with running_workers(2, env, *args, cwd=tmp_path) as board:
            await wait_for_status(redis_server.url, lambda s: s.workers == 2, "two workers")
            (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
            enqueued = await ssemble("enqueue", "-i", str(tmp_path / "ids.txt"), "-q", env=env)
            assert (enqueued.code, enqueued.out.split()) == (0, ids), enqueued.err
            with anyio.fail_after(120):
                await board.wait_for(
                    lambda: len(board.outcomes(state="done")) == len(ids), "the backlog drained"
                )
        assert sum(fake.rate_limited.values()) == 0  # the key's quota was never exceeded
        assert_in_bucket(fake, client, ids)
        for rid in ids:  # nothing fetched twice
            for clip_id in fake.jobs[rid].clips:
                assert fake.clip_bytes_sent[(rid, clip_id)] == len(fake.clip_bytes(rid, clip_id))


async def test_a_worker_killed_mid_upload_is_resumed_by_another_from_its_parts(
    redis_server: RedisServer, s3: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, client = s3
    size = 20 * MIB + 11
    async with FakeSsembleAPI(clip_bytes_per_second=4 * MIB) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=size),)))
        (clip_id,) = fake.jobs[rid].clips
        env = worker_env(fake, redis_server, endpoint, tmp_path)
        args = ("-o", "s3://backlog/clips", "--concurrency", "1", *FAST)
        enqueued = await ssemble("enqueue", rid, "--heartbeat-timeout", "2", "-q", env=env)
        assert enqueued.code == 0, enqueued.err

        def uploaded_parts() -> int:
            uploads = client.list_multipart_uploads(Bucket="backlog").get("Uploads", [])
            return sum(
                len(
                    client.list_parts(Bucket="backlog", Key=u["Key"], UploadId=u["UploadId"]).get(
                        "Parts", []
                    )
                )
                for u in uploads
            )

        async with running_workers(1, env, *args, cwd=tmp_path) as first:
            await poll_until(lambda: uploaded_parts() >= 1, "a part uploaded")
            assert await stop(first.workers[0], signal.SIGKILL) == -signal.SIGKILL
        sent_before = fake.clip_bytes_sent[(rid, clip_id)]
        async with running_workers(1, env, *args, cwd=tmp_path) as second:
            with anyio.fail_after(120):
                await second.wait_for(lambda: bool(second.outcomes(rid, "done")), "resumed")
        assert_in_bucket(fake, client, [rid])
        ranges = [r.headers.get("Range") for r in fake.clip_requests[1:]]
        assert ranges and all(r is not None and r.startswith("bytes=") for r in ranges)
        resumed_from = int(ranges[0].removeprefix("bytes=").split("-")[0])
        assert resumed_from >= 8 * MIB and resumed_from % (8 * MIB) == 0  # whole parts kept
        # no part went twice beyond the one in flight when the worker died
        assert fake.clip_bytes_sent[(rid, clip_id)] - size <= sent_before - resumed_from
        assert sent_before - resumed_from < 8 * MIB
