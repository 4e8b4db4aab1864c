"""Scale-out: 1, 2 and 4 ``ssemble worker`` processes on one key, one queue, one quota.

Everything is real and local: Debian's redis-server on a unix socket (the queue and the
shared quota), the fake API and clip host on 127.0.0.1 (in this process), worker processes
started as a user would (``python -m ssemble_async worker``). Prints three tables:

1. **quota-bound** (a key of 12 calls per 4 s window, a backlog of 48 requests): the most
   calls any window saw against the quota (must be <= 1.0), the quota used while a backlog
   waited (>= 95 %), self-inflicted 429s (0), clips fetched twice (0).
2. **bandwidth-bound** (a generous quota, 48 requests x 4 clips x 1 MiB): clips/s, MiB/s,
   scaling efficiency against one worker, CPU seconds per GiB and peak RSS per worker.
3. **the shared governor**: acquire + settle latency p50/p99 (one task, 8 tasks), and the
   time from SIGKILL of a worker mid-transfer to its job's transfer resuming elsewhere.

    python benchmarks/scale.py [--workers 1,2,4] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import anyio

from ssemble_async import CallResult, QuotaPolicy, Reach
from ssemble_async._ratelimit import RateLimit
from ssemble_async.distributed import RedisGovernor, enqueue_requests, queue_status
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI
from ssemble_async.testing._redis import REDIS_SERVER, RedisServer
from ssemble_async.testing._s3 import aws_environment, s3_client, s3_server

MiB = 1024 * 1024


def start_worker(
    fake: FakeSsembleAPI,
    redis: RedisServer,
    dest: str | Path,
    extra: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    env.update(SSEMBLE_API_KEY=fake.api_key, SSEMBLE_BASE_URL=fake.base_url, TERM="dumb")
    env.update(extra or {})
    argv = [sys.executable, "-m", "ssemble_async", "worker", "--queue", redis.url]
    argv += ["--quota-url", redis.url, "-o", str(dest), "--concurrency", "4", "--json"]
    # the window is 4 s here, not an hour: the first poll interval shrinks with it (10 s -> 1 s)
    argv += ["--sweep-interval", "1", "--poll-interval", "1"]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _peak_rss(pid: int) -> float:
    """The process's peak RSS in MiB (``VmHWM``). Not ``wait4``'s ``ru_maxrss``: a forked
    child starts as a copy of this process (the fake holds every clip in memory), and Linux
    keeps that copy's size as the child's maximum across the exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu(pid: int) -> float:
    """The process's user + system CPU seconds so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes], how: int = signal.SIGTERM) -> float:
    """Stop a worker; its peak RSS in MiB."""
    peak = _peak_rss(process.pid)
    if process.poll() is None:
        process.send_signal(how)
    process.wait(timeout=60)
    return peak


async def fresh_redis(folder: Path) -> RedisServer:
    redis = RedisServer(Path(tempfile.mkdtemp(dir=folder)))
    await anyio.to_thread.run_sync(redis.start)
    return redis


async def drain(
    fake: FakeSsembleAPI,
    folder: Path,
    workers: int,
    jobs: list[str],
    *,
    dest: str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Enqueue ``jobs``, run ``workers`` workers until all are done; the figures of the run."""
    redis = await fresh_redis(folder)
    dest = dest or tempfile.mkdtemp(dir=folder)
    windows: dict[object, int] = {}  # the fake's window (its reset) -> fewest calls left seen
    backlog: dict[object, list[bool]] = {}  # the window -> a backlog at each look
    try:
        processes = [start_worker(fake, redis, dest, env) for _ in range(workers)]
        with anyio.fail_after(120):  # timed from when every worker is up, not their start-up
            while (await queue_status(redis.url)).workers < workers:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        fake.reset_counters()
        idle = sum(_cpu(process.pid) for process in processes)  # start-up and waiting
        started = time.perf_counter()
        await enqueue_requests(redis.url, jobs, dest=str(dest))
        with anyio.fail_after(600):
            while True:
                reset, left = fake.quota_reset, fake.quota_remaining
                windows[reset] = min(left, windows.get(reset, left))
                status = await queue_status(redis.url)
                backlog.setdefault(reset, []).append(status.pending + status.scheduled > 0)
                if status.done + status.failed >= len(jobs):
                    break
                await anyio.sleep(0.05)
        wall = time.perf_counter() - started
        busy = sum(_cpu(process.pid) for process in processes) - idle
        peaks = [stop(process) for process in processes]
    finally:
        await anyio.to_thread.run_sync(redis.stop)
    limit = fake.hourly_limit
    used = {reset: limit - left for reset, left in windows.items()}
    # the windows that had a backlog waiting at every look, from start to end
    full = [used[reset] for reset, looks in backlog.items() if len(looks) > 2 and all(looks)]
    sizes = {key: len(fake.clip_bytes(*key)) for key in fake.clip_bytes_sent}
    twice = sum(1 for key, sent in fake.clip_bytes_sent.items() if sent > sizes[key])
    total = sum(sizes.values())
    cpu = busy  # the workers' CPU while they drained the backlog, start-up excluded
    return {
        "wall": wall,
        "peak_window": max(used.values()) / limit,
        "backlog_use": (statistics.mean(full) / limit) if full else float("nan"),
        "429s": float(sum(fake.rate_limited.values())),
        "twice": float(twice),
        "clips": float(len(sizes)),
        "mib": total / MiB,
        "cpu_per_gib": cpu / (total / (1024 * MiB)) if total else float("nan"),
        "rss": max(peaks),
        "calls": float(sum(fake.calls.values())),
    }


