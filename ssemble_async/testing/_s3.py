"""A real S3-compatible store for tests and benchmarks: moto's server on 127.0.0.1.

Not part of the public testing API (moto is a test dependency, not the package's): the
project's own tests and benchmarks start it here, with the variables a process needs to
reach it with dummy credentials.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["REGION", "aws_environment", "s3_client", "s3_server"]

REGION = "us-east-1"
_KEY = "testing"


def aws_environment(endpoint: str, home: Path) -> dict[str, str]:
    """The variables a process needs to reach ``endpoint`` with dummy credentials (and no
    profile or config file of the machine's: they would live in ``home``)."""
    return {
        "AWS_ACCESS_KEY_ID": _KEY,
        "AWS_SECRET_ACCESS_KEY": _KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata address
    }


def s3_client(endpoint: str) -> Any:
    """A blocking boto3 client of ``endpoint`` (moto's own dependency), to read buckets back."""
    boto3 = importlib.import_module("boto3")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=_KEY,
        aws_secret_access_key=_KEY,
    )


@contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """A moto server on 127.0.0.1 (any free port) with ``buckets`` made; yields its URL."""
    server = importlib.import_module("moto.server").ThreadedMotoServer(
        ip_address="127.0.0.1", port=0, verbose=False
    )
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = s3_client(endpoint)
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
