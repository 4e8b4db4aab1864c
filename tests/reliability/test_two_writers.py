"""Two downloads into one folder at the same time: one writer per request folder.

A cron job that overlaps itself, two tasks of one service: two runs download the same
requests into the same folder at once (two ``ssemble download`` processes; then two
``download_many`` tasks in one process, on one shared client or on two clients). The clip
host is throttled so that the runs really overlap, and the second run sometimes lists the
requests in the other order. Whatever the interleaving:

* both runs end ok, and every file is byte-identical to what the host served;
* no run reports ``downloaded`` for a clip it did not write: each clip is ``downloaded``
  by exactly one run and ``already_present`` for the other, and the host sent each clip's
  bytes once;
* the bookkeeping afterwards marks every clip complete (``_support.complete_clips``), and
  no ``.part`` is left;
* a third run fetches nothing: every outcome ``already_present``, the host's byte counter
  unchanged.

Problems are collected over all rounds and reported together. ``SSEMBLE_TWO_WRITERS_ROUNDS``
sets the rounds of each kind (default 3; ``nox -s soak`` runs more).
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from ssemble_async import Client, RetryPolicy
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import complete_clips, environment, sha

pytestmark = pytest.mark.anyio

ROUNDS = int(os.environ.get("SSEMBLE_TWO_WRITERS_ROUNDS", "3"))
REQUESTS, CLIPS = 2, 3
BYTES_PER_SECOND = 1_000_000  # per transfer: one run alone takes about a second
CONCURRENCY = 3
RUN_TIMEOUT = 120.0  # a bound, never a measure
RETRY = RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1, jitter=0)


@attrs.define
class Round:
    """One round: its requests, where the clips go, and what went wrong."""

    name: str
    fake: FakeSsembleAPI
    dest: Path
    rids: list[str]
    problems: list[str] = attrs.field(factory=list)

    @property
    def clips(self) -> dict[Path, tuple[str, str]]:
        return {
            self.dest / rid / f"{clip.clip_id}.mp4": (rid, clip.clip_id)
            for rid in self.rids
            for clip in self.fake.jobs[rid].job.clips
        }

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.name}: {text}")

    def orders(self, number: int) -> tuple[list[str], list[str]]:
        """The request lists of the two runs: the second reversed in odd rounds."""
        return self.rids, self.rids[::-1] if number % 2 else self.rids


def new_round(name: str, fake: FakeSsembleAPI, dest: Path, rng: random.Random) -> Round:
    rids = [
        fake.add_job(
            FakeJob(
                steps=(),
                clips=tuple(FakeClip(size=rng.randint(400_000, 800_000)) for _ in range(CLIPS)),
            )
        )
        for _ in range(REQUESTS)
    ]
    return Round(name=name, fake=fake, dest=dest, rids=rids)


def outcomes_of_report(report: Any) -> dict[Path, str]:
    """Final path -> state, from a ``DownloadReport``."""
    return {o.path: o.state.value for o in report.outcomes if o.path is not None}


def check_round(round_: Round, runs: Sequence[dict[Path, str] | None], sent: int) -> None:
    """The checks after both runs: files, who downloaded what, bytes, bookkeeping."""
    clips = round_.clips
    total = sum(len(round_.fake.clip_bytes(*key)) for key in clips.values())
    for path, key in clips.items():
        want = round_.fake.clip_bytes(*key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            round_.problem(f"{path.relative_to(round_.dest)} is missing")
            continue
        if sha(data) != sha(want):
            zeros = " (all zeros)" if not data.strip(b"\0") else ""
            round_.problem(
                f"CORRUPT: {path.relative_to(round_.dest)} holds {len(data)} bytes{zeros},"
                f" not the {len(want)} bytes the host served"
            )
    if all(run is not None for run in runs):
        for path in clips:
            states = [run.get(path) for run in runs if run is not None]
            if sorted(map(str, states)) != ["already_present", "downloaded"]:
                round_.problem(
                    f"{path.relative_to(round_.dest)}: the two runs reported {states};"
                    " expected one 'downloaded' (the run that wrote it) and one"
                    " 'already_present'"
                )
        downloaded = sum(
            state == "downloaded" for run in runs if run is not None for state in run.values()
        )
        if downloaded != len(clips):
            round_.problem(
                f"the runs reported {downloaded} clips 'downloaded' in all, for {len(clips)} clips"
            )
    if sent != total:
        round_.problem(
            f"the host sent {sent} bytes for {total} bytes of clips: each clip must be fetched once"
        )
    for rid in round_.rids:
        want_ids = {clip.clip_id for clip in round_.fake.jobs[rid].job.clips}
        marked = complete_clips(round_.dest / rid)
        if marked != want_ids:
            round_.problem(
                f"the bookkeeping of {rid} marks {len(marked & want_ids)} of"
                f" {len(want_ids)} clips complete (missing: {sorted(want_ids - marked)})"
            )
    if parts := sorted(str(p.relative_to(round_.dest)) for p in round_.dest.rglob("*.part")):
        round_.problem(f".part files left: {parts}")


async def third_run(round_: Round) -> None:
    """Run again, unthrottled: nothing is fetched, every clip already present."""
    fake = round_.fake
    before = dict(fake.clip_bytes_sent)
    throttle, fake.clip_bytes_per_second = fake.clip_bytes_per_second, None
    try:
        async with Client(fake.api_key, base_url=fake.base_url, retry=RETRY) as client:
            with anyio.fail_after(RUN_TIMEOUT):
                report = await client.download_many(round_.rids, round_.dest)
    finally:
        fake.clip_bytes_per_second = throttle
    states = sorted({o.state.value for o in report.outcomes})
    if states != ["already_present"] or len(report.outcomes) != len(round_.clips):
        round_.problem(
            f"a third run reported {states} for {len(report.outcomes)} outcomes; expected"
            f" {len(round_.clips)} clips all 'already_present'"
        )
    if fake.clip_bytes_sent != before:
        fetched = sum(fake.clip_bytes_sent.values()) - sum(before.values())
        round_.problem(f"a third run fetched {fetched} bytes again")


async def test_two_processes_into_one_folder(tmp_path: Path) -> None:
    rng = random.Random(2)
    problems: list[str] = []
    overlaps = 0
    async with FakeSsembleAPI(clip_bytes_per_second=BYTES_PER_SECOND) as fake:
        for number in range(ROUNDS):
            round_ = new_round(f"processes, round {number}", fake, tmp_path / f"r{number}", rng)
            logs = [tmp_path / f"r{number}-{run}" for run in ("a", "b")]
            commands = [
                [
                    *(sys.executable, "-m", "ssemble_async", "download", *rids),
                    *("-o", str(round_.dest), "--json", "--chunk-size", "64k"),
                    *("--concurrency", str(CONCURRENCY)),
                ]
                for rids in round_.orders(number)
            ]
            before = sum(fake.clip_bytes_sent.values())
            overlapped = False
            processes = []
            for command, log in zip(commands, logs, strict=True):
                out, err = log.with_suffix(".out"), log.with_suffix(".err")
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    processes.append(
                        await anyio.open_process(
                            command, env=environment(fake), stdout=stdout, stderr=stderr
                        )
                    )
            try:
                with anyio.fail_after(RUN_TIMEOUT):
                    while any(p.returncode is None for p in processes):
                        both_running = all(p.returncode is None for p in processes)
                        if both_running and sum(fake.clip_bytes_sent.values()) > before:
                            overlapped = True  # both alive while clip bytes flowed
                        await anyio.sleep(0.01)
                    codes = [await p.wait() for p in processes]
            finally:
                for process in processes:
                    if process.returncode is None:
                        process.kill()
                    await process.aclose()
            overlaps += overlapped
            runs: list[dict[Path, str] | None] = []
            for code, log in zip(codes, logs, strict=True):
                stderr = log.with_suffix(".err").read_text(errors="replace")
                try:
                    report = json.loads(log.with_suffix(".out").read_text())
                except ValueError:
                    round_.problem(f"no JSON report (exit {code}): {stderr[-1500:]}")
                    runs.append(None)
                    continue
                if code != 0 or not report["ok"]:
                    failed = sorted(
                        {o["message"] for o in report["outcomes"] if o["state"] == "failed"}
                    )
                    counts = {state: n for state, n in report["counts"].items() if n}
                    round_.problem(f"a run ended {code}, counts {counts}: {failed}")
                runs.append({Path(o["path"]): o["state"] for o in report["outcomes"]})
            sent = sum(fake.clip_bytes_sent.values()) - before
            check_round(round_, runs, sent)
            await third_run(round_)
            problems.extend(round_.problems)
    print(f"\ntwo processes: {ROUNDS} rounds, {overlaps} overlapped, {len(problems)} problems")
    assert overlaps, "the two processes never ran at the same time"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("shared_client", [True, False], ids=["one-client", "two-clients"])
async def test_two_tasks_into_one_folder(tmp_path: Path, shared_client: bool) -> None:
    rng = random.Random(3)
    problems: list[str] = []
    async with FakeSsembleAPI(clip_bytes_per_second=BYTES_PER_SECOND) as fake:
        for number in range(ROUNDS):
            round_ = new_round(f"tasks, round {number}", fake, tmp_path / f"r{number}", rng)
            before = sum(fake.clip_bytes_sent.values())
            runs: list[dict[Path, str] | None] = [None, None]

            async def run(
                index: int,
                client: Client,
                rids: list[str],
                round_: Round,
                runs: list[dict[Path, str] | None],
            ) -> None:
                try:
                    report = await client.download_many(
                        rids, round_.dest, concurrency=CONCURRENCY, chunk_size=64 * 1024
                    )
                except Exception as exc:  # reported with the rest
                    round_.problem(f"run {index} raised {exc!r}")
                    return
                runs[index] = outcomes_of_report(report)
                if not report.ok:
                    failed = sorted({o.message or "" for o in report.outcomes if o.message})
                    counts = {state.value: n for state, n in report.counts().items() if n}
                    round_.problem(f"run {index} not ok: {counts}: {failed}")

            async with (
                Client(fake.api_key, base_url=fake.base_url, retry=RETRY) as one,
                Client(fake.api_key, base_url=fake.base_url, retry=RETRY) as two,
            ):
                clients = (one, one) if shared_client else (one, two)
                with anyio.fail_after(RUN_TIMEOUT):
                    async with anyio.create_task_group() as task_group:
                        for index, rids in enumerate(round_.orders(number)):
                            task_group.start_soon(run, index, clients[index], rids, round_, runs)
            sent = sum(fake.clip_bytes_sent.values()) - before
            check_round(round_, runs, sent)
            await third_run(round_)
            problems.extend(round_.problems)
    assert not problems, "\n".join(problems)
