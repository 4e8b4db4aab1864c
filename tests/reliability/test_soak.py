"""The interruption soak: never a corrupt or a lost clip, whatever stops a download, wherever.

Each trial scripts a multi-request download (2-3 requests of 2-3 clips; most clips a few
hundred KiB to a few MiB, some no larger than the 64 KiB chunk; written in 64 KiB batches,
so many writes happen) and interrupts it at a random cut point, in one of these ways:

``cancel``
    ``client.download_many`` in a cancel scope, cancelled from another task when the clip
    host has sent a random number of bytes (or after a random time);
``sigint`` / ``sigkill``
    the ``ssemble download`` command, a real process, signalled at a random byte count;
``sigint_slow_disk`` / ``sigkill_slow_disk``
    the same command on a slow disk (``_slow_disk_child.py``: every write under the
    destination pauses a few ms and is split in two), so that the signal very likely lands
    *inside* a write;
``disk_full``
    the destination is a small tmpfs that fills up; then it grows (skipped, and counted as
    skipped, where no tmpfs can be mounted);
``give_up``
    the clip host drops transfers after a few dozen KiB, then answers 503 until the run
    gives up; then it heals.

Then the same download runs again, to completion, against a healthy host, and the trial
checks what users rely on:

* every final ``<request_id>/<clip_id>.mp4`` is sha256-identical to the bytes the host
  serves (the fake's clip bytes never repeat, so a doubled or shifted block shows), after
  the interrupted run as well as after the second one; no ``.part`` is left; the second
  run's report is ok;
* no completed byte is fetched twice: a clip whose final file the first run left comes back
  ``already_present`` with nothing transferred, and a ``.part`` the first run left and
  recorded as resumable (``_support.resumable_parts``) is resumed from its size: the
  host's ``Range`` start for it equals that size, and the bytes sent for it equal the rest
  of the clip. Clips no larger than the chunk size are not resumable by design;
* giving up keeps progress: a clip the first run gave up on after the host sent it more
  than two chunks has a resumable ``.part``. (How much of it: what aiohttp held unread
  when a body ended early is lost to any client, so only its presence is checked.)

Bytes are counted by the fake clip host (``FakeSsembleAPI.clip_bytes_sent``), not by the
code under test. The bookkeeping format is read only by ``_support.resumable_parts``.

Replay and scale with environment variables (``nox -s soak`` runs the long variant):

``SSEMBLE_SOAK_SEED``
    the seed (default: random; it is printed, and named in every failure);
``SSEMBLE_SOAK_TRIALS``
    how many trials (default 56, eight of each kind); the kinds take turns;
``SSEMBLE_SOAK_TRIAL``
    run only this trial of the seed (replays one failure);
``SSEMBLE_SOAK_KINDS``
    a comma-separated subset of the kinds;
``SSEMBLE_SOAK_MIN_INTERRUPTIONS``
    fail unless at least this many runs were really interrupted (default: half the
    trials run).
"""

from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from ssemble_async import Client, ClipState, DownloadReport, RetryPolicy, instant_waits
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import bytes_sent, environment, resumable_parts, sent_since, sha

pytestmark = pytest.mark.anyio

KINDS = (
    "cancel",
    "sigint",
    "sigkill",
    "sigint_slow_disk",
    "sigkill_slow_disk",
    "disk_full",
    "give_up",
)
CHUNK = 64 * 1024
CHILD = Path(__file__).with_name("_slow_disk_child.py")
RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, jitter=0)
RUN_TIMEOUT = 120.0  # seconds for any one run: a bound, never a measure
SIGINT_GRACE = 30.0  # seconds a Ctrl-C'd command may take to stop
DROP_PAUSE = 0.05  # seconds before the last byte of a dropped response
SLOW_WRITE_MS = ("0.5", "3")  # each half of a write under the slow disk pauses this long
Key = tuple[str, str]  # (request id, clip id)


