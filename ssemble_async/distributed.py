"""Scale-out on Redis: a quota shared by every process of a key, and a work queue of downloads.

- [`RedisGovernor`][ssemble_async.distributed.RedisGovernor]: the key's quota budget kept in
  Redis for every process and machine; `Client(quota_url="redis://...")` makes one.
- A work queue on SAQ: many workers, on many machines, one backlog.

Needs the ``distributed`` extra (``pip install 'ssemble-async[distributed]'``: SAQ and
redis-py). Each request id is one job, keyed by the id: enqueuing an id that is already
waiting or running is a no-op. Workers run the jobs:

```python
from ssemble_async.distributed import enqueue_requests, worker_settings

result = await enqueue_requests("redis://redis:6379/0", ids, dest="clips/")
print(result.queued, result.already_queued)

# in the workers' module (run with: saq mymodule.settings), or `ssemble worker`
settings = worker_settings("redis://redis:6379/0", dest="clips/", concurrency=4)
```

What a job does:

- It downloads its request with [`Client.stream_downloads()`][ssemble_async.Client.stream_downloads]
  into the job's ``dest`` (else the worker's), skipping what is already there and resuming
  ``.part`` files: a job run twice, or after a worker died mid-transfer, fetches each
  clip once.
- A request not completed on the server (or whose clips are re-rendering) is not waited
  for: the job is scheduled again later (10 s, growing to 60 s as
  [`PollPolicy`][ssemble_async.PollPolicy] says), and further apart when the checks of
  every unfinished job together would spend the quota before its reset; the worker slot
  is free meanwhile. A spent quota is waited out the same way, until its reset.
- A request that failed, was cancelled or does not exist fails its job with the reason;
  other errors are retried (30 s, doubling to 15 min) up to ``retries`` runs.
- While it runs, the job beats a heartbeat (three per ``heartbeat_timeout``); a worker
  killed mid-transfer stops beating, and another worker's sweep hands its job to the
  queue again after the timeout.

The workers share the key's quota when ``quota_url`` (or ``SSEMBLE_QUOTA_URL``) names a
Redis: use the same Redis as the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import anyio
import attrs

from ssemble_async import _clock
from ssemble_async._client import Client, validate_request_id
from ssemble_async._config import PollPolicy, QuotaPolicy
from ssemble_async._download_models import DownloadReport
from ssemble_async._errors import ConfigurationError, InvalidArgumentError, SsembleError
from ssemble_async._pipeline import DownloadOptions, DownloadStream
from ssemble_async._queue_plan import (
    Judgement,
    Verdict,
    judge,
    judge_error,
    quota_delay,
    recheck_delay,
    retry_delay,
)
from ssemble_async._quota import refill
from ssemble_async._redis_governor import RedisGovernor
from ssemble_async._s3 import is_s3_url, parse_s3_url, require_s3_extra

try:
    from redis import asyncio as aioredis
    from redis.asyncio.connection import parse_url as _parse_redis_url
    from redis.exceptions import RedisError
    from saq import Job, Status
    from saq.queue.redis import RedisQueue
except ImportError as _missing:  # pragma: no cover - the extra is installed in the tests
    raise ImportError(
        "ssemble_async.distributed needs the distributed extra:"
        " pip install 'ssemble-async[distributed]'"
    ) from _missing

__all__ = [
    "DEFAULT_QUEUE",
    "JOB_FUNCTION",
    "EnqueueResult",
    "JobOutcome",
    "QueueStatus",
    "QueueUnavailableError",
    "RedisGovernor",
    "enqueue_requests",
    "queue_status",
    "worker_settings",
]

logger = logging.getLogger("ssemble_async")

#: The SAQ queue's name when none is given.
DEFAULT_QUEUE = "ssemble"
#: The name under which the download job is registered with SAQ.
JOB_FUNCTION = "ssemble_async.download_request"
#: Seconds a job's record is kept after it ends (for ``queue_status()``'s done/failed counts).
KEEP_FINISHED = 7 * 24 * 3600
#: Download options a job may carry (the rest of ``download_many()``'s keywords are the
#: worker's: it never waits on the server, and never overwrites what is complete).
JOB_OPTIONS = ("chunk_size", "idle_timeout", "recompile_wait", "name", "top", "min_score")
#: Seconds the sweep gives a job it found taken but not marked running, before it deems
#: its worker gone (a live worker marks it within milliseconds).
SETTLE = 2.0
#: Times a job whose worker died is handed back without spending an attempt (a job that
#: kills every worker it runs on still ends).
HAND_BACKS = 10
#: Seconds a run holds its job's request without renewing it, when the job has no heartbeat
#: (with one: its heartbeat timeout).
HOLD = 60.0
#: Seconds between two looks at a hold another run of the same job has.
HOLD_POLL = 0.25
#: Seconds a worker pauses after its Redis could not be reached, before trying again.
OUTAGE_PAUSE = 1.0
#: Enqueues sent to Redis at once.
ENQUEUES_AT_ONCE = 20
#: Seconds a free worker slot waits for a job in one blocking read (BLMOVE), below
#: redis-py's socket timeout (5 s since redis-py 8), then asks again.
DEQUEUE_WAIT = 2.0

_CLIENT = "ssemble_client"


class QueueUnavailableError(SsembleError):
    """The queue's Redis could not be reached or refused a command.

    Attributes:
        reason: what Redis (or the connection) said; the queue URL itself is never
            repeated: it may hold a password.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"the queue's Redis cannot be reached or refused a command ({reason});"
            " check queue_url and that Redis runs"
        )


