"""Faults of the work queue found by an adversarial review: each test failed before its fix.

Real Redis (Debian's redis-server), the fake API, real ``ssemble worker`` processes or SAQ
workers in this process; every wait is bounded.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from cli._support import assert_one_line_error, environment, ssemble
from saq import Job, Status, Worker

from ssemble_async import Client, ConfigurationError, InvalidArgumentError
from ssemble_async.distributed import (
    DEFAULT_QUEUE,
    JobOutcome,
    enqueue_requests,
    queue_status,
    worker_settings,
)
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI
from ssemble_async.testing._redis import RedisServer
from ssemble_async.testing._s3 import aws_environment, s3_client, s3_server

from ._queue_support import (
    DEADLINE,
    poll_until,
    queue_env,
    running_workers,
    stop,
    wait_for_status,
)

pytestmark = [
    pytest.mark.anyio,
    # redis-py 8 deprecates SETEX, which SAQ's own code calls
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
]

RID = "665a1b2c3d4e5f6a7b8c9d0e"


async def stored_job(queue_url: str, request_id: str) -> Job | None:
    """The job record of ``request_id`` as Redis holds it now."""
    from ssemble_async.distributed import _open

    queue = _open(queue_url, DEFAULT_QUEUE)
    try:
        await queue.connect()
        return await queue.job(request_id)
    finally:
        await queue.disconnect()


class Outcomes(list[JobOutcome]):
    """The outcomes a worker's ``on_outcome`` told, with a bounded wait for the next."""

    def __init__(self) -> None:
        super().__init__()
        self.told = anyio.Event()

    def __call__(self, outcome: JobOutcome) -> None:
        self.append(outcome)
        self.told.set()

    async def first(self) -> JobOutcome:
        with anyio.fail_after(DEADLINE):
            await self.told.wait()
        return self[0]


async def wait_until_running(queue_url: str, request_id: str) -> None:
    """Wait (at most `DEADLINE` seconds) until a worker marks the job running."""
    with anyio.fail_after(DEADLINE):
        while True:
            job = await stored_job(queue_url, request_id)
            if job is not None and job.status is Status.ACTIVE:
                return
            await anyio.sleep(0.05)


@asynccontextmanager
async def saq_worker(settings: dict[str, Any]) -> AsyncIterator[Worker]:
    """A SAQ worker of ``settings`` running in this process (stopped on the way out)."""
    worker = Worker(**settings)
    async with anyio.create_task_group() as group:
        await worker.queue.connect()
        group.start_soon(worker.start)
        try:
            yield worker
        finally:
            with anyio.CancelScope(shield=True):
                await worker.stop()
                await worker.queue.disconnect()
            group.cancel_scope.cancel()


# -- bad inputs: one line, the right exit code, nothing sent ---------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@127.0.0.1:notaport/0",
        "redis://user:s3cret@127.0.0.1:99999/0",
        "redis://user:s3cret@[::1/0",
    ],
    ids=["port-not-a-number", "port-out-of-range", "broken-ipv6"],
)
async def test_a_malformed_queue_url_is_a_usage_error_not_an_unexpected_one(
    url: str, tmp_path: Path
) -> None:
    """Before: ``ssemble: error: unexpected ValueError: Port could not be cast ... please
    report it`` with exit 1, and a bare ValueError from the library."""
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_test")
    for command in (["enqueue", RID], ["queue-status"], ["worker", "-o", str(tmp_path)]):
        with anyio.fail_after(DEADLINE):
            done = await ssemble(*command, "--queue", url, env=env)
        assert done.code == 2, (command, done.err)
        assert_one_line_error(done, "queue")
        assert "unexpected" not in done.err
        assert "s3cret" not in done.err
    with pytest.raises(ConfigurationError) as raised:
        await enqueue_requests(url, [RID])
    assert "s3cret" not in str(raised.value)
    with pytest.raises(ConfigurationError):
        worker_settings(url, dest=tmp_path)