@attrs.frozen
class Settings:
    seed: int
    trials: int
    kinds: tuple[str, ...]
    only: int | None
    min_interruptions: int | None


def settings() -> Settings:
    env = os.environ
    seed = int(env.get("SSEMBLE_SOAK_SEED") or secrets.randbits(32))
    kinds = tuple(k.strip() for k in env.get("SSEMBLE_SOAK_KINDS", ",".join(KINDS)).split(","))
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"SSEMBLE_SOAK_KINDS: unknown kinds {sorted(unknown)}; known: {KINDS}")
    only = env.get("SSEMBLE_SOAK_TRIAL")
    least = env.get("SSEMBLE_SOAK_MIN_INTERRUPTIONS")
    return Settings(
        seed=seed,
        trials=int(env.get("SSEMBLE_SOAK_TRIALS", "56")),
        kinds=kinds,
        only=None if only is None else int(only),
        min_interruptions=None if least is None else int(least),
    )


@attrs.define
class Tally:
    """What the trials of one kind did and found."""

    trials: int = 0
    skipped: int = 0
    interrupted: int = 0
    resumed: int = 0  # .part files resumed from their size
    kept: int = 0  # complete files the second run left alone
    restarted: int = 0  # clips fetched again from zero (not resumable: allowed)
    fetched_twice: int = 0  # bytes the host sent more than once, for any reason
    lost: int = 0  # bytes of complete files or resumable .parts fetched again
    corrupt: int = 0  # final files whose bytes are not the clip's
    failed: int = 0  # trials with a problem


@attrs.define
class Trial:
    index: int
    kind: str
    seed: int
    rng: random.Random
    fake: FakeSsembleAPI
    dest: Path
    logs: Path
    rids: list[str]
    clips: dict[Path, Key]  # final path -> (request id, clip id)
    concurrency: int
    problems: list[str] = attrs.field(factory=list)
    first: dict[Path, str] = attrs.field(factory=dict)  # path -> the first run's outcome

    def note_first_run(self, report: DownloadReport) -> None:
        for o in report.outcomes:
            if o.path is not None:
                self.first[o.path] = o.state.value + (f" ({o.message})" if o.message else "")

    def problem(self, text: str) -> None:
        self.problems.append(
            f"trial {self.index} ({self.kind}; replay: SSEMBLE_SOAK_SEED={self.seed}"
            f" SSEMBLE_SOAK_TRIAL={self.index}): {text}"
        )

    def size(self, key: Key) -> int:
        return len(self.fake.clip_bytes(*key))

    @property
    def total(self) -> int:
        return sum(self.size(key) for key in self.clips.values())


def scripted_jobs(fake: FakeSsembleAPI, rng: random.Random) -> list[str]:
    """Add 2-3 completed jobs of 2-3 clips of random sizes, ids drawn from ``rng``."""
    rids = []
    for _ in range(rng.randint(2, 3)):
        clips = []
        for _ in range(rng.randint(2, 3)):
            small = rng.random() < 0.15
            size = rng.randint(20_000, CHUNK) if small else rng.randint(200_000, 2_600_000)
            clip_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            score = round(rng.uniform(1, 99), 1)
            clips.append(FakeClip(clip_id=clip_id, size=size, viral_score=score))
        request_id = f"{rng.getrandbits(96):024x}"
        rids.append(fake.add_job(FakeJob(request_id=request_id, steps=(), clips=tuple(clips))))
    return rids


def total_sent(fake: FakeSsembleAPI) -> int:
    return sum(fake.clip_bytes_sent.values())


async def until_sent(fake: FakeSsembleAPI, target: int) -> None:
    """Return once the clip host has sent ``target`` bytes in all."""
    while True:  # polled: the fake has no event for it, and a few ms do not matter
        if total_sent(fake) >= target:
            return
        await anyio.sleep(0.002)