@attrs.frozen(kw_only=True)
class EnqueueResult:
    """What [`enqueue_requests()`][ssemble_async.distributed.enqueue_requests] did, per request id.

    Attributes:
        queued: the ids that got a new job, in the order given.
        already_queued: the ids whose job was already waiting or running (nothing changed).
    """

    queued: tuple[str, ...] = ()
    already_queued: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class QueueStatus:
    """The jobs of a queue by state, as [`queue_status()`][ssemble_async.distributed.queue_status]
    counts them.

    Attributes:
        name: the queue's name.
        pending: jobs waiting for a worker.
        scheduled: jobs waiting for a time: requests not ready on the server, a spent
            quota, a retry's delay.
        active: jobs a worker is running.
        done: jobs completed in the last 7 days.
        failed: jobs failed (or given up) in the last 7 days.
        workers: workers that reported in the last few seconds.
    """

    name: str
    pending: int
    scheduled: int
    active: int
    done: int
    failed: int
    workers: int


@attrs.frozen(kw_only=True)
class JobOutcome:
    """How one run of a job ended, as a worker's ``on_outcome`` callback hears it.

    Attributes:
        request_id: the job's request.
        state: ``done`` (every clip is there), ``rescheduled`` (not ready, or the quota
            spent: it runs again after ``delay``), ``retrying`` (it failed for a passing
            cause and runs again after ``delay``), ``failed`` (for good), or ``released``
            (the worker stopped: the job is back in the queue).
        detail: one line saying why.
        counts: clips by state (``ClipState`` values) in this run.
        delay: seconds until the job runs again, for ``rescheduled`` and ``retrying``.
    """

    request_id: str
    state: Literal["done", "rescheduled", "retrying", "failed", "released"]
    detail: str
    counts: Mapping[str, int] = attrs.field(factory=dict)
    delay: float | None = None


class _Reschedule(Exception):
    """Raised by a job to be scheduled again (SAQ retries it after ``job.retry_delay``)."""


class _JobFailed(Exception):
    """Raised by a job that failed (SAQ retries it while it has attempts left)."""


