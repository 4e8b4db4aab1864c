"""What the commands print: JSON, tables, the live download display, one-line notices."""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from ssemble_async._cli._parser import EXIT_FAILED, EXIT_OK, PROG
from ssemble_async._cli._rate import (
    LogProgress,
    RateMeter,
    figures,
    format_duration,
    format_eta,
    format_pair,
    format_rate,
    format_size,
    progress_interval,
    waiting_for,
)
from ssemble_async._client import Client
from ssemble_async._converter import converter
from ssemble_async._download_models import ClipState, DownloadReport, DownloadStats
from ssemble_async._errors import (
    RateLimitError,
    RequestNotReadyError,
)
from ssemble_async._models import ShortsRequest
from ssemble_async._pipeline import DownloadStream, unique_requests

#: The clip states that leave a file on disk.
ON_DISK = (ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT)


# -- output ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def emit_json(value: Any, out: TextIO) -> None:
    """Write a model (or plain data) as JSON to ``out``."""
    data = converter.unstructure(value)
    out.write(json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n")


def report_as_data(
    report: DownloadReport, describe: Callable[[BaseException], str] = str
) -> dict[str, Any]:
    """The download report as JSON-ready data (``describe`` words the request errors)."""
    return {
        "ok": report.ok,
        "counts": {state.value: count for state, count in report.counts().items()},
        "transferred": report.transferred,
        "outcomes": [
            {
                "request_id": o.request_id,
                "clip_id": o.clip_id,
                "state": o.state.value,
                "path": None if o.path is None else str(o.path),
                "url": o.url,
                "size": o.size,
                "transferred": o.transferred,
                "title": o.title,
                "viral_score": o.viral_score,
                "message": o.message,
            }
            for o in report.outcomes
        ],
        "request_errors": {
            rid: {
                "error": type(error).__name__,
                "state": "not_ready" if isinstance(error, RequestNotReadyError) else "error",
                "message": describe(error),
            }
            for rid, error in report.request_errors.items()
        },
    }


#: A size as every table and line of the command line shows it (MiB, KiB below one MiB).
_size = format_size


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def fitted(console: Console, table: Table, rows: Sequence[tuple[str, str]]) -> RenderableType:
    """``table`` when it fits the console; else one entry per row of it, for a narrow
    terminal: a line of its figures and title (cut to the width), then its file alone on
    the next line, whole whenever the width allows (a table would fold the path mid-id, or
    cut it, and a path is what people copy).

    ``rows``: per row of the table, the first line's text and the file ("" for none).
    """
    unbounded = console.options.update_width(100_000)  # the width the table asks for
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        return table
    lines: list[Text] = []
    if table.title is not None:
        lines.append(Text(str(table.title), style="table.title", no_wrap=True))
    for head, where in rows:
        lines.append(Text(head, no_wrap=True, overflow="ellipsis"))
        if where:
            lines.append(Text(f"    {where}", overflow="fold"))
    return Group(*lines)


def summary_table(report: DownloadReport) -> Table:
    """The end-of-download table: one row per clip, best first."""
    table = Table(title="Clips", title_justify="left")
    for column in ("score", "title", "state", "size"):
        table.add_column(column, justify="right" if column in ("score", "size") else "left")
    table.add_column("file", overflow="fold")
    for score, title, detail, size, where in _summary_rows(report):
        table.add_row(score, title, detail, size, where)
    return table


def _summary_rows(report: DownloadReport) -> list[tuple[str, str, str, str, str]]:
    """(score, title, state, size, file) of each clip, best first."""
    ordered = sorted(report.outcomes, key=lambda o: -(o.viral_score or 0.0))
    return [
        (
            _score(o.viral_score),
            o.title,
            o.state.value if not o.message else f"{o.state.value}: {o.message}",
            _size(o.size) if o.size else "",
            (o.url or _shown_path(o.path)) if o.size else "",
        )
        for o in ordered
    ]


def summary(report: DownloadReport, console: Console) -> RenderableType:
    """The end-of-download summary: `summary_table`, or its rows one by one when the
    table does not fit (`fitted`)."""
    rows = [
        ("  ".join(part for part in (f"{score:>5}", state, size, title) if part), where)
        for score, title, state, size, where in _summary_rows(report)
    ]
    return fitted(console, summary_table(report), rows)


def _shown_path(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def counts_line(stats: DownloadStats) -> str:
    """Clips by state, for the live display and the final line: ``downloaded`` always,
    the other counts when not 0 (the line fits 80 columns)."""
    states = stats.states
    counts = [
        ("present", states.get(ClipState.ALREADY_PRESENT, 0)),
        ("skipped", states.get(ClipState.SKIPPED_ERROR, 0)),
        ("not ready", states.get(ClipState.NOT_READY, 0)),
        ("failed", states.get(ClipState.FAILED, 0)),
        ("in flight", len(stats.in_flight)),
        ("queued", stats.queued),
        ("re-rendering", stats.waiting),
    ]
    parts = [f"downloaded {states.get(ClipState.DOWNLOADED, 0)}"]
    parts += [f"{name} {count}" for name, count in counts if count]
    if stats.requests_pending:  # a request being read, or waited for (--wait)
        parts.append(waiting_for(stats))
    return " · ".join(parts)


class LiveDisplay:
    """Overall bytes, speed and ETA, a bar per active clip, and counts by state.

    Speed and ETA come from a `RateMeter` over the bytes received, not from the
    progress bars (whose own estimate starts over whenever a total changes, and totals
    grow as each clip's size becomes known); sizes of clips not started yet are estimated
    at the mean known size, marked ``~``.
    """

    def __init__(self, console: Console, stream: DownloadStream) -> None:
        self._stream = stream
        self._meter = RateMeter()
        self._counts = Text()
        self._overall = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[size]}", markup=False),
            TextColumn("{task.fields[speed]}", markup=False),
            TextColumn("ETA {task.fields[eta]}", markup=False),
            console=console,
        )
        self._clips = Progress(
            TextColumn("  {task.description}", style="dim", markup=False),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[size]}", markup=False),
            console=console,
        )
        self._total = self._overall.add_task("all clips", total=None, size="", speed="", eta="?")
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self.live = Live(
            Group(self._overall, self._clips, self._counts),
            console=console,
            refresh_per_second=10,
            transient=False,
        )

    def update(self, now: float) -> None:
        """Redraw from the stream's statistics at ``now`` (monotonic seconds)."""
        stats = self._stream.statistics()
        self._meter.observe(now, stats.bytes_received)
        shown = figures(stats, self._meter.rate(now))
        self._overall.update(
            self._total,
            completed=shown.done,
            total=shown.total or None,
            size=format_pair(shown.done, shown.total, estimated=bool(shown.unknown)),
            speed=format_rate(shown.rate),
            eta=format_eta(shown),
        )
        active = {(t.request_id, t.clip_id): t for t in stats.in_flight}
        for key in list(self._tasks):
            if key not in active:
                self._clips.remove_task(self._tasks.pop(key))
        for key, transfer in active.items():
            if key not in self._tasks:
                title = (transfer.title or transfer.clip_id)[:30]
                self._tasks[key] = self._clips.add_task(title, total=transfer.total, size="")
            self._clips.update(
                self._tasks[key],
                completed=transfer.done,
                total=transfer.total,
                size=format_pair(transfer.done, transfer.total),
            )
        self._counts.plain = counts_line(stats)