async def test_an_s3_destination_without_a_bucket_is_refused_before_any_job_runs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Before: ``ssemble worker -o s3://`` started, took the backlog's jobs and failed each
    of them for good (``dest: 's3://' names no bucket``); ``enqueue --dest s3://`` queued
    jobs that could only fail."""
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=()))
        env = queue_env(fake, redis_server.url)
        await enqueue_requests(redis_server.url, [rid])
        for dest in ("s3://", "s3:///prefix", "s3://bad bucket/x"):
            with anyio.fail_after(20):  # before: it ran until stopped
                worker = await ssemble("worker", "-o", dest, "--sweep-interval", "1", env=env)
            assert worker.code == 2, worker.err
            assert_one_line_error(worker, "-o")
            with anyio.fail_after(DEADLINE):
                enqueued = await ssemble("enqueue", RID, "--dest", dest, env=env)
            assert enqueued.code == 2, enqueued.err
            assert_one_line_error(enqueued, "--dest")
            with pytest.raises(InvalidArgumentError):
                await enqueue_requests(redis_server.url, [RID], dest=dest)
            with pytest.raises(InvalidArgumentError):
                worker_settings(redis_server.url, dest=dest)
        # the job waits for a worker that can run it, untouched
        job = await stored_job(redis_server.url, rid)
        assert job is not None
        assert (job.status, job.attempts) == (Status.QUEUED, 0)
        assert await stored_job(redis_server.url, RID) is None
        assert not fake.calls


# -- a job that raised what nobody expected ----------------------------------------------------


class _BrokenClient(Client):
    """A client whose downloads raise an error no part of the package maps (a bug)."""

    def stream_downloads(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")


async def test_an_unexpected_error_in_a_job_is_retried_later_not_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Before: the error went to SAQ, which ran the job again at once (the job's retry
    delay was 0): its five attempts were spent within a second and the job failed for
    good, with a traceback in the log."""
    outcomes = Outcomes()
    async with FakeSsembleAPI() as fake, _BrokenClient(fake.api_key, base_url=fake.base_url) as c:
        rid = fake.add_job(FakeJob(steps=()))
        settings = worker_settings(redis_server.url, dest=tmp_path, client=c, on_outcome=outcomes)
        await enqueue_requests(redis_server.url, [rid])
        async with saq_worker(settings):
            await outcomes.first()
            await anyio.sleep(1.0)  # time enough for SAQ's immediate retries
            job = await stored_job(redis_server.url, rid)
        assert job is not None
        assert (job.status, job.attempts) == (Status.QUEUED, 1)
        (outcome,) = outcomes
        assert outcome.state == "retrying"
        assert outcome.delay is not None and outcome.delay >= 30
        assert "boom" in outcome.detail
        status = await wait_for_status(redis_server.url, lambda s: True, "a status")
        assert (status.scheduled, status.failed) == (1, 0)


# -- the sweep and the clocks of the machines --------------------------------------------------


async def test_a_sweeper_whose_clock_runs_ahead_never_takes_a_live_job(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat is stamped with the running worker's clock and judged with the
    sweeping worker's: a sweeper 20 s ahead took a job whose worker beat every second
    (heartbeat timeout 3 s), aborted it mid-transfer and queued it again."""
    async with FakeSsembleAPI(clip_bytes_per_second=64 * 1024) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=640 * 1024)]))
        outcomes = Outcomes()
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            settings = worker_settings(
                redis_server.url,
                dest=tmp_path,
                client=client,
                sweep_interval=3600,  # this worker does not sweep; the test does
                on_outcome=outcomes,
            )
            await enqueue_requests(redis_server.url, [rid], heartbeat_timeout=3)
            async with saq_worker(settings):
                await wait_until_running(redis_server.url, rid)
                # another machine's worker, its clock 20 s ahead, sweeps
                import saq.job

                from ssemble_async.distributed import _open

                ahead = lambda: int((time.time() + 20) * 1000)  # noqa: E731
                monkeypatch.setattr(saq.job, "now", ahead)  # what judges a heartbeat
                sweeper = _open(redis_server.url, DEFAULT_QUEUE)
                await sweeper.connect()
                try:
                    await sweeper.redis.delete(sweeper.namespace("sweep"))  # the worker's lock
                    swept = await sweeper.sweep(lock=1, abort=0.5)
                finally:
                    await sweeper.disconnect()
                monkeypatch.undo()
                await outcomes.first()
        assert swept == []
        assert [o.state for o in outcomes] == ["done"]
        assert fake.clip_bytes_sent and sum(fake.clip_bytes_sent.values()) == 640 * 1024


# -- an s3:// destination: no folder lock to wait on -------------------------------------------


@pytest.fixture
def s3_bucket(tmp_path: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """A moto server on 127.0.0.1 with the bucket ``backlog``: the AWS variables of a
    worker that uses it, and a boto3 client to read it back."""
    pytest.importorskip("aiobotocore", reason="the s3 extra is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    with s3_server("backlog") as endpoint:
        yield aws_environment(endpoint, tmp_path), s3_client(endpoint)


async def test_an_id_delivered_twice_into_a_bucket_is_downloaded_once(
    redis_server: RedisServer, s3_bucket: tuple[dict[str, str], Any], tmp_path: Path
) -> None:
    """SAQ delivers at least once: the same job may run on two workers at the same time.
    Into a folder the second run waits on the folder's lock and finds the clips there;
    into a bucket there was no lock: both runs fetched every clip."""
    aws, s3 = s3_bucket
    async with FakeSsembleAPI(clip_bytes_per_second=600 * 1024) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=300 * 1024) for _ in range(3)]))
        env = queue_env(fake, redis_server.url, **aws)
        await enqueue_requests(redis_server.url, [rid])
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_server.url)
        try:  # the job handed to two workers at once
            await redis.rpush(f"saq:{DEFAULT_QUEUE}:queued", f"saq:job:{DEFAULT_QUEUE}:{rid}")
        finally:
            await redis.aclose()
        args = ("-o", "s3://backlog/clips", "--concurrency", "1")
        async with running_workers(2, env, *args, cwd=tmp_path) as board:
            await board.wait_for(lambda: len(board.outcomes(rid, "done")) == 2, "both runs")
            runs = board.outcomes(rid, "done")
            assert sorted(run["counts"].get("downloaded", 0) for run in runs) == [0, 3]
        for clip_id in fake.jobs[rid].clips:
            body = s3.get_object(Bucket="backlog", Key=f"clips/{rid}/{clip_id}.mp4")["Body"]
            assert body.read() == fake.clip_bytes(rid, clip_id)
            assert fake.clip_bytes_sent[(rid, clip_id)] == len(fake.clip_bytes(rid, clip_id))


# -- a worker that dies --------------------------------------------------------------------


async def test_a_job_whose_worker_died_is_run_again_even_on_its_last_attempt(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A killed worker's run counted as one of the job's attempts: a job enqueued with
    ``--retries 1`` (no retry wanted for a failing request) was given up (``aborted``,
    counted failed) when its worker died, instead of being resumed by another worker."""
    async with FakeSsembleAPI(clip_bytes_per_second=256 * 1024) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=1024 * 1024)]))
        (clip_id,) = fake.jobs[rid].clips
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        await enqueue_requests(
            redis_server.url, [rid], heartbeat_timeout=2, retries=1, chunk_size=64 * 1024
        )
        part = dest / rid / f"{clip_id}.mp4.part"
        fast = ("--sweep-interval", "1", "--poll-interval", "0.2")
        async with running_workers(1, env, "-o", str(dest), *fast, cwd=tmp_path) as board:
            await poll_until(lambda: part.exists() and part.stat().st_size > 0, "a transfer")
            assert await stop(board.workers[0], signal.SIGKILL) == -signal.SIGKILL
        async with running_workers(1, env, "-o", str(dest), *fast, cwd=tmp_path) as board:
            await board.wait_for(lambda: bool(board.outcomes(rid, "done")), "the job resumed")
        status = await queue_status(redis_server.url)
        assert (status.done, status.failed) == (1, 0)
        assert (dest / rid / f"{clip_id}.mp4").read_bytes() == fake.clip_bytes(rid, clip_id)