class _QuietJobs(logging.Filter):
    """Drops SAQ's error log (a traceback) of the job endings this module reports itself:
    a job scheduled again, or failed with its reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        raised = record.exc_info[1] if record.exc_info else None
        return not isinstance(raised, _Reschedule | _JobFailed)


_QUIET = _QuietJobs()


#: What a malformed queue URL is told (the URL itself is never repeated, nor what the
#: parser said of it: a password with a ``/`` in it reads as a host and port).
MALFORMED_QUEUE_URL = (
    "is not a valid Redis URL: check its host, port and database, and percent-encode"
    " any / # ? @ : in its user or password"
)


def _check_queue_url(queue_url: str) -> None:
    """Refuse a queue URL that is not a Redis one, or that cannot be parsed (no I/O).

    Raises:
        ConfigurationError: says why, without the URL (it may hold a password).
    """
    scheme, found, _ = queue_url.partition("://")
    if not found or scheme.lower() not in ("redis", "rediss", "unix"):
        # the URL itself is never repeated: it may hold a password
        named = f"scheme {scheme.lower()}://" if found and scheme else "value (not a URL)"
        raise ConfigurationError(
            f"queue_url {named} is not supported: give redis://host:port/db,"
            " rediss://host:port/db or unix:///path/to/redis.sock"
        )
    try:
        _parse_redis_url(queue_url)
    except ValueError:  # a port that is no number, a broken IPv6 address...
        raise ConfigurationError(f"queue_url {MALFORMED_QUEUE_URL}") from None


def _unavailable(error: BaseException) -> QueueUnavailableError:
    return QueueUnavailableError(str(error) or type(error).__name__)


def _stuck(job: Job, now_ms: int) -> bool:
    """SAQ's ``Job.stuck`` (running, its heartbeat or time limit passed), judged at
    ``now_ms`` (Redis's clock, as the heartbeats are stamped)."""
    if job.status not in (Status.ACTIVE, Status.ABORTING):
        return False
    late = bool(job.heartbeat) and (now_ms - job.touched) / 1000 > job.heartbeat
    overdue = bool(job.timeout) and (now_ms - job.started) / 1000 > job.timeout
    return late or overdue


class _DownloadQueue(RedisQueue):
    """SAQ's Redis queue, with a sweep that never takes a job from a live worker.

    SAQ's own sweep hands a job to the queue again as soon as it finds it taken (in the
    ``active`` list) but not yet marked running; a worker marks a job running a moment
    after taking it, so that sweep can catch a live job in between and run it twice. This
    sweep looks again `SETTLE` seconds later and only hands over the jobs still unmarked,
    and those whose heartbeat stopped. Heartbeats are stamped, and judged, with Redis's
    clock (``TIME``): SAQ's use each machine's own, so a sweeper whose clock runs ahead
    of a worker's by more than the heartbeat timeout took every job of that worker. A job
    whose worker died gets the attempt back (`HAND_BACKS` times at most). A worker whose
    Redis cannot be reached pauses instead of asking again at once.
    """

    _sweep_script: Any = None
    _renew_script: Any = None
    _release_script: Any = None

    async def redis_ms(self) -> int:
        """Redis's clock (``TIME``) in milliseconds: the one every machine reads alike."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _update(self, job: Job, status: Status | None = None, **kwargs: Any) -> None:
        job.touched = await self.redis_ms()  # the heartbeat, on the shared clock
        await super()._update(job, status, **kwargs)

    # -- one run of a job at a time (SAQ delivers at least once) -------------------------------

    def hold_key(self, job_key: str) -> str:
        return self.namespace(f"running:{job_key}")

    async def hold(self, job_key: str, token: str, ttl_ms: int) -> bool:
        """Take the job's hold for ``ttl_ms``, unless another run has it."""
        return bool(await self.redis.set(self.hold_key(job_key), token, nx=True, px=ttl_ms))

    async def renew(self, job_key: str, token: str, ttl_ms: int) -> bool:
        """Extend the hold taken with ``token``; False when it is no longer this run's."""
        if self._renew_script is None:
            self._renew_script = self.redis.register_script(
                """
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
                end
                return 0
                """
            )
        renewed = await self._renew_script(
            keys=[self.hold_key(job_key)], args=[token, ttl_ms], client=self.redis
        )
        return bool(renewed)

    async def release(self, job_key: str, token: str) -> None:
        """Give the hold taken with ``token`` up (a hold taken since by another run stays)."""
        if self._release_script is None:
            self._release_script = self.redis.register_script(
                """
                if redis.call('GET', KEYS[1]) == ARGV[1] then
                    return redis.call('DEL', KEYS[1])
                end
                return 0
                """
            )
        await self._release_script(keys=[self.hold_key(job_key)], args=[token], client=self.redis)

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        try:
            return await self._sweep_once(lock, abort)
        except (RedisError, OSError) as error:  # the dequeue says so; no traceback here
            logger.debug("queue: no sweep: %s", error)
            return []

    async def _sweep_once(self, lock: int, abort: float) -> list[str]:
        if self._sweep_script is None:
            # SAQ's own: one sweeper at a time (a lock for ``lock`` seconds), the active jobs
            self._sweep_script = self.redis.register_script(
                """
                local id_jobs = {}
                if redis.call('EXISTS', KEYS[1]) == 0 then
                    redis.call('SETEX', KEYS[1], ARGV[1], 1)
                    for i, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
                        id_jobs[i] = {v, redis.call('GET', v)}
                    end
                end
                return id_jobs
                """
            )
        active = self.namespace("active")
        found = await self._sweep_script(
            keys=[self.namespace("sweep"), active], args=[lock], client=self.redis
        )
        swept: list[str] = []
        unmarked: list[str] = []
        for raw_id, raw_job in found:
            job_id = raw_id.decode()
            job = self.deserialize(raw_job)
            if job is None:  # its record is gone: only the list entry is left
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.lrem(active, 0, job_id)
                    pipe.zrem(self.namespace("incomplete"), job_id)
                    await pipe.execute()
                swept.append(job_id)
            elif _stuck(job, await self.redis_ms()):
                await self._hand_back(job, abort)
                swept.append(job_id)
            elif job.status is not Status.ACTIVE:
                unmarked.append(job.key)
        if unmarked:
            await anyio.sleep(SETTLE)
            for job in await self.jobs(unmarked):
                if job is None or await self.redis.lpos(active, job.id) is None:
                    continue  # it ended meanwhile
                if job.status is not Status.ACTIVE or _stuck(job, await self.redis_ms()):
                    await self._hand_back(job, abort)
                    swept.append(job.id)
        return swept

    async def _hand_back(self, job: Job, abort: float) -> None:
        """Abort ``job`` (its worker stops it, if alive) and queue it again (SAQ's way)."""
        logger.info("queue: handing job %s back to the queue (its worker is gone)", job.key)
        ran = job.status is Status.ACTIVE  # its worker started it (and counted an attempt)
        await self.abort(job, error=self.swept_error_message)
        with contextlib.suppress(asyncio.TimeoutError):  # no worker answered: it is gone
            await job.refresh(abort)
        handed = int(job.meta.get("handed_back", 0)) + 1
        job.meta["handed_back"] = handed
        if ran and handed <= HAND_BACKS:
            job.retries += 1  # a dead worker costs the job no attempt
        if job.retryable:
            await self.retry(job, error=self.swept_error_message)
        else:
            await self.finish(job, Status.ABORTED, error=self.swept_error_message)

    # -- a Redis that goes away and comes back ------------------------------------------------

    async def _until_recorded(self, job: Job, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` (how a run of ``job`` ended) until Redis takes it: a job whose end
        could not be recorded was left running in Redis, for the sweep to hand back and run
        again, and SAQ printed a traceback."""
        told = False
        while True:
            try:
                await write()
                return
            except (RedisError, OSError) as error:
                if not told:
                    logger.warning(
                        "queue: Redis cannot be reached (%s); the end of job %s is recorded"
                        " once it is back",
                        error,
                        job.key,
                    )
                    told = True
            await anyio.sleep(OUTAGE_PAUSE)

    async def _finish(
        self, job: Job, status: Status, *, result: Any = None, error: str | None = None
    ) -> None:
        parent = super()._finish
        await self._until_recorded(job, lambda: parent(job, status, result=result, error=error))

    async def _retry(self, job: Job, error: str | None) -> None:
        parent = super()._retry
        await self._until_recorded(job, lambda: parent(job, error))

    async def schedule(self, lock: int = 1) -> list[str]:
        try:
            return await super().schedule(lock)
        except (RedisError, OSError) as error:  # the dequeue says so; no traceback here
            logger.debug("queue: scheduled jobs not moved: %s", error)
            return []

    async def write_worker_info(self, worker_id: str, info: Any, ttl: int) -> None:
        try:
            await super().write_worker_info(worker_id, info, ttl)
        except (RedisError, OSError) as error:
            logger.debug("queue: worker info not written: %s", error)

    async def check(self) -> None:
        """Raise `QueueUnavailableError` unless Redis answers a ``PING``."""
        try:
            await self.redis.ping()
        except (RedisError, OSError) as error:
            raise _unavailable(error) from None

    async def disconnect(self) -> None:
        try:
            await super().disconnect()
        except (RedisError, OSError) as error:  # nothing to close on a Redis never reached
            logger.debug("queue: closing the connections to Redis: %s", error)

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - SAQ's signature
        poll_interval: float = 0.0,
    ) -> Job | None:
        try:
            return await super().dequeue(timeout, poll_interval)
        except (RedisError, OSError) as error:
            logger.warning("queue: Redis cannot be reached (%s); trying again", error)
            await anyio.sleep(OUTAGE_PAUSE)
            return None


def _open(queue_url: str, name: str) -> _DownloadQueue:
    _check_queue_url(queue_url)
    try:
        redis = aioredis.from_url(queue_url)
    except ValueError:
        raise ConfigurationError(f"queue_url {MALFORMED_QUEUE_URL}") from None
    return _DownloadQueue(redis, name=name)


def _check_dest(dest: str, *, what: str) -> None:
    """Refuse an ``s3://`` destination that names no bucket (a folder is the worker's
    to check, on its own machine).

    Raises:
        InvalidArgumentError: not ``s3://bucket/prefix``.
    """
    if is_s3_url(dest):
        try:
            parse_s3_url(dest)
        except ValueError as exc:
            raise InvalidArgumentError(f"{what}: {exc}") from None


def _job_options(options: Mapping[str, Any], *, role: str) -> dict[str, Any]:
    """``options`` checked as download options a job may carry (``role``: whose they are)."""
    unknown = sorted(set(options) - set(JOB_OPTIONS))
    if unknown:
        raise InvalidArgumentError(
            f"{', '.join(unknown)}: not a download option of {role}; they are"
            f" {', '.join(JOB_OPTIONS)}"
        )
    try:
        DownloadOptions(**options)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(str(exc)) from None
    return dict(options)


async def enqueue_requests(
    queue_url: str,
    request_ids: Iterable[str],
    *,
    dest: str | os.PathLike[str] | None = None,
    name: str = DEFAULT_QUEUE,
    heartbeat_timeout: int = 60,
    retries: int = 5,
    **download_options: Any,
) -> EnqueueResult:
    """Put one download job per request id on the queue, keyed by the id.

    An id whose job is already waiting or running is left as it is (reported in
    ``already_queued``), whatever this call's options; an id whose job ended gets a new
    job (which finds the clips already there and fetches nothing again). Ids are checked
    before anything is sent.

    Args:
        queue_url: the Redis of the queue: ``redis://host:port/db``, ``rediss://...`` or
            ``unix:///path/to/redis.sock`` (a password in it is never repeated).
        request_ids: the requests to download (duplicates, in any letter case, count once).
        dest: where the worker puts the clips (a folder on the worker's machine, or what
            its ``download_many()`` accepts); None: the worker's own ``dest``.
        name: the SAQ queue's name.
        heartbeat_timeout: seconds without a heartbeat after which a job's worker is taken
            for dead and the job handed to another (its workers beat three times as often).
        retries: runs a job may take when it fails for a passing cause (runs that found
            the request not ready, or the quota spent, do not count).
        **download_options: for each job: ``chunk_size``, ``idle_timeout``,
            ``recompile_wait``, ``name``, ``top``, ``min_score`` (as for
            [`download_many()`][ssemble_async.Client.download_many]).

    Raises:
        InvalidRequestIdError: an id is malformed (nothing is sent).
        InvalidArgumentError: an option is unknown or refused, or ``dest`` is an
            ``s3://`` URL without a bucket (nothing is sent).
        ConfigurationError: ``queue_url`` is not a Redis URL, or a malformed one.
        QueueUnavailableError: Redis cannot be reached.
    """
    ids: list[str] = []
    for request_id in request_ids:
        rid = validate_request_id(request_id)
        if rid not in ids:
            ids.append(rid)
    options = _job_options(download_options, role="a job")
    if heartbeat_timeout < 1 or retries < 1:
        raise InvalidArgumentError(
            f"heartbeat_timeout and retries must be 1 or more, got {heartbeat_timeout}"
            f" and {retries}"
        )
    where = None if dest is None else os.fspath(dest)
    if where is not None:
        _check_dest(where, what="dest")
    queue = _open(queue_url, name)
    new: dict[str, bool] = {}
    refused: list[BaseException] = []
    limiter = anyio.CapacityLimiter(ENQUEUES_AT_ONCE)

    async def one(rid: str) -> None:
        job = Job(
            function=JOB_FUNCTION,
            kwargs={"request_id": rid, "dest": where, "options": options},
            key=rid,
            timeout=0,  # no limit on a download: the heartbeat tells a live one
            heartbeat=heartbeat_timeout,
            retries=retries,
            ttl=KEEP_FINISHED,
        )
        async with limiter:
            if refused:
                return
            try:
                new[rid] = await queue.enqueue(job) is not None
            except (RedisError, OSError) as error:
                refused.append(error)

    try:
        await queue.connect()
        async with anyio.create_task_group() as group:
            for rid in ids:
                group.start_soon(one, rid)
    finally:
        await queue.disconnect()
    if refused:
        raise _unavailable(refused[0])
    return EnqueueResult(
        queued=tuple(rid for rid in ids if new[rid]),
        already_queued=tuple(rid for rid in ids if not new[rid]),
    )


async def queue_status(queue_url: str, *, name: str = DEFAULT_QUEUE) -> QueueStatus:
    """Count the jobs of a queue by state (one scan of its job records for done/failed).

    Raises:
        ConfigurationError: ``queue_url`` is not a Redis URL, or a malformed one.
        QueueUnavailableError: Redis cannot be reached.
    """
    queue = _open(queue_url, name)
    try:
        await queue.connect()
        info = await queue.info()
        done = failed = 0
        async for job in queue.iter_jobs([Status.COMPLETE, Status.FAILED, Status.ABORTED]):
            if job.status is Status.COMPLETE:
                done += 1
            else:
                failed += 1
    except (RedisError, OSError) as error:
        raise _unavailable(error) from None
    finally:
        await queue.disconnect()
    return QueueStatus(
        name=name,
        pending=info["queued"],
        scheduled=max(0, info["scheduled"]),
        active=info["active"],
        done=done,
        failed=failed,
        workers=len(info["workers"]),
    )


class _Hold:
    """A run's hold on its job in Redis: one run of a job at a time, on any worker.

    SAQ delivers a job at least once: a job handed back by a sweep, or pushed twice, can
    run on two workers at the same time. Into a folder the second run waits on the
    folder's lock; a bucket has none, and both runs fetched every clip. The second run now
    waits here (its heartbeat still beating) until the first ends, then finds the clips
    there. The hold lasts the job's heartbeat timeout and is renewed with each beat: a
    worker that dies lets it go as its job is deemed dead. A Redis that cannot say runs
    the job anyway (a clip fetched twice is better than a job held back).
    """

    def __init__(self, queue: _DownloadQueue, job: Job) -> None:
        self.queue = queue
        self.job_key = job.key
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(1000 * (job.heartbeat or HOLD))
        self.held = False

    async def take(self) -> None:
        told = False
        while True:
            try:
                self.held = await self.queue.hold(self.job_key, self.token, self.ttl_ms)
            except (RedisError, OSError) as error:
                logger.warning(
                    "queue: cannot tell whether job %s runs elsewhere (%s); running it",
                    self.job_key,
                    error,
                )
                return
            if self.held:
                return
            if not told:
                logger.warning(
                    "queue: job %s is running on another worker; waiting for it to end",
                    self.job_key,
                )
                told = True
            await anyio.sleep(HOLD_POLL)

    async def renew(self) -> None:
        if self.held and not await self.queue.renew(self.job_key, self.token, self.ttl_ms):
            self.held = False
            logger.warning("queue: job %s lost its hold (its heartbeats stopped)", self.job_key)

    async def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            await self.queue.release(self.job_key, self.token)
        except (RedisError, OSError) as error:  # it lapses with its timeout
            logger.debug("queue: the hold of job %s not given up: %s", self.job_key, error)


class _Worker:
    """The download job and the lifecycle of one worker process (see `worker_settings()`)."""

    def __init__(
        self,
        *,
        dest: str,
        make_client: Callable[[], Client] | None,
        client: Client | None,
        poll: PollPolicy,
        clip_concurrency: int,
        options: dict[str, Any],
        on_outcome: Callable[[JobOutcome], None] | None,
    ) -> None:
        self.dest = dest
        self.make_client = make_client
        self.client = client
        self.poll = poll
        self.clip_concurrency = clip_concurrency
        self.options = options
        self.on_outcome = on_outcome

    async def startup(self, ctx: dict[str, Any]) -> None:
        queue = ctx["worker"].queue
        if isinstance(queue, _DownloadQueue):
            await queue.check()  # a worker without its queue stops at once
        client = self.client if self.make_client is None else self.make_client()
        ctx[_CLIENT] = client
        if client is not None and is_s3_url(self.dest):
            # a worker that cannot write its bucket stops too, before it takes a job
            # (no API call: the bucket is only looked at)
            await client.plan_downloads([], self.dest)

    async def shutdown(self, ctx: dict[str, Any]) -> None:
        client = ctx.pop(_CLIENT, None)
        if client is not None and self.make_client is not None:
            await client.close()

    def _tell(self, outcome: JobOutcome) -> None:
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    async def run(
        self,
        ctx: dict[str, Any],
        *,
        request_id: str,
        dest: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The job: download one request; see the module's docstring for how it ends."""
        job: Job = ctx["job"]
        client: Client = ctx[_CLIENT]
        job.retry_delay = 0.0  # a handed-back job goes at once (a reschedule sets its own)
        target = self.dest if dest is None else dest
        try:
            chosen = {**self.options, **_job_options(options or {}, role="a job")}
            report = await self._download(job, client, request_id, target, chosen)
            judgement = judge(request_id, report)
        except anyio.get_cancelled_exc_class():
            job.retries += 1  # a worker that stops costs the job no attempt
            self._tell(
                JobOutcome(
                    request_id=request_id,
                    state="released",
                    detail="the worker stopped; the job is back in the queue",
                )
            )
            raise
        except (SsembleError, OSError) as error:
            judgement = judge_error(error)
        except Exception as error:  # a bug: tried again later like any passing cause,
            # never at once by SAQ (that would spend every attempt within a second)
            detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            logger.debug("queue: job %s raised", job.key, exc_info=error)
            judgement = Judgement(verdict=Verdict.RETRY, reason=f"unexpected {detail}")
        return await self._settle(ctx, job, client, request_id, judgement)

    async def _download(
        self, job: Job, client: Client, request_id: str, target: str, chosen: dict[str, Any]
    ) -> DownloadReport:
        """Download with a heartbeat beside it (the job's progress goes with each beat),
        once no other run of the same job is under way (see `_Hold`)."""
        streams: list[DownloadStream] = []
        failure: BaseException | None = None
        report = DownloadReport()
        queue = job.get_queue()
        hold = _Hold(queue, job) if isinstance(queue, _DownloadQueue) else None
        async with anyio.create_task_group() as group:
            if job.heartbeat > 0 or hold is not None:
                group.start_soon(self._beat, job, streams, hold)
            try:
                if hold is not None:
                    await hold.take()
                async with client.stream_downloads(
                    [request_id],
                    target,
                    concurrency=self.clip_concurrency,
                    skip_not_ready=True,
                    **chosen,
                ) as stream:
                    streams.append(stream)
                    async for _ in stream:
                        pass
                report = stream.report()
            except Exception as error:  # re-raised below, outside the group
                failure = error
            finally:
                if hold is not None:
                    with anyio.CancelScope(shield=True):
                        await hold.release()
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure
        return report

    @staticmethod
    async def _beat(job: Job, streams: list[DownloadStream], hold: _Hold | None) -> None:
        every = (job.heartbeat or HOLD) / 3
        told = False
        while True:
            progress = 0.0
            if streams:
                stats = streams[0].statistics()
                if stats.bytes_expected:
                    progress = min(1.0, stats.bytes_done / stats.bytes_expected)
            try:
                if job.heartbeat > 0:
                    await job.update(progress=progress)
                if hold is not None:
                    await hold.renew()
                told = False
            except (RedisError, OSError) as error:
                if not told:
                    logger.warning("queue: heartbeat of job %s not sent (%s)", job.key, error)
                told = True
            await anyio.sleep(every)

    async def _settle(
        self, ctx: dict[str, Any], job: Job, client: Client, request_id: str, judgement: Judgement
    ) -> dict[str, Any]:
        """Act on the judgement: return the result, or raise for SAQ to run the job again
        (after ``job.retry_delay``) or to fail it."""
        counts = dict(judgement.counts)
        verdict = judgement.verdict
        if verdict is Verdict.DONE:
            self._tell(
                JobOutcome(
                    request_id=request_id, state="done", detail=judgement.reason, counts=counts
                )
            )
            return {
                "request_id": request_id,
                "counts": counts,
                "transferred": judgement.transferred,
            }
        if verdict in (Verdict.NOT_READY, Verdict.QUOTA):
            checks = int(job.meta.get("checks", 0)) + 1
            now = _clock.utcnow()
            if verdict is Verdict.NOT_READY:
                try:
                    waiting = await ctx["worker"].queue.count("incomplete")
                except (RedisError, OSError):
                    waiting = 1  # the job's own check at least
                budget = refill(client.quota, now)
                delay = recheck_delay(budget, now, waiting=waiting, checks=checks, policy=self.poll)
            else:
                delay = quota_delay(judgement.reset, now, self.poll)
            job.meta["checks"] = checks
            job.retries += 1  # a check that found nothing to do costs no attempt
            job.retry_delay = delay
            self._tell(
                JobOutcome(
                    request_id=request_id,
                    state="rescheduled",
                    detail=judgement.reason,
                    counts=counts,
                    delay=delay,
                )
            )
            raise _Reschedule(f"{judgement.reason}; next check in {delay:.0f} s")
        if verdict is Verdict.FAILED:
            job.retries = job.attempts  # nothing to try again
            self._tell(
                JobOutcome(
                    request_id=request_id, state="failed", detail=judgement.reason, counts=counts
                )
            )
            raise _JobFailed(judgement.reason)
        job.retry_delay = retry_delay(job.attempts)
        again = job.retryable
        self._tell(
            JobOutcome(
                request_id=request_id,
                state="retrying" if again else "failed",
                detail=judgement.reason if again else f"{judgement.reason} (no attempt left)",
                counts=counts,
                delay=job.retry_delay if again else None,
            )
        )
        raise _JobFailed(judgement.reason)


def worker_settings(
    queue_url: str,
    *,
    dest: str | os.PathLike[str],
    api_key: str | None = None,
    base_url: str | None = None,
    quota_url: str | None = None,
    client: Client | None = None,
    name: str = DEFAULT_QUEUE,
    concurrency: int = 4,
    clip_concurrency: int = 4,
    poll: PollPolicy | None = None,
    sweep_interval: int = 10,
    on_outcome: Callable[[JobOutcome], None] | None = None,
    **download_options: Any,
) -> dict[str, Any]:
    """The SAQ settings of a worker that runs the download jobs.

    Put them in a module and run ``saq mymodule.settings``, build
    ``saq.Worker(**settings)`` yourself, or run ``ssemble worker``. Each worker process
    makes one [`Client`][ssemble_async.Client] at start-up (closed at shutdown) whose quota
    policy never waits: a job the quota holds back is scheduled again instead of holding a
    slot. Start-up fails (before any job is taken) when the queue's Redis cannot be
    reached, or ``dest`` is a bucket that cannot be used.

    Args:
        queue_url: the Redis of the queue (as for
            [`enqueue_requests()`][ssemble_async.distributed.enqueue_requests]).
        dest: where the clips go when a job names no ``dest`` of its own.
        api_key: the API key (default: ``SSEMBLE_API_KEY``).
        base_url: the API root (default: ``SSEMBLE_BASE_URL``, else production).
        quota_url: where the key's quota budget is kept (default: ``SSEMBLE_QUOTA_URL``):
            give every worker the same Redis URL so that together they keep within it.
        client: a client to use instead of making one per worker process; it is left
            open (its owner closes it). Its quota policy should be
            ``QuotaPolicy(on_exhausted="raise")``.
        name: the SAQ queue's name.
        concurrency: jobs (requests) a worker process runs at once.
        clip_concurrency: clip transfers at once within one job.
        poll: how the checks of a request that is not ready are spaced (stretched further
            to keep every waiting job within the quota).
        sweep_interval: seconds between two looks for jobs whose worker died (one worker
            looks at a time).
        on_outcome: called with a [`JobOutcome`][ssemble_async.distributed.JobOutcome] each time a
            job run ends (in the worker's event loop: keep it quick).
        **download_options: defaults for the jobs' download options (a job's own win):
            ``chunk_size``, ``idle_timeout``, ``recompile_wait`` (default here: 0, so that
            re-rendering clips are checked again later instead of held), ``name``,
            ``top``, ``min_score``.

    Returns:
        The settings: ``queue``, ``functions``, ``concurrency``, ``startup``, ``shutdown``,
        ``timers``, ``dequeue_timeout`` and ``shutdown_grace_period_s`` (0: a stopping
        worker hands its jobs back at once; their ``.part`` files are resumed by whoever
        runs them next).

    Raises:
        InvalidArgumentError: an option is unknown or refused, or ``dest`` is an
            ``s3://`` URL without a bucket.
        ConfigurationError: ``queue_url`` is not a Redis URL, or a malformed one; ``dest``
            is ``s3://...`` and the s3 extra is not installed.
    """
    options = _job_options({"recompile_wait": 0.0, **download_options}, role="a worker")
    where = os.fspath(dest)
    _check_dest(where, what="dest")
    if is_s3_url(where):
        require_s3_extra(f"dest {where}")
    logging.getLogger("saq").addFilter(_QUIET)  # (once: a logger keeps one of each filter)
    for what, value in (
        ("concurrency", concurrency),
        ("clip_concurrency", clip_concurrency),
        ("sweep_interval", sweep_interval),
    ):
        if value < 1:
            raise InvalidArgumentError(f"{what} must be 1 or more, got {value}")

    def make_client() -> Client:
        return Client(
            api_key,
            base_url=base_url,
            quota=QuotaPolicy(on_exhausted="raise"),
            quota_url=quota_url,
        )

    worker = _Worker(
        dest=where,
        make_client=None if client is not None else make_client,
        client=client,
        poll=poll or PollPolicy(),
        clip_concurrency=clip_concurrency,
        options=options,
        on_outcome=on_outcome,
    )
    return {
        "queue": _open(queue_url, name),
        "functions": [(JOB_FUNCTION, worker.run)],
        "concurrency": concurrency,
        "startup": worker.startup,
        "shutdown": worker.shutdown,
        "timers": {"sweep": sweep_interval},
        "dequeue_timeout": DEQUEUE_WAIT,
        "shutdown_grace_period_s": 0,
    }