@asynccontextmanager
async def _refreshing(display: LiveDisplay | None) -> AsyncIterator[None]:
    if display is None:
        yield
        return
    with display.live:
        async with anyio.create_task_group() as task_group:

            async def tick() -> None:
                while True:
                    display.update(time.monotonic())
                    await anyio.sleep(0.1)

            task_group.start_soon(tick)
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()
        display.update(time.monotonic())
        display.live.refresh()


class Output:
    """Where a command writes: JSON, a terminal with live displays, or plain lines."""

    def __init__(self, *, as_json: bool, quiet: bool) -> None:
        self.as_json = as_json
        self.quiet = quiet
        self.console = Console(highlight=False, soft_wrap=False)
        if not self.console.is_terminal:  # a log or a pipe: long lines beat wrapped tables
            self.console = Console(highlight=False, soft_wrap=False, width=200)
        self.live = self.console.is_terminal and not quiet and not as_json
        #: One line for an error; ``main`` sets one that knows the command line's flags.
        self.describe_error: Callable[[BaseException], str] = str

    def json(self, value: Any) -> None:
        emit_json(value, sys.stdout)

    def print(self, *objects: Any) -> None:
        if not self.quiet:
            self.console.print(*objects)

    def result(self, text: str) -> None:
        """An essential result, printed even with ``-q``: one value per line, never wrapped
        (an id or a path is copied whole)."""
        print(text, flush=True)


class Notices:
    """One-line notes on stderr (``ssemble: ...``), each said once per run.

    A quota wait is told once however many tasks wait for it ("quota spent; waiting until
    22:00 UTC (19 min)"): a note naming a reset within a minute of one already told is the
    same wait. Anything else is told once per text. ``sys.stderr`` is looked up for every
    line, so that a live display on a terminal (which redirects it) prints the note above
    itself.
    """

    _QUOTA_WAIT = re.compile(r"^quota spent; waiting until (?P<until>.+) \(\d+ min\)$")
    _CLOCK = re.compile(r"(?P<hour>\d\d):(?P<minute>\d\d) UTC$")

    def __init__(self) -> None:
        self._said: set[str] = set()
        self._waits: list[int | None] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._said.clear()
            self._waits.clear()

    def _told_wait(self, until: str) -> bool:
        """Whether a wait for the same reset was told; remembers this one if not."""
        clock = self._CLOCK.search(until)
        minute = int(clock["hour"]) * 60 + int(clock["minute"]) if clock else None
        for told in self._waits:
            if told is None or minute is None:
                return True
            apart = abs(told - minute) % 1440
            if min(apart, 1440 - apart) <= 1:
                return True
        self._waits.append(minute)
        return False

    def say(self, text: str) -> None:
        """Print ``ssemble: text`` on stderr unless this run said it already."""
        wait = self._QUOTA_WAIT.match(text)
        with self._lock:
            if wait is not None:
                if self._told_wait(wait["until"]):
                    return
            elif text in self._said:
                return
            else:
                self._said.add(text)
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