def add_jobs(fake: FakeSsembleAPI, count: int, clips: int, size: int) -> list[str]:
    return [
        fake.add_job(FakeJob(steps=(), clips=tuple(FakeClip(size=size) for _ in range(clips))))
        for _ in range(count)
    ]


async def quota_bound(folder: Path, counts: list[int], quick: bool) -> None:
    requests = 24 if quick else 48
    print(f"\n1. quota-bound: a key of 12 calls per 4 s window, {requests} requests x 2 clips")
    print(
        f"{'workers':>8} {'wall s':>8} {'calls':>6} {'peak/quota':>11} {'backlog use':>12}"
        f" {'429s':>5} {'twice':>6}"
    )
    for workers in counts:
        async with FakeSsembleAPI(hourly_limit=12, quota_window=4.0) as fake:
            jobs = add_jobs(fake, requests, 2, 64 * 1024)
            got = await drain(fake, folder, workers, jobs)
        print(
            f"{workers:>8} {got['wall']:>8.1f} {got['calls']:>6.0f} {got['peak_window']:>11.2f}"
            f" {got['backlog_use']:>11.0%} {got['429s']:>5.0f} {got['twice']:>6.0f}"
        )


async def bandwidth_bound(folder: Path, counts: list[int], quick: bool) -> None:
    requests = 16 if quick else 48
    print(f"\n2. bandwidth-bound: a generous quota, {requests} requests x 4 clips x 4 MiB")
    print(
        f"{'workers':>8} {'wall s':>8} {'clips/s':>8} {'MiB/s':>7} {'efficiency':>11}"
        f" {'CPU s/GiB':>10} {'RSS/worker MiB':>15} {'twice':>6}"
    )
    base = None
    for workers in counts:
        async with FakeSsembleAPI() as fake:
            jobs = add_jobs(fake, requests, 4, 4 * MiB)
            got = await drain(fake, folder, workers, jobs)
        rate = got["mib"] / got["wall"]
        base = base or rate / workers
        print(
            f"{workers:>8} {got['wall']:>8.1f} {got['clips'] / got['wall']:>8.1f} {rate:>7.1f}"
            f" {rate / (base * workers):>10.0%} {got['cpu_per_gib']:>10.1f}"
            f" {got['rss']:>15.0f} {got['twice']:>6.0f}"
        )


