"""The ``ssemble`` command line: a thin layer over the public API, with no logic of its own.

Exit codes: 0 when everything succeeded; 1 when a clip ended failed or not_ready, or an API
call failed; 2 for usage errors (including a malformed request id, found before any network
call); 130 after Ctrl-C (finished clips are kept, the rest resumes on the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import enum
import json
import logging
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TextIO

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from ssemble_async._client import Client
from ssemble_async._config import PollPolicy, QuotaPolicy
from ssemble_async._converter import converter
from ssemble_async._download_models import ClipState, DownloadReport, DownloadStats
from ssemble_async._errors import (
    APIConnectionError,
    ConfigurationError,
    InvalidArgumentError,
    RateLimitError,
    SsembleError,
)
from ssemble_async._models import GameVideo, MemeHook, MusicTrack, RequestStatus, ShortsRequest
from ssemble_async._pipeline import DownloadStream
from ssemble_async._version import __version__

__all__ = ["main"]

PROG = "ssemble"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MiB = 1024 * 1024


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


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


def report_as_data(report: DownloadReport) -> dict[str, Any]:
    """The download report as JSON-ready data."""
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
                "size": o.size,
                "transferred": o.transferred,
                "title": o.title,
                "viral_score": o.viral_score,
                "message": o.message,
            }
            for o in report.outcomes
        ],
        "request_errors": {
            rid: {"error": type(error).__name__, "message": str(error)}
            for rid, error in report.request_errors.items()
        },
    }


def _size(count: int) -> str:
    if count >= MiB:
        return f"{count / MiB:.1f} MiB"
    if count >= 1024:
        return f"{count / 1024:.0f} KiB"
    return f"{count} B"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def summary_table(report: DownloadReport) -> Table:
    """The end-of-download table: one row per clip, best first."""
    table = Table(title="Clips", title_justify="left")
    for column in ("score", "title", "state", "size"):
        table.add_column(column, justify="right" if column in ("score", "size") else "left")
    table.add_column("file", overflow="fold")
    ordered = sorted(report.outcomes, key=lambda o: -(o.viral_score or 0.0))
    for o in ordered:
        detail = o.state.value if not o.message else f"{o.state.value}: {o.message}"
        table.add_row(
            _score(o.viral_score),
            o.title,
            detail,
            _size(o.size) if o.size else "",
            _shown_path(o.path) if o.size else "",
        )
    return table


def _shown_path(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def counts_line(stats: DownloadStats) -> str:
    """Clips by state, for the live display and the final line."""
    states = stats.states
    parts = [
        f"downloaded {states.get(ClipState.DOWNLOADED, 0)}",
        f"present {states.get(ClipState.ALREADY_PRESENT, 0)}",
        f"skipped {states.get(ClipState.SKIPPED_ERROR, 0)}",
        f"not ready {states.get(ClipState.NOT_READY, 0)}",
        f"failed {states.get(ClipState.FAILED, 0)}",
        f"in flight {len(stats.in_flight)}",
        f"queued {stats.queued}",
        f"re-rendering {stats.waiting}",
    ]
    return " · ".join(parts)


class LiveDisplay:
    """Overall bytes, speed and ETA, a bar per active clip, and counts by state."""

    def __init__(self, console: Console, stream: DownloadStream) -> None:
        self._stream = stream
        self._counts = Text()
        self._overall = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._clips = Progress(
            TextColumn("  {task.description}", style="dim"),
            BarColumn(bar_width=30),
            DownloadColumn(binary_units=True),
            console=console,
        )
        self._total = self._overall.add_task("all clips", total=None)
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self.live = Live(
            Group(self._overall, self._clips, self._counts),
            console=console,
            refresh_per_second=10,
            transient=False,
        )

    def update(self) -> None:
        stats = self._stream.statistics()
        self._overall.update(
            self._total, completed=stats.bytes_done, total=stats.bytes_expected or None
        )
        active = {(t.request_id, t.clip_id): t for t in stats.in_flight}
        for key in list(self._tasks):
            if key not in active:
                self._clips.remove_task(self._tasks.pop(key))
        for key, transfer in active.items():
            if key not in self._tasks:
                title = (transfer.title or transfer.clip_id)[:40]
                self._tasks[key] = self._clips.add_task(title, total=transfer.total)
            self._clips.update(self._tasks[key], completed=transfer.done, total=transfer.total)
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
                    display.update()
                    await anyio.sleep(0.1)

            task_group.start_soon(tick)
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()
        display.update()
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

    def json(self, value: Any) -> None:
        emit_json(value, sys.stdout)

    def print(self, *objects: Any) -> None:
        if not self.quiet:
            self.console.print(*objects)


# -- commands -------------------------------------------------------------------------------


async def run_download(client: Client, args: argparse.Namespace, out: Output) -> int:
    return await download_with_display(
        client,
        _collect_ids(args),
        Path(args.output),
        out,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        idle_timeout=args.idle_timeout,
        recompile_wait=args.recompile_wait,
        overwrite=args.overwrite,
        wait=args.wait,
    )


async def download_with_display(
    client: Client,
    requests: Sequence[str | ShortsRequest],
    dest: Path,
    out: Output,
    **options: Any,
) -> int:
    """Download with the live display (or plain lines, or JSON); return the exit code."""
    async with client.stream_downloads(requests, dest, **options) as stream:
        display = LiveDisplay(out.console, stream) if out.live else None
        async with _refreshing(display), anyio.create_task_group() as watchers:
            watchers.start_soon(_announce_busy_folders, stream)
            async for outcome in stream:
                if display is None and not out.quiet and not out.as_json:
                    note = f"  ({outcome.message})" if outcome.message else ""
                    print(f"{outcome.state.value:<16} {outcome.path}{note}", flush=True)
            watchers.cancel_scope.cancel()
        report = stream.report()
        final = stream.statistics()
    return _finish_download(report, final, out)


async def _announce_busy_folders(stream: DownloadStream) -> None:
    """Say on stderr, once per folder, that another run is writing it and this one waits."""
    told: set[Path] = set()
    while True:
        for folder in stream.statistics().folders_busy:
            if folder not in told:
                told.add(folder)
                print(
                    f"{PROG}: another download is writing into {folder}; waiting for it to finish",
                    file=sys.stderr,
                    flush=True,
                )
        await anyio.sleep(0.2)


def _finish_download(report: DownloadReport, stats: DownloadStats, out: Output) -> int:
    if out.as_json:
        out.json(report_as_data(report))
    else:
        if report.outcomes:
            out.print(summary_table(report))
        for rid, error in report.request_errors.items():
            print(f"{PROG}: request {rid}: {error}", file=sys.stderr)
        out.print(f"{counts_line(stats)} · {_size(report.transferred)} transferred")
    return EXIT_OK if report.ok else EXIT_FAILED


def _collect_ids(args: argparse.Namespace) -> list[str]:
    ids: list[str] = list(args.ids)
    if args.input == "-":
        ids.extend(_ids_in(sys.stdin.read()))
    elif args.input is not None:
        ids.extend(_ids_in(Path(args.input).read_text(encoding="utf-8")))
    if not ids:
        raise UsageError("no request id given: pass ids, or --input FILE (- for stdin)")
    return ids


def _ids_in(text: str) -> list[str]:
    """Request ids from text: whitespace-separated, ``#`` starts a comment."""
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def _request_table(request: ShortsRequest) -> Table:
    heading = f"{request.title or 'Request'} ({request.request_id}, {request.status_raw})"
    table = Table(title=heading)
    for column in ("score", "title", "duration", "state", "clip"):
        table.add_column(column, justify="right" if column in ("score", "duration") else "left")
    for short in request.shorts_by_score():
        state = "error" if short.error else "recompiling" if short.recompiling else "ready"
        if short.error and short.error_message:
            state = f"error: {short.error_message}"
        duration = "-" if short.duration is None else f"{short.duration:g} s"
        table.add_row(_score(short.viral_score), short.title, duration, state, short.id)
    return table