@asynccontextmanager
async def client_of(fake: FakeSsembleAPI) -> AsyncIterator[Client]:
    async with Client(fake.api_key, base_url=fake.base_url, retry=RETRY) as client:
        yield client


async def download(trial: Trial) -> DownloadReport:
    async with client_of(trial.fake) as client:
        with anyio.fail_after(RUN_TIMEOUT):
            return await client.download_many(
                trial.rids, trial.dest, concurrency=trial.concurrency, chunk_size=CHUNK
            )


# -- the first run, interrupted -------------------------------------------------------------


async def cancel_task(trial: Trial, disk: Path | None) -> bool:
    """Cancel ``download_many`` from another task at a random byte count (or time)."""
    rng = trial.rng
    by_time = rng.random() < 0.25
    delay = rng.uniform(0.0, 0.8)
    target = total_sent(trial.fake) + rng.randint(1, int(trial.total * 0.95))
    async with client_of(trial.fake) as client:
        with anyio.fail_after(RUN_TIMEOUT), anyio.CancelScope() as scope:
            async with anyio.create_task_group() as task_group:

                async def cut() -> None:
                    if by_time:
                        await anyio.sleep(delay)
                    else:
                        await until_sent(trial.fake, target)
                    scope.cancel()

                task_group.start_soon(cut)
                await client.download_many(
                    trial.rids, trial.dest, concurrency=trial.concurrency, chunk_size=CHUNK
                )
                task_group.cancel_scope.cancel()
    return scope.cancelled_caught


async def signal_command(trial: Trial, signum: int, *, slow_disk: bool) -> bool:
    """Run ``ssemble download`` and send it ``signum`` at a random byte count."""
    rng, fake = trial.rng, trial.fake
    cli = [
        *("download", *trial.rids, "-o", str(trial.dest), "--json"),
        *("--chunk-size", "64k", "--concurrency", str(trial.concurrency)),
    ]
    if slow_disk:
        trial.dest.mkdir(parents=True, exist_ok=True)
        seed = f"{trial.seed}:{trial.index}"
        command = [sys.executable, str(CHILD), str(trial.dest), *SLOW_WRITE_MS, seed, "--", *cli]
    else:
        command = [sys.executable, "-m", "ssemble_async", *cli]
    target = total_sent(fake) + rng.randint(1, int(trial.total * 0.95))
    name = signal.Signals(signum).name
    out, err = trial.logs / f"{trial.index}.out", trial.logs / f"{trial.index}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await anyio.open_process(
            command, env=environment(fake), stdin=None, stdout=stdout, stderr=stderr
        )
        async with process:
            with anyio.fail_after(RUN_TIMEOUT):
                while process.returncode is None:
                    if total_sent(fake) >= target:
                        break
                    await anyio.sleep(0.003)
            if process.returncode is None:
                process.send_signal(signum)
            with anyio.move_on_after(SIGINT_GRACE):
                await process.wait()
            if process.returncode is None:
                trial.problem(f"the command did not end within {SIGINT_GRACE:g} s of {name}")
                process.kill()
                with anyio.fail_after(10):
                    await process.wait()
    stderr_text = err.read_text(errors="replace")
    if signum == signal.SIGINT and "Traceback" in stderr_text:
        trial.problem(f"{name} mid-download printed a traceback:\n{stderr_text[-2000:]}")
    return process.returncode != 0


async def sigint(trial: Trial, disk: Path | None) -> bool:
    return await signal_command(trial, signal.SIGINT, slow_disk=False)


async def sigkill(trial: Trial, disk: Path | None) -> bool:
    return await signal_command(trial, signal.SIGKILL, slow_disk=False)


async def sigint_slow_disk(trial: Trial, disk: Path | None) -> bool:
    return await signal_command(trial, signal.SIGINT, slow_disk=True)


async def sigkill_slow_disk(trial: Trial, disk: Path | None) -> bool:
    return await signal_command(trial, signal.SIGKILL, slow_disk=True)


