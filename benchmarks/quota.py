"""Quota cost of waiting: ssemble_async's one watcher against a hand-written reference loop.

Every scenario runs on the built-in fake API (100 calls an hour, a fresh window at the start
unless said; jobs finishing at seeded random times 5-30 minutes after the start) under the
virtual clock of ``instant_waits()``, twice in the same run and each time on a fresh fake:
through the SDK, and through the reference strategy, a plain aiohttp loop doing one
``GET /shorts?sortBy=updatedAt&sortOrder=desc&limit=100`` per round plus one
``GET /shorts/:id`` per job it saw finished. The reference spreads the calls left, less one
per unfinished job, evenly until the reset; it never polls slower than one round per
5 minutes while any call is left, and waits for the reset when none is.

For each it prints the calls by endpoint (list, get, status, other), the total, the 429s,
the requests that did not end well, the virtual minutes until the last job was returned,
the mean detection latency (from a job's finish to the moment it was first reported
finished: a progress report of a wait; downloads report nothing before their clips), the
mean return latency (to the moment it was returned: a wait returning, ``wait_for_many``
yielding it, or the first clip outcome of a download), the mean interval between polling
rounds, and the ratio of the SDK's calls to the reference's. The last lines hold the targets
of issue 9 and whether each is met; "one round" of the latency target is the interval of the
round that saw each job finished (from the round before it): a job missed by a round, or
seen late, breaks it.

The scenarios: 1 job; 20 jobs through ``gather(wait_for_completion)``; 20 through
``download_many(wait=True)``; 20 through the CLI's path (``download --wait``: the quota
waited for, the default wait timeout); 120 through ``wait_for_many``; 20 through the CLI's
path with 5 calls left and the reset in 20 minutes; and a re-run over a folder where 3 of 20
finished requests kept a clip re-rendering (the first run, not counted, ends them
``not_ready``; the re-renders then finish; the second run is counted). The 20-job scenarios
share one seed, so they wait for the same finish times.

The virtual clock jumps once the event loop has idled for a moment; ``--jump-after`` sets
that moment, to tell the watcher's own figures apart from jumps taken while real work (a
file write, a transfer, a loopback call) was under way.

    python benchmarks/quota.py [--quick] [--seed N] [--strict] [--jump-after MS]
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from ssemble_async import (
    Client,
    ClipState,
    QuotaPolicy,
    RequestState,
    RequestStatus,
    ShortsRequest,
    SsembleError,
    _clock,
    instant_waits,
)
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

LIMIT = 100  # the standard tier: calls an hour
CLIP_SIZE = 20_000
FIRST_FINISH, LAST_FINISH = 5 * 60.0, 30 * 60.0
SLOWEST_ROUND = 300.0  # the reference polls at least this often while calls are left
RESET_MARGIN = 1.0  # after a reset before the next call (Date has a resolution of 1 s)
LONG_WAIT = 3 * 3600.0  # the timeout of the SDK's waits (the CLI path keeps its default)
REAL_LIMIT = 60.0  # real seconds one run may take before it is reported as stuck
ROUND_GAP = 1.0  # virtual seconds between two polling calls of different rounds, at least
LIST_QUERY = {"sortBy": "updatedAt", "sortOrder": "desc", "page": "1", "limit": "100"}
FINISHED = ("completed", "failed", "cancelled")
FINISHED_STATES = (RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED)
GOOD_CLIPS = (ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT, ClipState.SKIPPED_ERROR)
ENDPOINTS = {"list": "GET /shorts", "get": "GET /shorts/:id", "status": "GET /shorts/:id/status"}


class CallLog(Counter[str]):
    """The fake's call counter, also noting when (package clock) each call arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, str]] = []

    def __setitem__(self, key: str, value: int) -> None:
        if value > self.get(key, 0):
            self.times.append((_clock.monotonic(), key))
        super().__setitem__(key, value)

    def clear(self) -> None:
        super().clear()
        self.times.clear()