def _status_line(status: RequestStatus) -> str:
    progress = "" if status.progress is None else f" {status.progress:g}%"
    step = f" {status.step}" if status.step else ""
    message = f" - {status.display_message}" if status.display_message else ""
    reason = f" ({status.failure_reason})" if status.failure_reason else ""
    return f"{status.request_id}: {status.status_raw}{progress}{step}{message}{reason}"


async def run_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    request = await client.get_shorts(args.id)
    if out.as_json:
        out.json(request)
    else:
        out.print(_request_table(request))
    return EXIT_OK


async def run_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    status = await client.get_status(args.id)
    if out.as_json:
        out.json(status)
    else:
        out.print(_status_line(status))
    return EXIT_OK


async def wait_with_progress(
    client: Client, request_id: str, limit: float, out: Output
) -> ShortsRequest:
    """``wait_for_completion`` showing each status: a spinner on a terminal, else lines."""
    last: list[str] = []

    def show(status: RequestStatus) -> None:
        line = _status_line(status)
        if spinner is not None:
            spinner.update(line)
        elif not out.quiet and not out.as_json and line != (last[-1] if last else None):
            print(line, flush=True)
        last.append(line)

    spinner = out.console.status("waiting...") if out.live else None
    if spinner is None:
        return await client.wait_for_completion(request_id, timeout=limit, on_progress=show)
    with spinner:
        return await client.wait_for_completion(request_id, timeout=limit, on_progress=show)