async def remount(disk: Path, size: int) -> None:
    await anyio.run_process(["mount", "-o", f"remount,size={size}", str(disk)])


async def disk_full(trial: Trial, disk: Path | None) -> bool:
    """Download onto a tmpfs too small for the clips, then let it grow."""
    assert disk is not None
    await remount(disk, int(trial.total * trial.rng.uniform(0.15, 0.85)))
    report = await download(trial)
    trial.note_first_run(report)
    await remount(disk, 64 * trial.total)
    failed = report.by_state(ClipState.FAILED)
    for outcome in failed:
        if "disk is full" not in (outcome.message or ""):
            trial.problem(f"a failure on a full disk that does not say so: {outcome.message}")
    return bool(failed)


async def give_up(trial: Trial, disk: Path | None) -> bool:
    """Drop transfers after a few dozen KiB, then answer 503 until the run gives up.

    Each dropped response pauses before its last byte, so that the client has read the
    bytes sent before the connection ends (aiohttp discards what it holds unread when a
    body ends early): what the host sent is then what the client could keep.
    """
    rng, fake = trial.rng, trial.fake
    cut = rng.choice((rng.randint(8_000, CHUNK), rng.randint(CHUNK, 3 * CHUNK)))
    drop = ClipFault(truncate_at=cut, stall_at=cut - 1, stall_seconds=DROP_PAUSE)
    fake.inject_clip_fault(attrs.evolve(drop, times=rng.randint(2, 25)))
    fake.inject_clip_fault(ClipFault(status=503, times=10**9))
    try:
        report = await download(trial)
        trial.note_first_run(report)
    finally:
        fake._clip_faults.clear()  # the host heals (the fake has no public switch for it)
    return bool(report.by_state(ClipState.FAILED))


RUNS: dict[str, Callable[[Trial, Path | None], Coroutine[Any, Any, bool]]] = {
    "cancel": cancel_task,
    "sigint": sigint,
    "sigkill": sigkill,
    "sigint_slow_disk": sigint_slow_disk,
    "sigkill_slow_disk": sigkill_slow_disk,
    "disk_full": disk_full,
    "give_up": give_up,
}


# -- the second run, and the checks ---------------------------------------------------------

_RANGE_START = re.compile(r"bytes=(\d+)-")


def range_start(header: str | None) -> int:
    """Where a GET with this ``Range`` header starts (0 without one)."""
    match = _RANGE_START.fullmatch(header or "")
    return int(match.group(1)) if match else 0


def check_finals(trial: Trial, tally: Tally, when: str) -> set[Path]:
    """Every file under a final name holds its clip's bytes; returns the good ones."""
    good = set()
    for path, key in trial.clips.items():
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        want = trial.fake.clip_bytes(*key)
        if sha(data) == sha(want):
            good.add(path)
            continue
        tally.corrupt += 1
        same_size = "the right size" if len(data) == len(want) else f"{len(data)} bytes"
        trial.problem(
            f"CORRUPT {when}: {path.relative_to(trial.dest)} has {same_size} but not the"
            f" {len(want)} bytes the host served (first difference at byte"
            f" {first_difference(data, want)})"
        )
    return good


def first_difference(data: bytes, want: bytes) -> int:
    for index, (a, b) in enumerate(zip(data, want, strict=False)):
        if a != b:
            return index
    return min(len(data), len(want))


