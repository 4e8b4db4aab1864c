"""The work queue on SAQ: real Redis, the fake API, real ``ssemble worker`` processes."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest

from ssemble_async.distributed import DEFAULT_QUEUE, enqueue_requests, queue_status
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI
from tests.cli._support import assert_one_line_error, environment, ssemble
from tests.distributed._queue_support import (
    DEADLINE,
    poll_until,
    queue_env,
    running_workers,
    stop,
    wait_for_status,
)
from tests.distributed.conftest import RedisServer

pytestmark = pytest.mark.anyio

KIB = 1024
#: Short timers, so that a dead worker's job moves on within seconds.
FAST = ("--sweep-interval", "1", "--poll-interval", "0.2")


def clip_gets(fake: FakeSsembleAPI) -> Counter[str]:
    """GET requests of the clip host, by path (one path per clip URL)."""
    return Counter(r.path for r in fake.clip_requests if r.method == "GET")


def assert_on_disk(fake: FakeSsembleAPI, dest: Path, request_id: str) -> None:
    """Every clip of the request is in ``dest``, byte for byte what the host serves."""
    for clip_id, state in fake.jobs[request_id].clips.items():
        if state.clip.error:
            continue
        assert (dest / request_id / f"{clip_id}.mp4").read_bytes() == fake.clip_bytes(
            request_id, clip_id
        )
    assert not list((dest / request_id).glob("*.part"))


def assert_fetched_once(fake: FakeSsembleAPI, request_ids: list[str]) -> None:
    """Each clip went over the wire once, whole: nothing downloaded twice."""
    for rid in request_ids:
        for clip_id in fake.jobs[rid].clips:
            assert fake.clip_bytes_sent[(rid, clip_id)] == len(fake.clip_bytes(rid, clip_id))
    assert set(clip_gets(fake).values()) == {1}


async def test_an_id_enqueued_twice_and_delivered_twice_is_downloaded_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=600 * KIB) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=300 * KIB) for _ in range(3)]))
        env = queue_env(fake, redis_server.url)
        first = await ssemble("enqueue", rid, env=env)
        again = await ssemble("enqueue", rid.upper(), env=env)
        assert (first.code, first.out.splitlines()[0]) == (0, f"{rid} queued")
        assert (again.code, again.out.splitlines()[0]) == (0, f"{rid} already queued")
        status = await queue_status(redis_server.url)
        assert (status.pending, status.active) == (1, 0)

        # at-least-once delivery: the same job handed to two workers at the same time
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_server.url)
        try:
            job_id = f"saq:job:{DEFAULT_QUEUE}:{rid}"
            await redis.rpush(f"saq:{DEFAULT_QUEUE}:queued", job_id)
        finally:
            await redis.aclose()
        dest = tmp_path / "clips"
        args = ("-o", str(dest), "--concurrency", "1")
        async with running_workers(2, env, *args, cwd=tmp_path) as board:
            await board.wait_for(lambda: len(board.outcomes(rid, "done")) == 2, "both runs")
            runs = board.outcomes(rid, "done")
            # one run fetched the clips; the other found them there once the folder was free
            assert sorted(run["counts"].get("downloaded", 0) for run in runs) == [0, 3]
            assert sorted(run["counts"].get("already_present", 0) for run in runs) == [0, 3]
        assert_on_disk(fake, dest, rid)
        assert_fetched_once(fake, [rid])

        # once done, the id may be queued anew: the files are there, nothing is fetched
        third = await ssemble("enqueue", rid, "--json", env=env)
        assert json.loads(third.out) == {"queued": [rid], "already_queued": []}
        async with running_workers(1, env, "-o", str(dest), cwd=tmp_path) as board:
            await board.wait_for(lambda: bool(board.outcomes(rid, "done")), "the re-run")
            assert board.outcomes(rid, "done")[0]["counts"] == {"already_present": 3}
        assert_fetched_once(fake, [rid])


async def test_two_workers_drain_a_backlog_into_one_folder(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=2000 * KIB) as fake:
        ids = [
            fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=200 * KIB) for _ in range(3)]))
            for _ in range(8)
        ]
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        args = ("-o", str(dest), "--concurrency", "1", *FAST)
        async with running_workers(2, env, *args, cwd=tmp_path) as board:
            await wait_for_status(redis_server.url, lambda s: s.workers == 2, "two workers")
            (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n# the backlog\n")
            enqueued = await ssemble("enqueue", "-i", str(tmp_path / "ids.txt"), "-q", env=env)
            assert (enqueued.code, enqueued.out.split()) == (0, ids)
            await board.wait_for(lambda: len(board.outcomes(state="done")) == len(ids), "drained")
            # each worker took its share, and no request ran twice
            assert all(worker.outcomes(state="done") for worker in board.workers)
            assert sorted(line["request_id"] for line in board.outcomes(state="done")) == sorted(
                ids
            )
            # a job's last line comes before the queue records it done: stop after that
            await wait_for_status(redis_server.url, lambda s: s.done == len(ids), "all done")
        for rid in ids:
            assert_on_disk(fake, dest, rid)
        assert_fetched_once(fake, ids)
        status = await queue_status(redis_server.url)
        assert (status.done, status.failed, status.pending, status.active) == (8, 0, 0, 0)


async def test_a_killed_workers_job_is_resumed_by_another_after_the_heartbeat_timeout(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    size = 1024 * KIB
    async with FakeSsembleAPI(clip_bytes_per_second=256 * KIB) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=size)]))
        (clip_id,) = fake.jobs[rid].clips
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        # 64 KiB a write: the .part grows as the bytes come
        await enqueue_requests(redis_server.url, [rid], heartbeat_timeout=2, chunk_size=64 * KIB)
        part = dest / rid / f"{clip_id}.mp4.part"
        async with running_workers(1, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await poll_until(
                lambda: part.exists() and part.stat().st_size >= 128 * KIB, "a transfer under way"
            )
            assert await stop(board.workers[0], signal.SIGKILL) == -signal.SIGKILL
        kept = part.stat().st_size
        status = await queue_status(redis_server.url)
        assert status.active == 1  # the dead worker's job, until the sweep hands it back

        async with running_workers(1, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await board.wait_for(lambda: bool(board.outcomes(rid, "done")), "the job resumed")
            assert board.outcomes(rid, "done")[0]["counts"] == {"downloaded": 1}
            await wait_for_status(redis_server.url, lambda s: s.done == 1, "the job done")
        assert_on_disk(fake, dest, rid)
        gets = [r for r in fake.clip_requests if r.method == "GET"]
        assert len(gets) == 2
        assert gets[1].headers["Range"] == f"bytes={kept}-"
        # the heir fetched only what was missing (and what the dead one had in flight)
        assert fake.clip_bytes_sent[(rid, clip_id)] < 2 * size
        status = await queue_status(redis_server.url)
        assert (status.done, status.failed, status.active) == (1, 0, 0)


async def test_a_stopped_worker_hands_its_job_back_at_once_for_another_to_resume(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=256 * KIB) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=[FakeClip(size=1024 * KIB)]))
        (clip_id,) = fake.jobs[rid].clips
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        # a heartbeat timeout far longer than the test: only the hand-back can move the job
        await enqueue_requests(redis_server.url, [rid], heartbeat_timeout=3600, chunk_size=64 * KIB)
        part = dest / rid / f"{clip_id}.mp4.part"
        async with running_workers(1, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await poll_until(lambda: part.exists() and part.stat().st_size > 0, "a transfer")
            assert await stop(board.workers[0]) == 0
            await board.wait_for(lambda: board.workers[0].finished, "the worker's last words")
            assert [line["state"] for line in board.outcomes(rid)] == ["released"]
            assert board.workers[0].stderr == b""
        status = await queue_status(redis_server.url)
        assert (status.pending, status.active) == (1, 0)
        async with running_workers(1, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await board.wait_for(lambda: bool(board.outcomes(rid, "done")), "the job resumed")
        assert_on_disk(fake, dest, rid)
        gets = [r for r in fake.clip_requests if r.method == "GET"]
        assert [("Range" in r.headers) for r in gets] == [False, True]


async def test_a_request_still_processing_is_rescheduled_then_downloaded(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI() as fake:
        # completes at its fourth read: three runs find it queued, then processing
        rid = fake.add_job(FakeJob())
        failing = fake.add_job(FakeJob(steps=(), outcome="failed"))
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        await enqueue_requests(redis_server.url, [rid, failing])
        async with running_workers(1, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await board.wait_for(lambda: bool(board.outcomes(rid, "done")), "the download")
            await board.wait_for(lambda: bool(board.outcomes(failing)), "the failed one")
            rescheduled = board.outcomes(rid, "rescheduled")
            assert len(rescheduled) == len(FakeJob().steps)
            assert all(line["delay"] > 0 for line in rescheduled)
            assert "the request is processing" in rescheduled[-1]["detail"]
            assert board.outcomes(rid, "done")[0]["counts"] == {"downloaded": 3}
            (failed,) = board.outcomes(failing)
            assert failed["state"] == "failed"
            assert "Source file could not be downloaded" in failed["detail"]
            await wait_for_status(
                redis_server.url, lambda s: (s.done, s.failed) == (1, 1), "both recorded"
            )
        assert_on_disk(fake, dest, rid)
        assert fake.calls["GET /shorts/:id"] == len(rescheduled) + 1 + 1  # + the failed one
        status = await queue_status(redis_server.url)
        assert (status.done, status.failed, status.scheduled) == (1, 1, 0)


async def test_workers_sharing_the_quota_reschedule_what_it_cannot_take_without_a_429(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI(hourly_limit=5, quota_window=4) as fake:
        ids = [fake.add_job(FakeJob(steps=())) for _ in range(8)]
        env = queue_env(fake, redis_server.url, SSEMBLE_QUOTA_URL=redis_server.url)
        dest = tmp_path / "clips"
        async with running_workers(2, env, "-o", str(dest), *FAST, cwd=tmp_path) as board:
            await wait_for_status(redis_server.url, lambda s: s.workers == 2, "two workers")
            # a fresh window of 5 calls: 8 jobs need 8
            fake.set_quota(remaining_hour=5, reset=fake.now() + dt.timedelta(seconds=4))
            await enqueue_requests(redis_server.url, ids)
            await board.wait_for(lambda: len(board.outcomes(state="done")) == 8, "all done")
            held = board.outcomes(state="rescheduled")
            assert held
            assert {line["detail"] for line in held} == {"the hourly quota is spent"}
        assert fake.calls["GET /shorts/:id"] == 8
        assert not fake.rate_limited
        for rid in ids:
            assert_on_disk(fake, dest, rid)


async def test_a_worker_on_a_terminal_or_a_log_says_one_line_per_job_run(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=(("processing", 50, "Rendering"),)))
        env = queue_env(fake, redis_server.url)
        dest = tmp_path / "clips"
        async with running_workers(
            1, env, "-o", str(dest), *FAST, cwd=tmp_path, as_json=False
        ) as board:
            (worker,) = board.workers
            queued = await ssemble("enqueue", rid, "--top", "2", env=env)
            assert queued.out.splitlines() == [f"{rid} queued", "1 queued, 0 already queued"]
            await board.wait_for(lambda: len(worker.texts) == 2, "two runs")
        assert worker.texts == [
            f"{rid} rescheduled: the request is processing; runs again in 0.2 s",
            f"{rid} done: every clip is there (2 downloaded)",
        ]
        assert worker.stderr.decode().splitlines() == [
            f"ssemble: worker on queue ssemble: 4 request(s) at once into {dest}; Ctrl-C stops it",
            "ssemble: worker stopped; jobs in flight went back to the queue",
        ]


async def test_queue_status_counts_pending_scheduled_done_failed_and_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI() as fake:
        ready = [fake.add_job(FakeJob(steps=())) for _ in range(3)]
        failing = fake.add_job(FakeJob(steps=(), outcome="cancelled"))
        endless = fake.add_job(FakeJob(reads_per_step=1_000_000))
        env = queue_env(fake, redis_server.url)
        await enqueue_requests(redis_server.url, [*ready, failing, endless])
        before = await ssemble("queue-status", "--json", env=env)
        assert before.code == 0, before.err
        assert json.loads(before.out) == {
            "name": DEFAULT_QUEUE,
            "pending": 5,
            "scheduled": 0,
            "active": 0,
            "done": 0,
            "failed": 0,
            "workers": 0,
        }
        args = ("-o", str(tmp_path / "clips"), "--sweep-interval", "1", "--poll-interval", "600")
        async with running_workers(1, env, *args, cwd=tmp_path):
            await wait_for_status(
                redis_server.url,
                lambda s: (s.done, s.failed, s.scheduled) == (3, 1, 1),
                "the ready jobs done, the cancelled one failed, the endless one scheduled",
            )
            during = await ssemble("queue-status", env=env)
        assert during.code == 0, during.err
        assert during.out.splitlines() == [
            "queue ssemble",
            "  pending   0  waiting for a worker",
            "  scheduled 1  not ready on the server, or waiting for the quota",
            "  active    0  running on a worker",
            "  done      3  in the last 7 days",
            "  failed    1  in the last 7 days",
            "  workers   1  running now",
        ]


async def test_enqueue_refuses_a_bad_queue_before_any_call_and_never_prints_it(
    tmp_path: Path,
) -> None:
    rid = "665a1b2c3d4e5f6a7b8c9d0e"
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_test")
    missing = await ssemble("enqueue", rid, env=env)
    assert missing.code == 2
    assert_one_line_error(missing, "no queue given: pass --queue")
    wrong = await ssemble("enqueue", rid, "--queue", "http://user:s3cret@host/0", env=env)
    assert wrong.code == 2
    assert_one_line_error(wrong, "--queue: the scheme http:// is not supported")
    assert "s3cret" not in wrong.err
    for command in (["enqueue", rid], ["queue-status"], ["worker", "-o", str(tmp_path)]):
        gone = await ssemble(
            *command, "--queue", f"unix://:s3cret@{tmp_path}/no-redis.sock", env=env
        )
        assert gone.code == 1, (command, gone.err)
        assert_one_line_error(gone, "the queue's Redis cannot be reached")
        assert "s3cret" not in gone.err
    malformed = await ssemble("enqueue", "not-an-id", "--queue", "redis://h/0", env=env)
    assert malformed.code == 2
    assert_one_line_error(malformed, "invalid request id 'not-an-id'")


async def test_the_settings_run_in_an_saq_app_of_ones_own(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with FakeSsembleAPI() as fake:
        rid = fake.add_job(FakeJob(steps=()))
        dest = tmp_path / "clips"
        await enqueue_requests(redis_server.url, [rid], dest=dest)
        env = queue_env(fake, redis_server.url)
        # SAQ's own runner, on the settings of tests/distributed/_queue_app.py
        app = await anyio.open_process(
            [sys.executable, "-m", "saq", "tests.distributed._queue_app.settings", "--quiet"],
            env=env,
            cwd=Path(__file__).parents[2],
        )
        try:
            await wait_for_status(redis_server.url, lambda s: s.done == 1, "the job done")
        finally:
            app.send_signal(signal.SIGTERM)
            with anyio.fail_after(DEADLINE):
                await app.wait()
        assert_on_disk(fake, dest, rid)