async def run_wait(client: Client, args: argparse.Namespace, out: Output) -> int:
    request = await wait_with_progress(client, args.id, args.timeout, out)
    if out.as_json:
        out.json(request)
    else:
        out.print(_request_table(request))
    return EXIT_OK


CREATE_OPTIONS = (
    "url",
    "file_url",
    "start",
    "end",
    "preferred_length",
    "language",
    "caption_language",
    "template_id",
    "no_clipping",
    "hook_title",
    "meme_hook",
    "meme_hook_name",
    "game_video",
    "game_video_name",
    "cta_enabled",
    "cta_text",
    "music",
    "music_name",
    "music_volume",
    "layout",
    "webhook_url",
)


async def run_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    options = {name: getattr(args, name) for name in CREATE_OPTIONS}
    if options["cta_text"] is not None and options["cta_enabled"] is None:
        options["cta_enabled"] = True
    created = await client.create_short(**options)
    if out.as_json:
        out.json(created)
    else:
        out.print(f"created request {created.request_id} ({created.status_raw})")
        if created.estimated_time:
            out.print(f"estimated time: {created.estimated_time}")
        if created.time_adjustment and created.time_adjustment.message:
            out.print(f"note: {created.time_adjustment.message}")
    return EXIT_OK


async def run_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    items = []
    async for item in client.list_requests(
        args.status, sort_by=args.sort_by, sort_order=args.sort_order, page_size=args.page_size
    ):
        items.append(item)
        if args.limit is not None and len(items) >= args.limit:
            break
    if out.as_json:
        out.json(items)
        return EXIT_OK
    table = Table(title=f"{len(items)} requests")
    for column in ("request", "status", "progress", "created", "source"):
        table.add_column(column)
    for item in items:
        created = "" if item.created_at is None else f"{item.created_at:%Y-%m-%d %H:%M}"
        progress = "" if item.progress is None else f"{item.progress:g}%"
        table.add_row(item.request_id, item.status_raw, progress, created, item.url or "")
    out.print(table)
    return EXIT_OK


async def run_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    await client.delete_request(args.id, missing_ok=args.missing_ok)
    if out.as_json:
        out.json({"deleted": args.id})
    else:
        out.print(f"deleted request {args.id}")
    return EXIT_OK


async def run_templates(client: Client, args: argparse.Namespace, out: Output) -> int:
    templates = await client.list_templates()
    if out.as_json:
        out.json(templates)
        return EXIT_OK
    table = Table(title="Caption templates")
    for column in ("template id", "name", "display name", "default"):
        table.add_column(column)
    for t in templates:
        table.add_row(
            t.template_id, t.name or "", t.display_name or "", "yes" if t.is_default else ""
        )
    out.print(table)
    return EXIT_OK


def _asset_command(kind: str) -> Callable[[Client, argparse.Namespace, Output], Awaitable[int]]:
    async def run(client: Client, args: argparse.Namespace, out: Output) -> int:
        items: list[MusicTrack | GameVideo | MemeHook]
        if kind == "music":
            items = [item async for item in client.list_music(page_size=100)]
        elif kind == "game-videos":
            items = [item async for item in client.list_game_videos(page_size=100)]
        else:
            items = [item async for item in client.list_meme_hooks(page_size=100)]
        if out.as_json:
            out.json(items)
            return EXIT_OK
        table = Table(title=f"{len(items)} {kind.replace('-', ' ')}")
        table.add_column("name")
        table.add_column("duration", justify="right")
        for item in items:
            seconds = item.duration if isinstance(item, MusicTrack) else item.video_duration
            table.add_row(item.name, "" if seconds is None else f"{seconds:g} s")
        out.print(table)
        return EXIT_OK

    return run