notices = Notices()


class NoticeHandler(logging.Handler):
    """Sends the library's warnings to `notices`: the message only, no traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            notices.say(record.getMessage())
        except Exception:  # a logging handler never raises into the code that logs
            self.handleError(record)


async def download_with_display(
    client: Client,
    requests: Sequence[str | ShortsRequest],
    dest: str | os.PathLike[str],
    out: Output,
    **options: Any,
) -> int:
    """Download with the live display (or plain lines, or JSON); return the exit code.

    Plain lines (stdout is not a terminal) are a start line once the requests are read, a
    progress line every ``SSEMBLE_PROGRESS_INTERVAL`` seconds (10 by default), a line per
    clip as it ends, then the summary.
    """
    plain = not out.live and not out.quiet and not out.as_json
    interval = progress_interval(os.environ) if plain else 0.0  # a bad value: before any call
    started = time.monotonic()
    async with client.stream_downloads(requests, dest, **options) as stream:
        display = LiveDisplay(out.console, stream) if out.live else None
        log = _LogLines(stream, len(unique_requests(requests)), interval) if plain else None
        async with _refreshing(display), anyio.create_task_group() as watchers:
            watchers.start_soon(_announce_busy_folders, stream)
            if log is not None:
                watchers.start_soon(log.run, min(0.1, interval))
            async for outcome in stream:
                if log is not None:
                    log.flush()  # a start line due comes before the clip's line
                    note = f"  ({outcome.message})" if outcome.message else ""
                    where = outcome.url or outcome.path
                    print(f"{outcome.state.value:<16} {where}{note}", flush=True)
                elif out.quiet and not out.as_json and outcome.state in ON_DISK:
                    out.result(outcome.url or str(outcome.path))  # a file on disk, an object
            watchers.cancel_scope.cancel()
        report = stream.report()
        final = stream.statistics()
    return _finish_download(report, final, out, time.monotonic() - started)


class _LogLines:
    """The start and progress lines of a log, printed on stdout between the clip lines."""

    def __init__(self, stream: DownloadStream, requests: int, interval: float) -> None:
        self._stream = stream
        self._requests = requests
        self._progress = LogProgress(interval, time.monotonic())

    def flush(self) -> None:
        """Print the lines due now."""
        read = self._requests - len(self._stream.request_errors)
        for line in self._progress.lines(time.monotonic(), self._stream.statistics(), read):
            print(line, flush=True)

    async def run(self, tick: float) -> None:
        """Print the lines as they fall due, looking every ``tick`` seconds."""
        while True:
            self.flush()
            await anyio.sleep(tick)


async def _announce_busy_folders(stream: DownloadStream) -> None:
    """Say on stderr, once per folder, that another run is writing it and this one waits."""
    told: set[Path] = set()
    while True:
        for folder in stream.statistics().folders_busy:
            if folder not in told:
                told.add(folder)
                notices.say(f"another download is writing into {folder}; waiting for it to finish")
        await anyio.sleep(0.2)


def request_error_line(rid: str, error: BaseException, out: Output) -> str:
    """The line of a request a download could not read: ``not_ready: ...`` for one not done
    yet, else ``error: ...`` like every other error (naming the request)."""
    line = out.describe_error(error)
    if isinstance(error, RequestNotReadyError):
        return f"not_ready: {line}"
    return f"error: {line}" if rid in line else f"error: request {rid}: {line}"


def _finish_download(
    report: DownloadReport, stats: DownloadStats, out: Output, elapsed: float
) -> int:
    if out.as_json:
        out.json(report_as_data(report, out.describe_error))
    else:
        if report.outcomes:
            out.print(summary(report, out.console))
        quota_errors = {
            rid: error
            for rid, error in report.request_errors.items()
            if isinstance(error, RateLimitError)
        }
        for rid, error in report.request_errors.items():
            if rid in quota_errors:
                continue
            print(f"{PROG}: {request_error_line(rid, error, out)}", file=sys.stderr)
        if quota_errors:  # one line for all of them: they share one cause and one remedy
            rid, error = next(iter(quota_errors.items()))
            which = f"request {rid}" if len(quota_errors) == 1 else f"{len(quota_errors)} requests"
            print(
                f"{PROG}: error: {which} not read: {out.describe_error(error)}",
                file=sys.stderr,
            )
        moved = f"{_size(report.transferred)} transferred"
        if report.transferred:
            mean = report.transferred / max(elapsed, 1e-3)
            moved += f" in {format_duration(elapsed)} ({format_rate(mean)})"
        out.print(f"{counts_line(stats)} · {moved}")
    return EXIT_OK if report.ok else EXIT_FAILED