class Notes(logging.Handler):
    """Collects the SDK's warnings (the quota waits it announces, polls that failed)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[record.getMessage()] += 1


@dataclass
class Run:
    """One scenario on one fake: what was returned when, and what failed."""

    fake: FakeSsembleAPI
    log: CallLog
    finishes: dict[str, float]  # request id -> the job's finish, package clock
    folder: Path
    started: float = field(default_factory=_clock.monotonic)
    returned: dict[str, float] = field(default_factory=dict)
    detected: dict[str, float] = field(default_factory=dict)  # first seen finished
    failed: dict[str, str] = field(default_factory=dict)
    rounds: list[float] = field(default_factory=list)  # the reference's own round times

    def seen(self, status: RequestStatus) -> None:
        """A progress report: note when a job was first seen finished."""
        if status.status in FINISHED_STATES:
            self.detected.setdefault(status.request_id, _clock.monotonic())

    def done(self, request_id: str, problem: str | None = None) -> None:
        self.returned.setdefault(request_id, _clock.monotonic())
        if problem is not None:
            self.failed.setdefault(request_id, problem)

    def restart(self) -> None:
        """Count from here on (a run before this one set the scene)."""
        self.fake.reset_counters()
        self.returned.clear()
        self.detected.clear()
        self.failed.clear()
        self.started = _clock.monotonic()

    def client(self, **options: Any) -> Client:
        return Client(self.fake.api_key, base_url=self.fake.base_url, **options)


@dataclass
class Measure:
    calls: Counter[str]
    limited: int
    failed: int
    minutes: float
    latency: float | None  # mean seconds, None when no job finished on the clock
    detection: float | None  # mean seconds from a finish to the moment it was seen
    catching: float | None  # mean interval of the rounds that saw the jobs finished
    round: float | None  # mean seconds between polling rounds
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    real: float = 0.0  # real seconds the run took

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def by_kind(self, kind: str) -> int:
        if kind == "other":
            return self.total - sum(self.calls[e] for e in ENDPOINTS.values())
        return self.calls[ENDPOINTS[kind]]


Runner = Callable[[Run], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    title: str
    jobs: int
    sdk: Runner
    reference: Runner
    remaining: int = LIMIT  # calls left in the window at the start
    reset_in: float = 3600.0  # seconds from the start to the window's reset
    cli: bool = False  # the CLI's path: no request may fail for the quota
    rerun: bool = False  # jobs done before the start; measured on a second run
    timed: bool = True  # jobs finish on the clock (latency and rounds mean something)


# -- the SDK ----------------------------------------------------------------------------------


async def sdk_wait(run: Run) -> None:
    """``gather(wait_for_completion)``: one task per job."""
    async with run.client() as client:

        async def one(request_id: str) -> None:
            try:
                await client.wait_for_completion(
                    request_id, timeout=LONG_WAIT, on_progress=run.seen
                )
            except SsembleError as exc:
                run.done(request_id, f"{type(exc).__name__}: {exc}")
            else:
                run.done(request_id)

        async with anyio.create_task_group() as group:
            for request_id in run.finishes:
                group.start_soon(one, request_id)


async def sdk_wait_many(run: Run) -> None:
    """``wait_for_many``: one iterator over every job."""
    async with run.client() as client:
        async for result in client.wait_for_many(
            run.finishes, timeout=LONG_WAIT, on_progress=run.seen
        ):
            if isinstance(result, ShortsRequest):
                run.done(result.request_id)
            else:
                run.done(result.request_id, f"{type(result).__name__}: {result}")


async def download(run: Run, client: Client, **options: Any) -> None:
    """``download_many``, through the stream it drains, to see each request's first clip land.

    ``download_many(...)`` is ``stream_downloads(...)`` read to its end, then ``report()``.
    """
    async with client.stream_downloads(run.finishes, run.folder, **options) as stream:
        async for outcome in stream:
            bad = None if outcome.state in GOOD_CLIPS else f"{outcome.state.value}"
            run.done(outcome.request_id, bad and f"{bad}: {outcome.message}")
    for request_id, error in stream.report().request_errors.items():
        run.done(request_id, f"{type(error).__name__}: {error}")


async def sdk_download(run: Run) -> None:
    async with run.client() as client:
        await download(run, client, wait=True, wait_timeout=LONG_WAIT)


async def sdk_cli(run: Run) -> None:
    """``ssemble download --wait``: waits for the quota, the CLI's default wait timeout."""
    async with run.client(quota=QuotaPolicy(on_exhausted="wait")) as client:
        await download(run, client, wait=True)