async def test_a_worker_whose_bucket_is_missing_stops_before_taking_a_job(
    redis_server: RedisServer, s3_bucket: tuple[dict[str, str], Any], tmp_path: Path
) -> None:
    """A folder that cannot be written stops ``ssemble worker`` at once; a bucket that does
    not exist did not: the worker took job after job, and each failed (five runs each, then
    for good) - a fleet with a typo in ``-o`` failed the whole backlog within minutes."""
    aws, _ = s3_bucket
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=()))
        env = queue_env(fake, redis_server.url, **aws)
        await enqueue_requests(redis_server.url, [rid])
        with anyio.fail_after(20):  # before: it ran until stopped
            worker = await ssemble("worker", "-o", "s3://no-such-bucket/clips", env=env)
        assert worker.code == 1, worker.err
        assert_one_line_error(worker, "s3://no-such-bucket: no such bucket")
        job = await stored_job(redis_server.url, rid)
        assert job is not None
        assert (job.status, job.attempts) == (Status.QUEUED, 0)
        assert not fake.calls


@pytest.mark.parametrize("redis_server", [True], indirect=True, ids=["append-only"])
async def test_a_redis_restarted_while_a_job_ends_loses_no_job_and_prints_no_traceback(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis (with its append-only file) is down while a job's download ends: the worker
    cannot record the job done. Once Redis is back the job must still end done (handed back
    by the sweep, finding its clip there), with nothing fetched twice and no traceback."""
    size = 512 * 1024
    async with FakeSsembleAPI(clip_bytes_per_second=256 * 1024) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=size)]))
        (clip_id,) = fake.jobs[rid].clips
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        await enqueue_requests(redis_server.url, [rid], heartbeat_timeout=2, chunk_size=64 * 1024)
        part = dest / rid / f"{clip_id}.mp4.part"
        clip = dest / rid / f"{clip_id}.mp4"
        fast = ("--sweep-interval", "1", "--poll-interval", "0.2")
        async with running_workers(1, env, "-o", str(dest), *fast, cwd=tmp_path) as board:
            await poll_until(lambda: part.exists() and part.stat().st_size > 0, "a transfer")
            redis_server.stop()
            await poll_until(clip.exists, "the clip downloaded while Redis is down")
            await anyio.sleep(3.0)  # the worker tries to record the job, and gives up
            redis_server.start()
            await wait_for_status(redis_server.url, lambda s: s.done == 1, "the job done")
        (worker,) = board.workers
        assert "Traceback" not in worker.stderr.decode(), worker.stderr.decode()
        assert clip.read_bytes() == fake.clip_bytes(rid, clip_id)
        assert fake.clip_bytes_sent[(rid, clip_id)] == size
