"""A real S3-compatible server for the tests: moto's, on 127.0.0.1, one bucket per test.

The code under test talks to it over HTTP through aiobotocore, as it would to AWS; the
tests read the bucket back with boto3 (moto's own dependency), in a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: CI sets it: there a missing moto or aiobotocore fails the tests instead of skipping them.
REQUIRED = os.environ.get("SSEMBLE_REQUIRE_S3") == "1"
if not REQUIRED:
    pytest.importorskip("aiobotocore", reason="the s3 extra is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")

import anyio  # noqa: E402 - after the skips

from ssemble_async.testing import FakeSsembleAPI  # noqa: E402
from ssemble_async.testing._s3 import aws_environment, s3_client, s3_server  # noqa: E402


@pytest.fixture(autouse=True)
def _instant(instant: None) -> None:
    """Backoff and polling are instant in these tests."""


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto server of this test session (S3 on 127.0.0.1, any free port)."""
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's AWS variables pointed at the test server; returns them."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = aws_environment(s3_endpoint, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


class Bucket:
    """A bucket of the test server, read and changed with boto3 (blocking calls, each run
    in a worker thread by the async helpers)."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.name = name
        self.s3: Any = s3_client(endpoint)

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    def keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def uploads(self) -> list[dict[str, Any]]:
        listed = self.s3.list_multipart_uploads(Bucket=self.name)
        uploads: list[dict[str, Any]] = listed.get("Uploads", [])
        return uploads

    def parts(self, key: str, upload_id: str) -> list[dict[str, Any]]:
        listed = self.s3.list_parts(Bucket=self.name, Key=key, UploadId=upload_id)
        parts: list[dict[str, Any]] = listed.get("Parts", [])
        return parts

    async def in_thread(self, method: str, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: getattr(self, method)(*args))


@pytest.fixture
def bucket(s3_endpoint: str, aws_env: dict[str, str]) -> Bucket:
    """A new, empty bucket of the test server."""
    made = Bucket(s3_endpoint, f"clips-{uuid.uuid4().hex[:12]}")
    made.s3.create_bucket(Bucket=made.name)
    return made


def environment(fake: FakeSsembleAPI | None) -> dict[str, str]:
    """The environment of an ``ssemble`` subprocess: the fake's key and URL, and this
    process's AWS variables (``aws_env``: the test server, dummy credentials)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    if fake is not None:
        env.update(SSEMBLE_API_KEY=fake.api_key, SSEMBLE_BASE_URL=fake.base_url)
    env.update(PYTHONUNBUFFERED="1", TERM="dumb")
    return env


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