async def rerun_first(run: Run) -> set[str]:
    """The first run (not counted), then the re-renders finish; the requests with work left."""
    async with run.client() as client:
        report = await client.download_many(run.finishes, run.folder, recompile_wait=60)
    left = {o.request_id for o in report.outcomes if o.state not in GOOD_CLIPS}
    for request_id in left:
        for clip in run.fake.jobs[request_id].clips.values():
            if clip.recompiling_left:
                clip.recompiling_left, clip.new_url_due = 0, True
    run.restart()
    return left


async def sdk_rerun(run: Run) -> None:
    await rerun_first(run)
    async with run.client() as client:
        await download(run, client, recompile_wait=60)


# -- the reference ----------------------------------------------------------------------------


class Reference:
    """Raw aiohttp calls that keep the quota from the headers of each answer."""

    def __init__(self, run: Run, session: aiohttp.ClientSession) -> None:
        self.run, self.session = run, session
        self.remaining: int | None = None  # None: not known (before the first answer)
        self.reset_at: float | None = None  # the window's reset, package clock
        self.date: dt.datetime | None = None  # the Date of the last answer

    def until_reset(self) -> float:
        return 0.0 if self.reset_at is None else self.reset_at - _clock.monotonic()

    async def call(self, path: str, params: dict[str, str] | None = None) -> Any:
        while True:
            if self.remaining is not None and self.remaining <= 0:
                await _clock.sleep(max(0.0, self.until_reset()) + RESET_MARGIN)
                self.remaining = None  # refilled; the next answer tells
            fake = self.run.fake
            headers = {"X-API-Key": fake.api_key}
            async with self.session.get(fake.base_url + path, params=params, headers=headers) as r:
                body = await r.json()
                self.learn(r.headers)
                if r.status == 429:
                    self.remaining = 0
                    continue
                r.raise_for_status()
                return body["data"]

    def learn(self, headers: Any) -> None:
        if "X-RateLimit-Remaining-Hour" not in headers:
            return
        self.remaining = int(headers["X-RateLimit-Remaining-Hour"])
        reset = dt.datetime.fromisoformat(headers["X-RateLimit-Reset"].replace("Z", "+00:00"))
        date = parsedate_to_datetime(headers["Date"])  # the server's clock, to the second
        self.date = date
        self.reset_at = _clock.monotonic() + (reset - date).total_seconds()

    def interval(self, owed: int) -> float:
        """Spread the calls left, less the final reads owed, evenly until the reset."""
        until = self.until_reset()
        if self.remaining is None or until <= 0:
            return RESET_MARGIN
        if self.remaining <= 0:
            return until + RESET_MARGIN
        spare = self.remaining - owed
        if spare >= 1:
            return min(until / spare, SLOWEST_ROUND)
        return min(SLOWEST_ROUND, until + RESET_MARGIN)


async def reference_watch(run: Run) -> None:
    """One list call a round, one GET per job seen finished; paced as the docstring says.

    The list shows the 100 requests updated last: when all of a page changed since the
    last round (more than 100 updates in one round: 120 jobs stepping through their
    stages), the next page is read too, down to the first request not changed since.
    """
    pending = set(run.finishes)
    seen: list[str] = []  # finished on the list, its GET not sent yet
    # what the create answers told: no job changed since its creation
    since = max(job.created_at for job in run.fake.jobs.values())
    async with aiohttp.ClientSession() as session:
        api = Reference(run, session)
        while pending:
            run.rounds.append(_clock.monotonic())
            page, newest = 1, None
            while True:
                listed = await api.call("/shorts", {**LIST_QUERY, "page": str(page)})
                newest = newest or api.date
                items = listed["requests"]
                for item in items:
                    rid = item["requestId"]
                    if rid in pending and rid not in seen and item["status"] in FINISHED:
                        seen.append(rid)
                        run.detected.setdefault(rid, _clock.monotonic())
                full = len(items) == int(LIST_QUERY["limit"])
                if not full or updated_at(items[-1]) <= since:
                    break
                page += 1
            since = newest or since
            while seen:
                rid = seen.pop(0)
                request = await api.call(f"/shorts/{rid}")
                ok = request["status"] == "completed"
                run.done(rid, None if ok else f"ended {request['status']}")
                pending.discard(rid)
            if pending:
                await _clock.sleep(api.interval(len(pending)))