# -- parser ---------------------------------------------------------------------------------


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    flag_default: Any = argparse.SUPPRESS if suppress else False
    group = parser.add_argument_group("global options")
    group.add_argument(
        "--api-key",
        default=default,
        help="API key (default: $SSEMBLE_API_KEY); never printed",
    )
    group.add_argument(
        "--base-url", default=default, help="API root (default: $SSEMBLE_BASE_URL or production)"
    )
    group.add_argument(
        "--json", action="store_true", default=flag_default, help="machine output on stdout"
    )
    group.add_argument(
        "--quiet", "-q", action="store_true", default=flag_default, help="no progress, no tables"
    )
    group.add_argument(
        "--debug", action="store_true", default=flag_default, help="debug logs and tracebacks"
    )
    group.add_argument(
        "--wait-for-quota",
        action="store_true",
        default=flag_default,
        help="when the hourly quota is spent, wait for its reset (default: stop with an error)",
    )


def _add_poll_interval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="first interval between status polls (default: 10, growing to 60; stretched"
        " further to keep within the hourly quota)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size_arg(text: str) -> int:
    units = {"k": 1024, "m": MiB}
    suffix = text[-1:].lower()
    value = int(float(text[:-1]) * units[suffix]) if suffix in units else int(text)
    if value < 64 * 1024:
        raise argparse.ArgumentTypeError("must be at least 64k")
    return value


EPILOG = "exit codes: 0 all good, 1 a clip or call failed, 2 usage error, 130 interrupted"