async def run_trial(trial: Trial, tally: Tally, disk: Path | None) -> None:
    fake = trial.fake
    before = bytes_sent(fake)
    interrupted = await RUNS[trial.kind](trial, disk)
    tally.interrupted += interrupted
    first_run = sent_since(fake, before)

    # What the interrupted run left.
    complete = check_finals(trial, tally, "after the interrupted run")
    resumable = resumable_parts(trial.dest)
    path_of_part = {path.with_name(path.name + ".part"): path for path in trial.clips}
    if strays := set(resumable) - set(path_of_part):
        trial.problem(f"resumable .part files that belong to no clip: {sorted(map(str, strays))}")
    if trial.kind == "give_up":
        for path, key in trial.clips.items():
            part = path.with_name(path.name + ".part")
            fetched = first_run.get(key, 0)
            if path in complete or trial.size(key) <= CHUNK or fetched <= 2 * CHUNK:
                continue
            if part not in resumable:
                trial.problem(
                    f"LOST PROGRESS: the run gave up on {path.relative_to(trial.dest)} after"
                    f" the host sent {fetched} of its {trial.size(key)} bytes, and left no"
                    " resumable .part"
                )

    # The same download again, healthy host, to completion.
    seen = len(fake.clip_requests)
    before = bytes_sent(fake)
    report = await download(trial)
    second_run = sent_since(fake, before)
    first_get: dict[str, int] = {}  # clip file name -> where its first GET started
    for request in fake.clip_requests[seen:]:
        name = request.path.rsplit("/", 1)[-1]
        if request.method == "GET" and name not in first_get:
            first_get[name] = range_start(request.headers.get("Range"))

    if not report.ok or len(report.outcomes) != len(trial.clips):
        counts = {state.value: n for state, n in report.counts().items()}
        messages = sorted({o.message or "" for o in report.outcomes if o.message})
        trial.problem(
            f"the second run did not end ok: {counts}, {len(report.outcomes)} outcomes for"
            f" {len(trial.clips)} clips, request errors {report.request_errors}; {messages}"
        )
    check_finals(trial, tally, "after the second run")
    for path in trial.clips:
        if not path.exists():
            trial.problem(f"{path.relative_to(trial.dest)} missing after the second run")
    if leftovers := sorted(str(p.relative_to(trial.dest)) for p in trial.dest.rglob("*.part")):
        trial.problem(f".part files left after the second run: {leftovers}")

    outcomes = {o.path: o for o in report.outcomes}
    for path, key in trial.clips.items():
        size, fetched = trial.size(key), second_run.get(key, 0)
        outcome = outcomes.get(path)
        state = None if outcome is None else outcome.state.value
        part = path.with_name(path.name + ".part")
        if path in complete:
            done = outcome is not None and outcome.transferred == 0
            if state == ClipState.ALREADY_PRESENT.value and done and fetched == 0:
                tally.kept += 1
                continue
            tally.lost += fetched
            trial.problem(
                f"LOST PROGRESS: {path.relative_to(trial.dest)} was complete after the"
                f" interrupted run, but the second run fetched {fetched} bytes of it again"
                f" (state {state}; in the interrupted run: {trial.first.get(path, 'no outcome')})"
            )
        elif part in resumable:
            kept = resumable[part]
            start = first_get.get(f"{key[1]}.mp4")  # None: not requested (it was complete)
            if kept > size:
                tally.lost += fetched
                trial.problem(
                    f"a .part recorded as resumable holds {kept} bytes, more than the clip's"
                    f" {size}: bytes were written twice ({part.relative_to(trial.dest)}; the"
                    f" second run then fetched {fetched} bytes of it; state {state})"
                )
                continue
            if start in (None, kept) and fetched == size - kept:
                tally.resumed += kept > 0
                continue
            tally.lost += max(0, fetched - (size - kept))
            asked = "did not ask for it" if start is None else f"asked from byte {start}"
            trial.problem(
                f"LOST PROGRESS: {part.relative_to(trial.dest)} held {kept} resumable bytes"
                f" of {size}; the second run {asked} and fetched {fetched} bytes"
                f" (expected {size - kept} from byte {kept}; state {state})"
            )
        elif fetched:
            tally.restarted += first_run.get(key, 0) > 0
    tally.fetched_twice += max(0, sum(first_run.values()) + sum(second_run.values()) - trial.total)


