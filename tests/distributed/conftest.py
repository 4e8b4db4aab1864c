"""A real Redis (Debian's redis-server) on a unix socket of the test's own, no persistence."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ssemble_async.testing._redis import REDIS_SERVER, RedisServer

#: CI sets it: there a missing Redis fails the tests instead of skipping them.
REQUIRED = os.environ.get("SSEMBLE_REQUIRE_REDIS") == "1"
if not REQUIRED:
    pytest.importorskip("redis", reason="the distributed extra is not installed")


@pytest.fixture(params=[False], ids=["volatile"])
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RedisServer]:
    """A Redis of the test's own; parametrize ``redis_server`` indirectly with True for one
    that keeps an append-only file (a restart finds its data again)."""
    if REDIS_SERVER is None:
        if REQUIRED:
            pytest.fail("SSEMBLE_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"), append_only=request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()