async def governor_latency(folder: Path, quick: bool) -> None:
    rounds = 200 if quick else 1000
    redis = await fresh_redis(folder)
    told = RateLimit(limit_hour=10**9, remaining_hour=10**9, remaining_day=None, reset=None)
    result = CallResult(reach=Reach.YES, status=200, rate_limit=told)
    print("\n3. the shared governor (Redis on a unix socket)")
    try:
        for tasks in (1, 8):
            governor = RedisGovernor(redis.url, f"sk_ssemble_bench{tasks}", QuotaPolicy())
            times: list[float] = []

            async def pairs(
                count: int, governor: RedisGovernor = governor, times: list[float] = times
            ) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    lease = await governor.acquire()
                    await governor.settle(lease, result)
                    times.append(time.perf_counter() - started)

            async with anyio.create_task_group() as group:
                for _ in range(tasks):
                    group.start_soon(pairs, rounds // tasks)
            await governor.aclose()
            times.sort()
            p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
            print(
                f"   acquire+settle, {tasks} task(s): p50 {p50 * 1000:.2f} ms,"
                f" p99 {p99 * 1000:.2f} ms ({len(times)} pairs)"
            )
    finally:
        await anyio.to_thread.run_sync(redis.stop)


async def kill_recovery(folder: Path) -> None:
    """SIGKILL a worker mid-transfer; seconds until its clip's transfer resumes elsewhere."""
    async with FakeSsembleAPI(clip_bytes_per_second=2 * MiB) as fake:
        rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=16 * MiB),)))
        redis = await fresh_redis(folder)
        dest = Path(tempfile.mkdtemp(dir=folder))
        try:
            await enqueue_requests(redis.url, [rid], dest=str(dest), heartbeat_timeout=3)
            first = start_worker(fake, redis, dest)
            with anyio.fail_after(60):
                while not fake.clip_bytes_sent:  # noqa: ASYNC110 - the fake has no event for it
                    await anyio.sleep(0.02)
            second = start_worker(fake, redis, dest)
            await anyio.sleep(1.0)  # the second is up and idle
            before = len(fake.clip_requests)
            killed = time.perf_counter()
            stop(first, signal.SIGKILL)
            with anyio.fail_after(120):
                while len(fake.clip_requests) == before:  # noqa: ASYNC110 - no event for it
                    await anyio.sleep(0.02)
            resumed = time.perf_counter() - killed
            ranged = fake.clip_requests[-1].headers.get("Range", "no Range")
            stop(second)
        finally:
            await anyio.to_thread.run_sync(redis.stop)
    print(
        f"   SIGKILL mid-transfer -> the transfer resumed by another worker in {resumed:.1f} s"
        f" (heartbeat timeout 3 s, sweep every 1 s; it asked {ranged})"
    )


async def into_s3(folder: Path, quick: bool) -> None:
    """``ssemble enqueue`` + 2 workers move a backlog into a bucket (moto on 127.0.0.1)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("aiobotocore") is None:
        print("\n4. into S3: skipped (pip install 'ssemble-async[s3]' 'moto[server]')")
        return
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    requests = 12 if quick else 24
    with s3_server("bench") as endpoint:
        s3 = s3_client(endpoint)
        aws = aws_environment(endpoint, folder)
        async with FakeSsembleAPI(hourly_limit=12, quota_window=4.0) as fake:
            jobs = add_jobs(fake, requests, 2, 2 * MiB)
            got = await drain(fake, folder, 2, jobs, dest="s3://bench/clips", env=aws)
            wrong = 0
            for rid in jobs:
                for clip_id in fake.jobs[rid].clips:
                    body = s3.get_object(Bucket="bench", Key=f"clips/{rid}/{clip_id}.mp4")
                    wrong += body["Body"].read() != fake.clip_bytes(rid, clip_id)
    print(
        f"\n4. into S3: 2 workers, {requests} requests x 2 clips x 2 MiB, a key of 12 calls"
        " per 4 s window"
    )
    print(
        f"   {got['wall']:.1f} s, peak/quota {got['peak_window']:.2f}, 429s"
        f" {got['429s']:.0f}, clips fetched twice {got['twice']:.0f}, objects not"
        f" byte-identical {wrong} of {int(got['clips'])}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default: 1,2,4)")
    parser.add_argument("--quick", action="store_true", help="smaller backlogs")
    options = parser.parse_args()
    if REDIS_SERVER is None:
        print("scale-out: skipped, redis-server is not installed (apt-get install redis-server)")
        return
    counts = [int(n) for n in options.workers.split(",")]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: ASYNC240 - before any task
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        folder = Path(tmp)
        print(f"scale-out on {os.cpu_count()} CPUs; workers: {counts}")
        await quota_bound(folder, counts, options.quick)
        await bandwidth_bound(folder, counts, options.quick)
        await governor_latency(folder, options.quick)
        await kill_recovery(folder)
        await into_s3(folder, options.quick)


if __name__ == "__main__":
    asyncio.run(main())