def summary(tallies: dict[str, Tally], seed: int, elapsed: float) -> str:
    columns = (
        *("kind", "trials", "skipped", "interrupted", "resumed", "kept"),
        *("refetched", "MiB twice", "lost bytes", "corrupt", "failed"),
    )
    rows = [columns]
    for kind, t in [*tallies.items(), ("total", total_of(tallies.values()))]:
        rows.append(
            (
                kind,
                *map(str, (t.trials, t.skipped, t.interrupted, t.resumed, t.kept, t.restarted)),
                f"{t.fetched_twice / 2**20:.1f}",
                *map(str, (t.lost, t.corrupt, t.failed)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        f"interruption soak: seed {seed}, {elapsed:.0f} s"
        f" (replay: SSEMBLE_SOAK_SEED={seed}; one trial: SSEMBLE_SOAK_TRIAL=N)",
        "  resumed: .part files resumed from their size; kept: complete files left alone;"
        " refetched: clips fetched again from zero (not resumable); lost: bytes of complete"
        " files or resumable .parts fetched again",
    ]
    for row in rows:
        cells = (cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def total_of(tallies: Any) -> Tally:
    total = Tally()
    for tally in tallies:
        for field in attrs.fields(Tally):
            setattr(total, field.name, getattr(total, field.name) + getattr(tally, field.name))
    return total


async def test_interruption_soak(tmp_path: Path, make_tmpfs: Callable[[str], Path]) -> None:
    config = settings()
    print(f"\ninterruption soak: seed {config.seed} (SSEMBLE_SOAK_SEED={config.seed})")
    disk: Path | None = None
    if "disk_full" in config.kinds:
        try:
            disk = make_tmpfs("1m")
        except pytest.skip.Exception as exc:  # the other kinds still run
            print(f"interruption soak: disk_full skipped: {exc}")
    logs = tmp_path / "logs"
    logs.mkdir()
    tallies = {kind: Tally() for kind in config.kinds}
    problems: list[str] = []
    started = time.monotonic()
    with instant_waits():
        for index in range(config.trials):
            if config.only is not None and index != config.only:
                continue
            kind = config.kinds[index % len(config.kinds)]
            tally = tallies[kind]
            if kind == "disk_full" and disk is None:
                tally.skipped += 1
                continue
            rng = random.Random(f"{config.seed}:{index}")
            if disk is not None and kind == "disk_full":
                for entry in disk.iterdir():
                    shutil.rmtree(entry)
                dest = disk / f"t{index}"
            else:
                dest = tmp_path / f"t{index}"
            async with FakeSsembleAPI() as fake:
                rids = scripted_jobs(fake, rng)
                trial = Trial(
                    index=index,
                    kind=kind,
                    seed=config.seed,
                    rng=rng,
                    fake=fake,
                    dest=dest,
                    logs=logs,
                    rids=rids,
                    clips={
                        dest / rid / f"{clip.clip_id}.mp4": (rid, clip.clip_id)
                        for rid in rids
                        for clip in fake.jobs[rid].job.clips
                    },
                    concurrency=rng.randint(1, 4),
                )
                tally.trials += 1
                await run_trial(trial, tally, disk)
            tally.failed += bool(trial.problems)
            problems.extend(trial.problems)
    table = summary(tallies, config.seed, time.monotonic() - started)
    print(table)

    ran = sum(t.trials for t in tallies.values())
    interrupted = sum(t.interrupted for t in tallies.values())
    least = ran // 2 if config.min_interruptions is None else config.min_interruptions
    shown = "\n".join(problems[:20])
    if len(problems) > 20:
        shown += f"\n... and {len(problems) - 20} more"
    assert not problems, f"{len(problems)} problems in {ran} trials:\n{shown}\n{table}"
    assert interrupted >= least, f"only {interrupted} runs were interrupted\n{table}"