def updated_at(item: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(item["updatedAt"].replace("Z", "+00:00"))


async def reference_rerun(run: Run) -> None:
    """Read again only the requests the first run left unfinished; fetch their missing clips."""
    left = await rerun_first(run)
    async with aiohttp.ClientSession() as session:
        api = Reference(run, session)
        for rid in sorted(left):
            request = await api.call(f"/shorts/{rid}")
            for short in request["shorts"]:
                path = run.folder / rid / f"{short['id']}.mp4"
                if short["video_url"] and not path.exists():
                    async with session.get(short["video_url"]) as response:
                        response.raise_for_status()
                        path.write_bytes(await response.read())
            run.done(rid)


# -- measuring --------------------------------------------------------------------------------


def add_jobs(fake: FakeSsembleAPI, scenario: Scenario, seed: int) -> dict[str, float]:
    """The scenario's jobs; request id -> finish time on the package clock."""
    rng = random.Random(seed)
    finishes: dict[str, float] = {}
    if scenario.rerun:  # done already; every seventh (3 of 20) has a clip re-rendering
        for i in range(scenario.jobs):
            clips = [FakeClip(size=CLIP_SIZE)]
            if i % 7 == 3:
                clips.append(FakeClip(size=CLIP_SIZE, recompiling_reads=10_000))
            finishes[fake.add_job(FakeJob(steps=(), clips=clips))] = _clock.monotonic()
        return finishes
    for _ in range(scenario.jobs):
        after = rng.uniform(FIRST_FINISH, LAST_FINISH)
        job = FakeJob(finishes_after=after, clips=(FakeClip(size=CLIP_SIZE),))
        finishes[fake.add_job(job)] = _clock.monotonic() + after
    return finishes


def rounds_of(log: CallLog) -> list[float]:
    """Start times of the SDK's polling rounds: list and status calls, grouped by time."""
    polls = sorted(t for t, key in log.times if key in (ENDPOINTS["list"], ENDPOINTS["status"]))
    return [t for i, t in enumerate(polls) if i == 0 or t - polls[i - 1] > ROUND_GAP]


def catching_round(rounds: list[float], seen: float) -> float | None:
    """The interval of the round that saw a job finished: from the round before it."""
    index = bisect.bisect_right(rounds, seen + ROUND_GAP) - 1
    return rounds[index] - rounds[index - 1] if index >= 1 else None


def mean_gap(times: list[float]) -> float | None:
    return (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None


def summarize(scenario: Scenario, run: Run, notes: Notes, error: str | None) -> Measure:
    """The figures of a run that ended (or failed: ``error``)."""
    end = max(run.returned.values(), default=_clock.monotonic())
    # a re-run returns only the requests with work left; any other run returns every job
    missing = set() if scenario.rerun else set(run.finishes) - set(run.returned)
    latencies = [run.returned[r] - run.finishes[r] for r in run.returned]
    detections = [run.detected[r] - run.finishes[r] for r in run.detected]
    rounds = run.rounds or rounds_of(run.log)
    caught = (catching_round(rounds, seen) for seen in run.detected.values())
    gaps = [gap for gap in caught if gap is not None]
    timed = scenario.timed and bool(latencies)
    failures = [f"{rid}: {why}" for rid, why in run.failed.items()]
    failures += [f"{rid}: never returned" for rid in sorted(missing)]
    return Measure(
        calls=Counter(run.fake.calls),
        limited=sum(run.fake.rate_limited.values()),
        failed=len(run.failed) + len(missing),
        minutes=(end - run.started) / 60,
        latency=sum(latencies) / len(latencies) if timed else None,
        detection=sum(detections) / len(detections) if timed and detections else None,
        catching=sum(gaps) / len(gaps) if timed and gaps else None,
        round=mean_gap(rounds) if timed else None,
        error=error,
        notes=[
            *(f"{n} x {message}" for message, n in notes.seen.most_common(3)),
            *failures[:3],
            *([f"... and {len(failures) - 3} more"] if len(failures) > 3 else []),
        ],
    )


async def measure(scenario: Scenario, runner: Runner, seed: int, notes: Notes) -> Measure:
    """Run ``runner`` on a fresh fake under the virtual clock; its figures."""
    notes.seen.clear()
    folder = Path(tempfile.mkdtemp(prefix="ssemble-quota-"))
    started = time.perf_counter()
    try:
        with instant_waits():
            async with FakeSsembleAPI(hourly_limit=LIMIT) as fake:
                log = fake.calls = CallLog()
                reset = fake.now() + dt.timedelta(seconds=scenario.reset_in)
                fake.set_quota(remaining_hour=scenario.remaining, reset=reset)
                run = Run(fake, log, add_jobs(fake, scenario, seed), folder)
                run.started = _clock.monotonic()
                error = None
                try:
                    with anyio.fail_after(REAL_LIMIT):
                        await runner(run)
                except TimeoutError:
                    virtual = (_clock.monotonic() - run.started) / 60
                    error = f"hung: no end within {REAL_LIMIT:.0f} s real ({virtual:.0f} min)"
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                measured = summarize(scenario, run, notes, error)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    measured.real = time.perf_counter() - started
    return measured


def scenarios(quick: bool) -> list[Scenario]:
    chosen = [
        Scenario("1 job, wait_for_completion", 1, sdk_wait, reference_watch),
        Scenario("20 jobs, gather(wait_for_completion)", 20, sdk_wait, reference_watch),
    ]
    if quick:
        return chosen
    return [
        *chosen,
        Scenario("20 jobs, download_many(wait=True)", 20, sdk_download, reference_watch),
        Scenario("20 jobs, CLI path (download --wait)", 20, sdk_cli, reference_watch, cli=True),
        Scenario("120 jobs, wait_for_many", 120, sdk_wait_many, reference_watch),
        Scenario(
            "20 jobs, 5 calls left, reset in 20 min, CLI path",
            20,
            sdk_cli,
            reference_watch,
            remaining=5,
            reset_in=20 * 60,
            cli=True,
        ),
        Scenario(
            "20 jobs, 5 calls left, reset in 20 min, wait_for_many",
            20,
            sdk_wait_many,
            reference_watch,
            remaining=5,
            reset_in=20 * 60,
        ),
        Scenario(
            "re-run, 3 of 20 with a re-rendered clip",
            20,
            sdk_rerun,
            reference_rerun,
            rerun=True,
            timed=False,
        ),
    ]


# -- the table --------------------------------------------------------------------------------

HEAD = (
    f"  {'scenario':<49} {'who':<4} {'list':>4} {'get':>4} {'stat':>4} {'oth':>4} {'total':>5}"
    f" {'429':>4} {'fail':>4} {'min':>6} {'det s':>6} {'ret s':>6} {'round s':>7}"
    f" {'sdk/ref':>7}"
)


def row(title: str, who: str, m: Measure, ratio: str) -> str:
    if m.error and not m.total:
        return f"  {title:<49} {who:<4} FAILED: {m.error}"
    kinds = " ".join(f"{m.by_kind(k):>4}" for k in ("list", "get", "status", "other"))
    latency = "-" if m.latency is None else f"{m.latency:.0f}"
    detection = "-" if m.detection is None else f"{m.detection:.0f}"
    round_ = "-" if m.round is None else f"{m.round:.0f}"
    line = (
        f"  {title:<49} {who:<4} {kinds} {m.total:>5} {m.limited:>4} {m.failed:>4}"
        f" {m.minutes:>6.1f} {detection:>6} {latency:>6} {round_:>7} {ratio:>7}"
    )
    return line + (f"  ERROR: {m.error}" if m.error else "")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main_async(args: argparse.Namespace) -> bool:
    notes = Notes()
    logger = logging.getLogger("ssemble_async")
    logger.addHandler(notes)
    logger.propagate = False
    results: list[tuple[Scenario, Measure, Measure]] = []
    print(
        f"fake API: {LIMIT} calls/h; jobs finish {FIRST_FINISH / 60:.0f}-{LAST_FINISH / 60:.0f}"
        f" min after the start (seed {args.seed}); virtual clock (instant_waits), jumping"
        f" after {_clock.IDLE_BEFORE_JUMP * 1000:g} ms idle\n"
    )
    print(HEAD)
    footnotes: list[str] = []
    for scenario in scenarios(args.quick):
        # one seed for all: the 20-job scenarios wait for the same finish times
        ours = await measure(scenario, scenario.sdk, args.seed, notes)
        ref = await measure(scenario, scenario.reference, args.seed, notes)
        results.append((scenario, ours, ref))
        ratio = f"{ours.total / ref.total:.2f}x" if ref.total and not ref.error else "-"
        print(row(scenario.title, "sdk", ours, ratio), flush=True)
        print(row("", "ref", ref, ""), flush=True)
        footnotes += [f"  {scenario.title}: {note}" for note in ours.notes]
    print(
        "\n  sdk: ssemble_async; ref: the reference strategy (see the docstring)."
        "\n  list: GET /shorts, get: GET /shorts/:id, stat: GET /shorts/:id/status;"
        " 429: answers refused for the quota;\n  fail: requests that did not complete"
        " (or clips not downloaded); min: virtual minutes until the last job was returned;\n"
        "  det s: mean seconds from a job's finish to the moment it was seen finished (a"
        " progress report; '-' for\n  downloads, which report nothing before their clips);"
        " ret s: to the moment it was returned (a quota\n  spent holds the final reads until"
        " the reset); round s: mean interval between polling rounds."
    )
    if footnotes:
        print("\nSDK warnings and failures:\n" + "\n".join(footnotes))
    real = sum(o.real + r.real for _, o, r in results)
    print(f"\nreal time of the runs: {real:.1f} s")
    return targets(results, quick=args.quick)


def targets(results: list[tuple[Scenario, Measure, Measure]], *, quick: bool) -> bool:
    calls_bad = [
        f"{s.title} {o.total}/{r.total}={o.total / max(1, r.total):.2f}x"
        for s, o, r in results
        if o.error or o.total > 1.05 * r.total
    ]
    limited = sum(o.limited for _, o, _ in results)
    big = [o for s, o, _ in results if s.jobs >= 120]
    big_ok = all(not o.error and not o.failed and o.minutes <= 65 for o in big)
    slow = [
        f"{s.title} {o.detection:.0f} s > {o.catching:.0f} s"
        for s, o, _ in results
        if o.detection is not None and o.catching is not None and o.detection > o.catching
    ]
    cli = [o for s, o, _ in results if s.cli]
    cli_failed = sum(o.failed for o in cli)
    errors = [f"{s.title}: {o.error}" for s, o, _ in results if o.error]
    checks: list[tuple[str, bool | None, str]] = [
        ("calls <= 1.05x the reference in every scenario", not calls_bad, "; ".join(calls_bad)),
        ("0 self-inflicted 429s", limited == 0, f"{limited} in all"),
        (
            "120 jobs done within 65 virtual min",
            big_ok if big else None,
            ", ".join(f"{o.minutes:.1f} min, {o.failed} failed" for o in big),
        ),
        (
            "mean detection latency <= one round (the rounds that saw the jobs end)",
            not slow,
            "; ".join(slow),
        ),
        (
            "the CLI path (--wait) fails no request",
            cli_failed == 0 if cli else None,
            f"{cli_failed} failed" if cli else "",
        ),
    ]
    if errors:
        checks.append(("no run raised or hung", False, "; ".join(errors)))
    print("\ntargets (issue 9)" + (", --quick: a reduced set" if quick else "") + ":")
    for name, ok, detail in checks:
        mark = "-" if ok is None else verdict(ok)
        note = "not run" if ok is None else detail
        print(f"  {mark:<6} {name}" + (f"  ({note})" if note else ""))
    missed = [name for name, ok, _ in checks if ok is False]
    run = sum(ok is not None for _, ok, _ in checks)
    print(
        f"all {run} targets run are met"
        if not missed
        else f"TARGETS MISSED: {len(missed)} of {run}: " + "; ".join(missed)
    )
    return not missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 job and 20 jobs gathered only")
    parser.add_argument("--seed", type=int, default=9, help="seed of the finish times")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--jump-after",
        type=float,
        metavar="MS",
        help="real milliseconds the loop must idle before the virtual clock jumps (default: the"
        " SDK's own); a larger value tells the watcher's figures apart from jumps taken while"
        " real work (a file write, a transfer) was under way",
    )
    args = parser.parse_args()
    if args.jump_after is not None:
        _clock.IDLE_BEFORE_JUMP = args.jump_after / 1000
    met = anyio.run(main_async, args)
    if args.strict and not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