def build_parser() -> argparse.ArgumentParser:
    """The ``ssemble`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Command line for the Ssemble AI-clipping API: create clipping jobs, "
        "wait for them and download every rendered clip, verified.",
        epilog="example: ssemble download 665a1b2c3d4e5f6a7b8c9d0e -o clips/\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_globals(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_globals(sub, suppress=True)
        return sub

    download = command(
        "download",
        "Download every clip of one or more requests, verified, into OUTPUT/<request>/.",
        "ssemble download 665a1b2c3d4e5f6a7b8c9d0e --wait -o clips/",
    )
    download.add_argument("ids", nargs="*", metavar="ID", help="request ids")
    download.add_argument("--input", "-i", metavar="FILE", help="read ids from FILE (- = stdin)")
    download.add_argument("--output", "-o", default=".", metavar="DIR", help="default: .")
    download.add_argument("--concurrency", type=_positive_int, default=8, help="default: 8")
    download.add_argument(
        "--chunk-size", type=_size_arg, default=MiB, help="bytes per write, e.g. 1m (default)"
    )
    download.add_argument(
        "--idle-timeout", type=float, default=30.0, help="seconds without data before a retry"
    )
    download.add_argument(
        "--recompile-wait",
        type=float,
        default=600.0,
        help="seconds to wait for re-rendering clips before reporting them not_ready",
    )
    download.add_argument("--overwrite", action="store_true", help="download complete files again")
    download.add_argument("--wait", action="store_true", help="wait for jobs that are not done")
    _add_poll_interval(download)
    download.set_defaults(run=run_download)

    for name, help_text, run in (
        ("get", "Show a request and its clips.", run_get),
        ("status", "Show the progress of a job.", run_status),
    ):
        sub = command(name, help_text, f"ssemble {name} 665a1b2c3d4e5f6a7b8c9d0e")
        sub.add_argument("id", metavar="ID")
        sub.set_defaults(run=run)

    wait = command(
        "wait",
        "Wait for a job to finish, showing its steps; then show its clips.",
        "ssemble wait 665a1b2c3d4e5f6a7b8c9d0e --timeout 1800",
    )
    wait.add_argument("id", metavar="ID")
    wait.add_argument("--timeout", type=float, default=3600.0, help="seconds (default: 3600)")
    _add_poll_interval(wait)
    wait.set_defaults(run=run_wait)

    create = command(
        "create",
        "Start a clipping job (costs one credit); prints its request id.",
        "ssemble create --url https://www.youtube.com/watch?v=dQw4w9WgXcQ --start 0 --end 600",
    )
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="YouTube watch URL")
    source.add_argument("--file-url", help="public video file URL")
    create.add_argument("--start", type=float, required=True, help="seconds")
    create.add_argument("--end", type=float, required=True, help="seconds (1-1200 after start)")
    for option in ("preferred-length", "language", "caption-language", "template-id"):
        create.add_argument(f"--{option}")
    for option in ("meme-hook-name", "game-video-name", "music-name", "layout", "webhook-url"):
        create.add_argument(f"--{option}")
    create.add_argument("--cta-text", help="call-to-action text (turns the CTA on)")
    create.add_argument("--music-volume", type=float, help="0-100")
    for flag in (
        "no-clipping",
        "hook-title",
        "meme-hook",
        "game-video",
        "cta-enabled",
        "music",
    ):
        create.add_argument(f"--{flag}", action="store_const", const=True, default=None)
    create.set_defaults(run=run_create)

    listing = command("list", "List your requests.", "ssemble list --status completed")
    listing.add_argument(
        "--status", choices=("queued", "processing", "completed", "failed", "cancelled")
    )
    listing.add_argument("--sort-by", choices=("createdAt", "updatedAt"))
    listing.add_argument("--sort-order", choices=("asc", "desc"))
    listing.add_argument("--limit", type=_positive_int, help="show at most this many")
    listing.add_argument("--page-size", type=_positive_int, default=20, help="1-100")
    listing.set_defaults(run=run_list)

    delete = command(
        "delete", "Delete a request and its files.", "ssemble delete 665a1b2c3d4e5f6a7b8c9d0e"
    )
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--missing-ok", action="store_true", help="succeed if already gone")
    delete.set_defaults(run=run_delete)

    command("templates", "List the caption templates.", "ssemble templates").set_defaults(
        run=run_templates
    )
    for kind in ("music", "game-videos", "meme-hooks"):
        command(kind, f"List the {kind.replace('-', ' ')}.", f"ssemble {kind} --json").set_defaults(
            run=_asset_command(kind)
        )

    fake = command(
        "fake-server",
        "Run the built-in fake Ssemble API on 127.0.0.1 for your integration tests.",
        "ssemble fake-server --port 8765 --api-key sk_ssemble_test --jobs 3",
    )
    fake.add_argument("--port", type=int, default=0, help="API port (default: any free one)")
    fake.add_argument("--clip-port", type=int, default=0, help="clip host port")
    fake.add_argument("--jobs", type=int, default=2, help="completed jobs to start with")
    fake.set_defaults(run=None, offline="fake-server")

    demo = command(
        "demo",
        "Show the whole product against the built-in fake API: create, wait, download.",
        "ssemble demo -o ssemble-demo/",
    )
    demo.add_argument("--output", "-o", default="ssemble-demo", metavar="DIR")
    demo.set_defaults(run=None, offline="demo")
    return parser


# -- running --------------------------------------------------------------------------------


def _poll(args: argparse.Namespace) -> PollPolicy:
    first = getattr(args, "poll_interval", None)
    if first is None:
        return PollPolicy()
    return PollPolicy(initial=first, maximum=max(first, PollPolicy().maximum))


def _error_line(error: BaseException) -> str:
    if isinstance(error, RateLimitError) and error.rate_limit and error.rate_limit.reset:
        return f"{error} (quota resets at {error.rate_limit.reset:%Y-%m-%d %H:%M:%S} UTC)"
    if isinstance(error, APIConnectionError):
        return f"{error}"
    return str(error)


def _fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


async def _run(args: argparse.Namespace, out: Output) -> int:
    offline = getattr(args, "offline", None)
    if offline is not None:
        from ssemble_async._demo import run_demo, run_fake_server  # noqa: PLC0415 - the fake

        if offline == "demo":
            return await run_demo(Path(args.output), out)
        return await run_fake_server(args, out)
    quota = QuotaPolicy(on_exhausted="wait" if args.wait_for_quota else "raise")
    async with Client(
        args.api_key, base_url=args.base_url, quota=quota, poll=_poll(args)
    ) as client:
        code: int = await args.run(client, args, out)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ssemble`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        logging.basicConfig(
            level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
    out = Output(as_json=args.json, quiet=args.quiet)
    try:
        return asyncio.run(_run(args, out))
    except KeyboardInterrupt:
        if getattr(args, "offline", None) == "fake-server":
            return EXIT_OK  # Ctrl-C is how a server is stopped
        print(
            f"{PROG}: interrupted; finished clips are kept, run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (UsageError, InvalidArgumentError, ConfigurationError, OSError) as error:
        if args.debug:
            traceback.print_exc()
        _fail(str(error), EXIT_USAGE)
    except SsembleError as error:
        if args.debug:
            traceback.print_exc()
        _fail(_error_line(error), EXIT_FAILED)
