"""``ssemble download -o s3://...`` SIGKILLed mid-upload, then run again.

The clip host is throttled, so the first run is caught with parts of the clip in the
bucket's unfinished upload and one more on its way. A SIGKILL gives the process no chance
to clean up: the upload's parts and the manifest's record of the validator their bytes
came with are all the second run has. It must find the upload, keep its parts, ask the clip
host only for the rest (``Range`` from the end of the last part, ``If-Range``), and end
with the object byte-identical.
"""

from __future__ import annotations

import json
import signal
import sys

import anyio
import pytest

from ssemble_async._s3 import PART_SIZE
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from .conftest import Bucket, environment, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
SIZE = 3 * PART_SIZE + 5 * MiB + 17  # four parts, the last one short


async def test_sigkill_mid_upload_then_resume_from_the_uploaded_parts(
    fake_ssemble: FakeSsembleAPI, bucket: Bucket
) -> None:
    fake = fake_ssemble
    rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=SIZE),)))
    clip_id = fake.jobs[rid].job.clips[0].clip_id
    key = f"clips/{rid}/{clip_id}.mp4"
    command = [
        *(sys.executable, "-m", "ssemble_async", "download", rid),
        *("-o", f"{bucket.url}/clips", "--json"),
    ]
    fake.clip_bytes_per_second = 4 * MiB
    async with await anyio.open_process(command, env=environment(fake)) as process:
        with anyio.fail_after(60):
            while True:
                assert process.returncode is None, "the download ended before the kill"
                uploads = await bucket.in_thread("uploads")
                if uploads and await bucket.in_thread("parts", key, uploads[0]["UploadId"]):
                    break
                await anyio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        with anyio.fail_after(10):
            assert await process.wait() == -signal.SIGKILL

    # What the killed run left: an unfinished upload of whole parts, and a manifest that
    # records the validator their bytes came with; no object under the clip's key.
    assert key not in await bucket.in_thread("keys")
    (upload,) = await bucket.in_thread("uploads")
    assert upload["Key"] == key
    parts = await bucket.in_thread("parts", key, upload["UploadId"])
    assert 1 <= len(parts) < 4
    assert [p["PartNumber"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["Size"] == PART_SIZE for p in parts)
    kept = len(parts) * PART_SIZE
    manifest = json.loads(await bucket.in_thread("read", f"clips/{rid}/manifest.json"))
    partial = manifest["clips"][clip_id]["partial"]
    assert partial == {"validator": fake.jobs[rid].clips[clip_id].etag, "total": SIZE}

    fake.clip_bytes_per_second = None
    seen = len(fake.clip_requests)
    sent_before = fake.clip_bytes_sent[(rid, clip_id)]
    with anyio.fail_after(120):
        again = await anyio.run_process(command, env=environment(fake), check=False)
    assert again.returncode == 0, again.stderr.decode()
    report = json.loads(again.stdout)
    (outcome,) = report["outcomes"]
    assert outcome["state"] == "downloaded"
    assert outcome["url"] == f"{bucket.url}/{key}"

    # Only the rest was fetched, with Range from the end of the last part kept (so no part
    # was uploaded twice: the one in flight at the kill was not kept), and If-Range.
    (resumed,) = [r for r in fake.clip_requests[seen:] if r.method == "GET"]
    assert resumed.headers.get("Range") == f"bytes={kept}-"
    assert resumed.headers.get("If-Range") == fake.jobs[rid].clips[clip_id].etag
    assert outcome["transferred"] == SIZE - kept
    assert fake.clip_bytes_sent[(rid, clip_id)] - sent_before == SIZE - kept

    assert sha(await bucket.in_thread("read", key)) == sha(fake.clip_bytes(rid, clip_id))
    assert await bucket.in_thread("uploads") == []
    manifest = json.loads(await bucket.in_thread("read", f"clips/{rid}/manifest.json"))
    assert manifest["clips"][clip_id]["complete"] is True
    assert manifest["clips"][clip_id]["partial"] is None
