"""The ``ssemble`` command line: a thin layer over the public API, with no logic of its own.

Exit codes: 0 when everything succeeded; 1 when the command ran and could not do its job (a
clip ended failed or not_ready, an API call failed, a spent quota included, a wait timed
out, the disk failed); 2 for usage errors only (bad flags or values, a malformed request id,
an unwritable ``-o``, an unsupported ``--quota-url``: all found before any network call);
130 after Ctrl-C (download commands keep finished clips, the rest resumes on the next run).
Errors are one line in the command line's terms: `_error_line()` words the library's
hints with flags and commands.

Every run that talks to the API keeps the last quota figures it saw (``X-RateLimit-*``) in a
small JSON file of the user's cache directory, named by a SHA-256 hash of the API key and
base URL (never the key itself), so that ``ssemble quota`` can show them without a call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import select
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
import attrs
from rich.table import Table

from ssemble_async import _clock
from ssemble_async._cli._auth import (
    find_key,
    forget_key,
    read_new_key,
    show_key,
    store_new_key,
)
from ssemble_async._cli._output import (
    NoticeHandler,
    Output,
    _score,
    _shown_path,
    _size,
    download_with_display,
    fitted,
    notices,
    request_error_line,
)
from ssemble_async._cli._parser import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CommandError,
    UsageError,
    _fail,
)
from ssemble_async._client import Client
from ssemble_async._config import PollPolicy, QuotaPolicy
from ssemble_async._download_models import DownloadPlan, PlannedAction
from ssemble_async._errors import (
    HINT_API_KEY,
    HINT_NOT_FOUND,
    HINT_WRONG_BASE_URL,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    RateLimitError,
    RequestNotReadyError,
    ResponseValidationError,
    SsembleError,
    WaitTimeoutError,
    with_hint,
)
from ssemble_async._governor import PAST_DEADLINE, LocalGovernor
from ssemble_async._models import GameVideo, MemeHook, MusicTrack, RequestStatus, ShortsRequest
from ssemble_async._quota import QuotaBudget
from ssemble_async._ratelimit import RateLimit
from ssemble_async._s3 import INSTALL_HINT, is_s3_url, parse_s3_url

__all__ = ["run_command"]


logger = logging.getLogger("ssemble_async")


# -- commands -------------------------------------------------------------------------------


async def run_s3_cleanup(args: argparse.Namespace, out: Output) -> int:
    """``ssemble s3-cleanup s3://bucket/prefix``: abort the stale unfinished uploads."""
    try:
        parse_s3_url(args.url)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if importlib.util.find_spec("aiobotocore") is None:
        raise UsageError(f"{args.url}: {INSTALL_HINT}")
    from ssemble_async._s3_sink import abort_stale_uploads  # noqa: PLC0415 - the s3 extra

    aborted = await abort_stale_uploads(
        args.url,
        older_than=dt.timedelta(hours=args.older_than),
        endpoint_url=args.s3_endpoint_url,
    )
    if out.as_json:
        out.json(
            {
                "aborted": [
                    {
                        "url": upload.url,
                        "upload_id": upload.upload_id,
                        "initiated": upload.initiated.isoformat(),
                    }
                    for upload in aborted
                ]
            }
        )
        return EXIT_OK
    for upload in aborted:
        if out.quiet:
            out.result(upload.url)
        else:
            started = upload.initiated.strftime("%Y-%m-%d %H:%M UTC")
            out.print(f"aborted {upload.url} (started {started})")
    if not out.quiet:
        older = f"{args.older_than:g} hour{'s' * (args.older_than != 1)}"
        count = f"{len(aborted)} unfinished upload{'s' * (len(aborted) != 1)}"
        out.print(f"{count} older than {older} aborted under {args.url}")
    return EXIT_OK


async def run_listen(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Serve the webhook receiver until interrupted; one line per job handled."""
    from aiohttp import web  # noqa: PLC0415 - the server stack only for this command

    from ssemble_async.webhooks import WebhookOutcome, webhook_app  # noqa: PLC0415

    def report(outcome: WebhookOutcome) -> None:
        counts = {} if outcome.report is None else outcome.report.counts()
        counts = {state: n for state, n in counts.items() if n}
        line = {
            "request_id": outcome.request_id,
            "status": outcome.status.value,
            "source": outcome.source,
            "counts": {state.value: count for state, count in counts.items()},
            "error": None if outcome.error is None else out.describe_error(outcome.error),
        }
        if out.as_json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        elif not out.quiet:
            done = ", ".join(f"{n} {state.value}" for state, n in counts.items()) or "no clips"
            problem = f" ({line['error']})" if line["error"] else ""
            print(f"{outcome.request_id} {outcome.status.value}: {done}{problem}", flush=True)

    app = webhook_app(
        client, dest=Path(args.output), on_outcome=report, path=args.path, reconcile=True
    )
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        port = runner.addresses[0][1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{port}{args.path}"
        if out.as_json:
            print(json.dumps({"webhook_url": url}), flush=True)
        else:
            print(url, flush=True)
            if not out.quiet:
                notices.say(f"listening; downloads go to {args.output}; Ctrl-C stops")
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()  # stops the receiver: running downloads stay resumable
    return EXIT_OK


def _destination(output: str) -> str | Path:
    """``-o`` as the library takes it: ``s3://...`` as it is, anything else a folder."""
    return output if is_s3_url(output) else Path(output)


async def run_download(client: Client, args: argparse.Namespace, out: Output) -> int:
    choice = {"name": args.name, "top": args.top, "min_score": args.min_score}
    if args.dry_run:
        plan = await client.plan_downloads(
            args.request_ids,
            _destination(args.output),
            concurrency=args.concurrency,
            overwrite=args.overwrite,
            **choice,
        )
        return show_plan(plan, _destination(args.output), out, waits=args.wait)
    return await download_with_display(
        client,
        args.request_ids,
        _destination(args.output),
        out,
        concurrency=args.concurrency,
        chunk_size=args.chunk_size,
        idle_timeout=args.idle_timeout,
        recompile_wait=args.recompile_wait,
        overwrite=args.overwrite,
        wait=args.wait,
        skip_not_ready=not args.wait,  # download what is ready, report the others not_ready
        **choice,
    )


_FETCHED = (PlannedAction.DOWNLOAD, PlannedAction.RESUME)


def plan_as_data(
    plan: DownloadPlan, describe: Callable[[BaseException], str] = str
) -> dict[str, Any]:
    """A dry run's plan as JSON-ready data (``describe`` words the request errors)."""
    return {
        "dry_run": True,
        "to_fetch": plan.to_fetch,
        "unknown_sizes": plan.unknown_sizes,
        "counts": {action.value: len(plan.by_action(action)) for action in PlannedAction},
        "clips": [
            {
                "request_id": clip.request_id,
                "clip_id": clip.clip_id,
                "action": clip.action.value,
                "path": None if clip.path is None else str(clip.path),
                "url": clip.url,
                "size": clip.size,
                "to_fetch": clip.to_fetch,
                "title": clip.title,
                "viral_score": clip.viral_score,
            }
            for clip in plan.clips
        ],
        "request_errors": {
            rid: {
                "error": type(error).__name__,
                "state": "not_ready" if isinstance(error, RequestNotReadyError) else "error",
                "message": describe(error),
            }
            for rid, error in plan.request_errors.items()
        },
    }


def plan_summary(plan: DownloadPlan, dest: str | Path) -> str:
    """One line: how many clips and bytes a download would fetch, and the rest."""
    fetched = [clip for clip in plan.clips if clip.action in _FETCHED]
    size = _size(plan.to_fetch)
    if plan.unknown_sizes:
        size = f"{size} + {plan.unknown_sizes} of unknown size"
    parts = [f"would fetch {len(fetched)} clip{'s' * (len(fetched) != 1)} ({size}) into {dest}"]
    for action, said in (
        (PlannedAction.RESUME, "of them resumed"),
        (PlannedAction.PRESENT, "already present"),
        (PlannedAction.SKIP_ERROR, "skipped (failed to render)"),
        (PlannedAction.NOT_READY, "re-rendering"),
    ):
        if count := len(plan.by_action(action)):
            parts.append(f"{count} {said}")
    return "; ".join(parts) + "; nothing was written"


def show_plan(plan: DownloadPlan, dest: str | Path, out: Output, *, waits: bool) -> int:
    """Print a dry run's plan; exit 1 when a request cannot be planned (0 with ``--wait``
    for requests that are only not done yet: the download would wait for them)."""
    waited = {
        rid
        for rid, error in plan.request_errors.items()
        if waits and isinstance(error, RequestNotReadyError)
    }
    if out.as_json:
        out.json(plan_as_data(plan, out.describe_error))
    elif out.quiet:
        for clip in plan.clips:
            if clip.action in _FETCHED:
                out.result(clip.url or str(clip.path))
    else:
        if plan.clips:
            table = Table(title="Dry run: nothing is written", title_justify="left")
            for column in ("action", "score", "title", "to fetch"):
                table.add_column(column, justify="right" if column != "title" else "left")
            table.add_column("file", overflow="fold")
            rows = []
            for clip in plan.clips:
                fetch = "?" if clip.to_fetch is None else _size(clip.to_fetch)
                fetch = fetch if clip.action in _FETCHED else ""
                where = clip.url or _shown_path(clip.path)
                score = _score(clip.viral_score)
                table.add_row(clip.action.value, score, clip.title, fetch, where)
                head = (f"{clip.action.value:>8}", f"{score:>5}", fetch, clip.title)
                rows.append(("  ".join(part for part in head if part), where))
            out.print(fitted(out.console, table, rows))
        out.print(plan_summary(plan, dest))
    for rid, error in plan.request_errors.items():
        if rid in waited:
            notices.say(f"request {rid} is not done yet: the download would wait for it")
            continue
        print(f"{PROG}: {request_error_line(rid, error, out)}", file=sys.stderr)
    return EXIT_OK if len(waited) == len(plan.request_errors) else EXIT_FAILED


def _collect_ids(args: argparse.Namespace) -> list[str]:
    ids: list[str] = list(args.ids)
    if args.input == "-":
        read: list[str] | None = getattr(args, "stdin_ids", None)  # see _read_terminal()
        ids.extend(_ids_in(sys.stdin.read()) if read is None else read)
    elif args.input is not None:
        try:
            text = Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"-i {args.input}: cannot read the ids ({reason})") from error
        ids.extend(_ids_in(text))
    if not ids:
        raise UsageError("no request id given: pass ids, or --input FILE (- for stdin)")
    return ids


def _ids_in(text: str) -> list[str]:
    """Request ids from text: whitespace-separated, ``#`` starts a comment."""
    return [word for line in text.splitlines() for word in line.split("#", 1)[0].split()]


def _id_column(table: Table, name: str, ids: Iterable[str]) -> None:
    """A column of ids: never cut or wrapped (the one value people copy); others shrink."""
    table.add_column(name, no_wrap=True, min_width=max((len(i) for i in ids), default=0))


def _text_column(table: Table, name: str, *, justify: Literal["left", "right"] = "left") -> None:
    """A column that gives way to the ids on a narrow terminal (wrapped, or cut with an
    ellipsis where a word is too long)."""
    table.add_column(name, justify=justify, overflow="ellipsis")


def _request_table(request: ShortsRequest) -> Table:
    heading = f"{request.title or 'Request'} ({request.request_id}, {request.status_raw})"
    table = Table(title=heading)
    for column in ("score", "title", "duration", "state"):
        _text_column(table, column, justify="right" if column in ("score", "duration") else "left")
    _id_column(table, "clip", (short.id for short in request.shorts))
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


def _show_request(request: ShortsRequest, out: Output) -> None:
    """A request as JSON, its clip ids best first (``-q``), or its table."""
    if out.as_json:
        out.json(request)
    elif out.quiet:
        for short in request.shorts_by_score():
            out.result(short.id)
    else:
        out.print(_request_table(request))


async def run_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    _show_request(await client.get_shorts(args.id), out)
    return EXIT_OK


async def run_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    status = await client.get_status(args.id)
    if out.as_json:
        out.json(status)
    elif out.quiet:
        out.result(status.status_raw)
    else:
        out.print(_status_line(status))
    return EXIT_OK


async def wait_with_progress(
    client: Client, request_id: str, limit: float, out: Output
) -> ShortsRequest:
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
    _show_request(request, out)
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
    elif out.quiet:
        out.result(created.request_id)
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
    if out.quiet:
        for item in items:
            out.result(item.request_id)
        return EXIT_OK
    table = Table(title=f"{len(items)} requests")
    _id_column(table, "request", (item.request_id for item in items))
    for column in ("status", "progress", "created", "source"):
        _text_column(table, column)
    for item in items:
        created = "" if item.created_at is None else f"{item.created_at:%Y-%m-%d %H:%M}"
        progress = "" if item.progress is None else f"{item.progress:g}%"
        table.add_row(item.request_id, item.status_raw, progress, created, item.url or "")
    out.print(table)
    return EXIT_OK


async def run_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    gone = False
    try:
        await client.delete_request(args.id)
    except NotFoundError as error:
        # a 404 that is no envelope is a wrong --base-url, never a request already gone
        if not args.missing_ok or error.hint == HINT_WRONG_BASE_URL:
            raise
        gone = True
    if out.as_json:
        out.json({"deleted": args.id.lower(), "already_gone": gone})
    elif gone:
        out.print(f"request {args.id.lower()} was already gone: nothing deleted")
    else:
        out.print(f"deleted request {args.id.lower()}")
    return EXIT_OK


async def run_templates(client: Client, args: argparse.Namespace, out: Output) -> int:
    templates = await client.list_templates()
    if out.as_json:
        out.json(templates)
        return EXIT_OK
    if out.quiet:  # the ids --template-id takes
        for template in templates:
            out.result(template.template_id)
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
        if out.quiet:  # the names --music-name and the like take
            for item in items:
                out.result(item.name)
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


# -- quota: the last figures seen, kept between runs ----------------------------------------

QUOTA_FILE_VERSION = 1
#: Two resets this close (seconds) are the same hourly window.
SAME_WINDOW = 2.0


def _utcnow() -> dt.datetime:
    return _clock.utcnow().astimezone(dt.timezone.utc)


def _optional_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is not a whole number")
    return value


def _optional_time(data: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a timestamp")
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        raise ValueError(f"{name} has no time zone")
    return when.astimezone(dt.timezone.utc)


@attrs.frozen(kw_only=True)
class SavedQuota:
    """The key's quota as a run last knew it: the ``X-RateLimit-*`` figures corrected by
    the client's own count, and when (our clock, UTC) that was."""

    limit_hour: int | None = None
    remaining_hour: int | None = None
    limit_day: int | None = None
    remaining_day: int | None = None
    reset: dt.datetime | None = None
    as_of: dt.datetime

    @classmethod
    def of_client(cls, client: Client, now: dt.datetime) -> SavedQuota | None:
        """What ``client`` learnt of the quota, or None when no answer told it anything."""
        budget = client.quota.as_rate_limit()
        told = client.rate_limit or RateLimit()
        if told == RateLimit() and budget.remaining_hour is None:
            return None

        def first(mine: Any, theirs: Any) -> Any:
            return theirs if mine is None else mine

        return cls(
            limit_hour=first(budget.limit_hour, told.limit_hour),
            remaining_hour=first(budget.remaining_hour, told.remaining_hour),
            limit_day=first(budget.limit_day, told.limit_day),
            remaining_day=first(budget.remaining_day, told.remaining_day),
            reset=first(budget.reset, told.reset),
            as_of=now,
        )

    @classmethod
    def from_json(cls, data: object) -> SavedQuota:
        """Read the file's content; ``ValueError``/``TypeError`` when it is not what this
        version writes."""
        if not isinstance(data, dict) or data.get("version") != QUOTA_FILE_VERSION:
            raise ValueError("not a quota file of this version")
        as_of = _optional_time(data, "as_of")
        if as_of is None:
            raise ValueError("as_of is missing")
        return cls(
            limit_hour=_optional_int(data, "limit_hour"),
            remaining_hour=_optional_int(data, "remaining_hour"),
            limit_day=_optional_int(data, "limit_day"),
            remaining_day=_optional_int(data, "remaining_day"),
            reset=_optional_time(data, "reset"),
            as_of=as_of,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": QUOTA_FILE_VERSION,
            "limit_hour": self.limit_hour,
            "remaining_hour": self.remaining_hour,
            "limit_day": self.limit_day,
            "remaining_day": self.remaining_day,
            "reset": None if self.reset is None else self.reset.isoformat(),
            "as_of": self.as_of.isoformat(),
        }

    def same_window(self, other: SavedQuota) -> bool:
        if self.reset is None or other.reset is None:
            return False
        return abs((self.reset - other.reset).total_seconds()) <= SAME_WINDOW

    def spent_until(self, now: dt.datetime) -> dt.datetime | None:
        """The reset, when these figures say the hour's calls are spent until a time to come."""
        if self.remaining_hour is None or self.remaining_hour > 0 or self.reset is None:
            return None
        return self.reset if self.reset > now else None


def quota_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$XDG_CACHE_HOME/ssemble-async`` (an absolute one), else ``~/.cache/ssemble-async``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if base and Path(base).is_absolute():
        return Path(base) / "ssemble-async"
    try:
        return Path.home() / ".cache" / "ssemble-async"
    except RuntimeError:  # no home directory to be found
        return None


def quota_cache_file(
    api_key: str, base_url: str, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The file of one key and API: named by a SHA-256 of both, never by the key."""
    folder = quota_cache_dir(environ)
    if folder is None:
        return None
    digest = hashlib.sha256(f"{api_key}\n{base_url}".encode()).hexdigest()
    return folder / f"quota-{digest[:32]}.json"


def load_quota(path: Path) -> SavedQuota | None:
    """The figures saved in ``path``; None when there are none or they cannot be read."""
    try:
        return SavedQuota.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, RecursionError):
        return None


def save_quota(path: Path, seen: SavedQuota) -> None:
    """Write ``seen`` to ``path`` atomically (a whole file or the old one, never half).

    Within one window the lower count wins: a run that ended later may have learnt its
    figures earlier than another run that saved in between.
    """
    previous = load_quota(path)
    if (
        previous is not None
        and previous.same_window(seen)
        and previous.remaining_hour is not None
        and (seen.remaining_hour is None or previous.remaining_hour < seen.remaining_hour)
    ):
        seen = attrs.evolve(seen, remaining_hour=previous.remaining_hour)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".quota-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(seen.to_json(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _remember_quota(client: Client, path: Path | None) -> None:
    """Save what this run learnt of the quota; a cache that cannot be written is no error."""
    if path is None:
        return
    seen = SavedQuota.of_client(client, _utcnow())
    if seen is None:
        return
    try:
        save_quota(path, seen)
    except OSError as error:
        logger.debug("cannot save the quota figures in %s: %s", path, error)


#: Seconds a reset may be off by (the server's clock is known to about a second).
CLOCK_SLACK = 3.0


def _clock_time(when: dt.datetime, now: dt.datetime, *, up: bool = True) -> str:
    """``22:00 UTC``. A reset is rounded up to the minute (a run at that time is after it),
    unless it is within `CLOCK_SLACK` of the minute before; ``up=False`` truncates."""
    when = when.astimezone(dt.timezone.utc)
    if up:
        when -= dt.timedelta(seconds=CLOCK_SLACK)
        if when.second or when.microsecond:
            when = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    if abs((when - now).total_seconds()) > 12 * 3600:
        return f"{when:%Y-%m-%d %H:%M} UTC"
    return f"{when:%H:%M} UTC"


def _span(seconds: float) -> str:
    """``19 min``, ``2 h 5 min``, ``12 s``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // (24 * 60)} days"


def _age(seconds: float) -> str:
    """``3 min ago``, ``just now``."""
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{math.floor(seconds)} s ago"
    minutes = math.floor(seconds / 60)
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // (24 * 60)} days ago"


def quota_as_data(saved: SavedQuota, now: dt.datetime, *, calls: int) -> dict[str, Any]:
    """The figures as JSON-ready data (``ssemble quota --json``)."""
    until = None if saved.reset is None else (saved.reset - now).total_seconds()
    return {
        "limit_hour": saved.limit_hour,
        "remaining_hour": saved.remaining_hour,
        "limit_day": saved.limit_day,
        "remaining_day": saved.remaining_day,
        "reset": None if saved.reset is None else saved.reset.isoformat(),
        "reset_in_seconds": None if until is None else round(max(0.0, until), 1),
        "reset_passed": until is not None and until <= 0,
        "as_of": saved.as_of.isoformat(),
        "age_seconds": round(max(0.0, (now - saved.as_of).total_seconds()), 1),
        "calls_spent": calls,
    }


def quota_lines(saved: SavedQuota, now: dt.datetime, *, calls: int) -> list[str]:
    """The figures for a person to read (``ssemble quota``)."""

    def count(value: int | None) -> str:
        return "?" if value is None else str(value)

    if calls:
        heading = f"quota of this API key, as of now (asked the API: {calls} call)"
    else:
        age = (now - saved.as_of).total_seconds()
        heading = (
            f"quota of this API key, as of {_age(age)} ({_clock_time(saved.as_of, now, up=False)},"
            " the last run that talked to the API)"
        )
    limits = f"{count(saved.limit_hour)} calls an hour"
    if saved.limit_day is not None:
        limits += f", {saved.limit_day} a day"
    left_hour = count(saved.remaining_hour)
    if saved.reset is None:
        reset = "?"
    else:
        until = (saved.reset - now).total_seconds()
        when = _clock_time(saved.reset, now)
        if until > 0:
            reset = f"{when} (in {_span(until)})"
        else:
            reset = f"{when} (passed {_span(until)} ago; ssemble quota --refresh asks again)"
            if saved.limit_hour is not None:
                left_hour += f" before that reset, {saved.limit_hour} after it"
    left_day = count(saved.remaining_day)
    if saved.limit_day is not None and saved.remaining_day is not None:
        left_day += f" of {saved.limit_day}"
    return [
        heading,
        f"  limit           {limits}",
        f"  left this hour  {left_hour}",
        f"  left today      {left_day}",
        f"  hour resets at  {reset}",
    ]


def _api_key(args: argparse.Namespace) -> str:
    """The key of this run: --api-key, else SSEMBLE_API_KEY, else the one ssemble auth login
    saved; "" when there is none."""
    found = find_key(args.api_key, os.environ)
    return "" if found is None else found.key


def _quota_file(args: argparse.Namespace, client: Client) -> Path | None:
    return quota_cache_file(_api_key(args), client.base_url)


async def _ask_quota(client: Client) -> SavedQuota:
    """One cheap call (``GET /templates``) for the figures its answer carries."""
    refused: RateLimitError | None = None
    try:
        await client.list_templates()
    except RateLimitError as error:  # a refusal carries the figures too
        refused = error
    seen = SavedQuota.of_client(client, _utcnow())
    if seen is not None:
        return seen
    if refused is not None:
        raise refused
    raise CommandError(
        "the API's answer carried no X-RateLimit-* headers: it did not tell the quota"
    )


async def run_quota(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = _quota_file(args, client)
    saved = None if args.refresh or path is None else load_quota(path)
    calls = 0
    if saved is None:
        if not args.refresh and not out.quiet:
            print(
                f"{PROG}: no quota figures saved for this API key yet; asking the API"
                " (GET /templates: costs one call of the quota)",
                file=sys.stderr,
                flush=True,
            )
        saved = await _ask_quota(client)
        calls = 1
    now = _utcnow()
    if out.as_json:
        out.json(quota_as_data(saved, now, calls=calls))
    elif out.quiet:
        print("?" if saved.remaining_hour is None else saved.remaining_hour)
    else:
        for line in quota_lines(saved, now, calls=calls):
            out.print(line)
    return EXIT_OK


def _quota_choice(args: argparse.Namespace) -> bool:
    """Whether this run waits for a spent quota (else it stops with exit 1, sending nothing)."""
    if args.command == "quota":
        return False  # the figures are the answer: nothing to wait for
    choice: bool | None = args.wait_for_quota
    if choice is not None:
        return choice
    return args.command == "wait" or bool(getattr(args, "wait", False))


def _waiting_by(args: argparse.Namespace) -> str:
    """What made this run wait for the quota, as a person would name it."""
    if args.wait_for_quota:
        return "--wait-for-quota"
    if args.command == "wait":
        return "ssemble wait"
    return "--wait"


def _wait_advice(args: argparse.Namespace) -> str:
    """How to have this command wait for the quota next time."""
    if args.wait_for_quota is False:
        return "drop --no-wait-for-quota to wait for it"
    if args.command == "download":
        return "add --wait to wait for it (--wait waits for the quota too)"
    return "add --wait-for-quota to wait for it"


class KnownSpent(RateLimitError):
    """The hour's quota is spent as a recent run saw it: nothing is sent until the reset."""

    def __init__(self, saved: SavedQuota, now: dt.datetime) -> None:
        super().__init__(
            f"the hourly quota is spent until {saved.reset} as a run"
            f" {_age((now - saved.as_of).total_seconds())} saw it; the call was not sent.",
            code="quota_exhausted",
            rate_limit=RateLimit(
                limit_hour=saved.limit_hour,
                remaining_hour=saved.remaining_hour,
                limit_day=saved.limit_day,
                remaining_day=saved.remaining_day,
                reset=saved.reset,
            ),
            sent=False,
        )
        self.saved = saved


def quota_error_line(error: RateLimitError, args: argparse.Namespace | None) -> str:
    """One line for a spent quota or a 429: what happened, until when, and which flag helps."""
    now = _utcnow()
    limit = error.rate_limit or RateLimit()
    reset = limit.reset if limit.reset is not None and limit.reset > now else None
    what = "nothing was sent" if not error.sent else "the API refused the call (HTTP 429)"
    if limit.remaining_day is not None and limit.remaining_day <= 0:
        told = (
            f"the daily quota of this API key is spent and {what}; the API does not say when"
            " the day resets: run again tomorrow"
        )
        if args is None or _quota_choice(args):
            return told
        return f"{told}, or {_wait_advice(args)} (it asks again after each hourly reset)"
    if reset is None:
        told = f"the API refused the call with HTTP 429 ({error.code}: {error.message})"
        if not error.sent:
            told = f"the hourly quota is spent and {what} ({error.message})"
        again = "run again later"
        if error.retry_after:
            later = now + dt.timedelta(seconds=error.retry_after)
            again = f"run again after {_clock_time(later, now)}"
    else:
        # the reset is named once, where it is acted on
        when = _clock_time(reset, now)
        told = f"the hourly quota is spent for the next {_span((reset - now).total_seconds())}"
        if isinstance(error, KnownSpent):
            told += f", as a run {_age((now - error.saved.as_of).total_seconds())} saw it"
        told += f"; {what}"
        again = f"run again after {when}"
    if args is None:
        return f"{told}: {again}"
    if error.code == PAST_DEADLINE:
        return f"{told}, after the deadline of this wait: {again}, or raise --timeout"
    if _quota_choice(args):
        by = _waiting_by(args)
        if not error.sent and reset is not None:
            return f"{told}: longer than {by} waits for the quota (an hour at most): {again}"
        return (
            f"{told}, which is unexpected with {by} (it waits for the quota): another user of"
            f" this API key may be spending it; {again}"
        )
    if args.command == "quota":
        return f"{told}: {again}"
    return f"{told}: {again}, or {_wait_advice(args)}"


def _check_saved_quota(args: argparse.Namespace, path: Path | None, client: Client) -> None:
    """Act on a recent run having seen the hour's quota spent, before any call: stop when
    this one will not wait; else start the client's budget from it (no probe is refused)."""
    if path is None or args.command == "quota":
        return
    saved = load_quota(path)
    now = _utcnow()
    until = None if saved is None else saved.spent_until(now)
    if saved is None or until is None:
        return
    if not _quota_choice(args):
        raise KnownSpent(saved, now)
    governor = client.quota_governor
    if isinstance(governor, LocalGovernor):
        governor.seed(QuotaBudget(limit=saved.limit_hour, remaining=0, reset=until, estimated=True))


# -- parser ---------------------------------------------------------------------------------


# -- running --------------------------------------------------------------------------------


def _poll(args: argparse.Namespace) -> PollPolicy:
    first = getattr(args, "poll_interval", None)
    if first is None:
        return PollPolicy()
    return PollPolicy(initial=first, maximum=max(first, PollPolicy().maximum))


#: The hints of API errors, as the command line says them (the library's name its keywords).
_CLI_HINTS: Mapping[str, str] = {
    HINT_API_KEY: "Check the API key (ssemble auth status tells which one is used: --api-key,"
    " SSEMBLE_API_KEY or the one ssemble auth login saved); keys start with sk_ssemble_ and"
    " are made at https://app.ssemble.com/api-keys.",
    HINT_NOT_FOUND: "Check the request id (ssemble list shows yours); deleted requests are gone"
    " for good.",
    HINT_WRONG_BASE_URL: "The answer is not the API's error envelope: --base-url (or"
    " SSEMBLE_BASE_URL) does not point at the API; it ends in /api/v1.",
}

#: An answer that is not JSON at all: a web page (a site or a proxy), not the API.
_NOT_JSON_HINT = (
    "The answer is a page, not the API's: --base-url (or SSEMBLE_BASE_URL) may point at a"
    " web site or a proxy instead of the API; it ends in /api/v1."
)

#: What the library says in its own terms (keywords, methods), and what a CLI user reads.
_CLI_PHRASES: tuple[tuple[str, str], ...] = (
    ("as returned by create_short", "as ssemble create prints it"),
    (
        "pass api_key=... or set SSEMBLE_API_KEY",
        "run ssemble auth login, pass --api-key or set SSEMBLE_API_KEY",
    ),
    ("(see list_templates())", "(ssemble templates lists them)"),
    ("Check the network and base_url.", "Check the network and --base-url (SSEMBLE_BASE_URL)."),
    ("base_url must start with", "--base-url (SSEMBLE_BASE_URL) must start with"),
    ("Check the network, or raise Timeouts.", "Check the network."),
    (
        "(ConnectionSettings, or the http_proxy/https_proxy/no_proxy variables)",
        "(the http_proxy, https_proxy and no_proxy variables)",
    ),
    ("url=... or file_url=...", "--url or --file-url"),
    ("cta_text is required when cta_enabled is True", "--cta-text is required with --cta-enabled"),
    (
        "check s3_endpoint_url (or AWS_ENDPOINT_URL)",
        "check --s3-endpoint-url (or AWS_ENDPOINT_URL)",
    ),
    ("pass overwrite=True to replace it", "download with --overwrite to replace it"),
)
#: A keyword of the library named in an argument error (``end - start must be ...``).
_KEYWORD = re.compile(
    r"\b(file_url|start|end|template_id|music_volume|cta_text|page_size)\b(?= must| -)"
)


def _error_line(error: BaseException, args: argparse.Namespace | None = None) -> str:
    """One line for an error, in the command line's terms (its flags and commands)."""
    command = None if args is None else getattr(args, "command", None)
    if isinstance(error, RateLimitError):
        return quota_error_line(error, args)
    if isinstance(error, APIStatusError):
        return with_hint(error.problem, _CLI_HINTS.get(error.hint, error.hint))
    if isinstance(error, RequestNotReadyError):
        return (
            f"request {error.request_id} is {error.status}, not completed: nothing of it was"
            f" downloaded; add --wait to wait for it (or run ssemble wait {error.request_id})"
        )
    if isinstance(error, WaitTimeoutError):
        again = "raise --timeout" if command == "wait" else "run the same command again"
        return (
            f"request {error.request_id} was still {error.last_status or 'unknown'} after"
            f" {error.timeout:g} s; the job keeps running on the server: wait again later, or"
            f" {again}"
        )
    text = str(error)
    if isinstance(error, ResponseValidationError) and "is not JSON" in text:
        return with_hint(text, _NOT_JSON_HINT)
    for library, cli in _CLI_PHRASES:
        text = text.replace(library, cli)
    if isinstance(error, InvalidArgumentError) and not isinstance(error, InvalidRequestIdError):
        text = _KEYWORD.sub(lambda found: "--" + found[1].replace("_", "-"), text)
    return text


def _check_output(folder: Path, flag: str = "-o", *, probe: bool = True) -> None:
    """Refuse an output folder that cannot be written, before any call (a usage error).

    Permission bits do not tell everything (root passes every ``access()`` check, yet
    cannot write under ``/proc``, a read-only mount or a full quota): with ``probe`` a
    temporary entry is made and removed again in the folder, or in the nearest folder that
    exists when it is still to be made. A dry run passes ``probe=False``: it writes nothing.
    """
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == folder.absolute():
        if not folder.is_dir():
            raise UsageError(f"{flag} {folder}: not a folder (it is a file)")
        refused = f"{flag} {folder}: cannot write in this folder"
    else:
        if not existing.is_dir():
            raise UsageError(f"{flag} {folder}: cannot be created, {existing} is a file")
        refused = f"{flag} {folder}: cannot be created in {existing}"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{refused}: no permission to write there")
    if probe:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".ssemble-check-", dir=existing))
        except OSError as error:
            raise UsageError(f"{refused}: {error.strerror or error}") from None


def _check_s3_output(args: argparse.Namespace) -> None:
    """Refuse an ``-o s3://...`` that cannot be used, without touching the disk."""
    if args.command != "download":
        raise UsageError(f"-o {args.output}: ssemble {args.command} writes into a folder only")
    try:
        parse_s3_url(args.output)
    except ValueError as error:
        raise UsageError(f"-o: {error}") from None
    if importlib.util.find_spec("aiobotocore") is None:
        raise UsageError(f"-o {args.output}: {INSTALL_HINT}")


def _check_fake_key(key: str | None) -> None:
    """Refuse a key for the fake that its ``export`` line would not paste whole into a
    shell (a space, a quote, ``$(...)``)."""
    if key is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,256}", key):
        raise UsageError(
            f"argument --api-key: {key!r} is not a key the export line can print: use"
            " letters, digits, . _ and - only (e.g. sk_ssemble_test)"
        )


def _check_before_calls(args: argparse.Namespace) -> None:
    """What the command line can refuse before any call: the output folder, the ids."""
    output = getattr(args, "output", None)
    if output is not None and not output.strip():
        raise UsageError("-o is empty: give a folder (. for the current one)")
    if output is not None and is_s3_url(output):
        _check_s3_output(args)
    elif output is not None:
        _check_output(Path(output), probe=not getattr(args, "dry_run", False))
    if args.command == "download":
        args.request_ids = _collect_ids(args)


async def _run(args: argparse.Namespace, out: Output) -> int:
    offline = getattr(args, "offline", None)
    if offline == "s3-cleanup":
        return await run_s3_cleanup(args, out)
    if offline is not None:
        from ssemble_async._demo import (  # noqa: PLC0415 - the fake
            run_demo,
            run_fake_server,
            run_webhook_demo,
        )

        if offline == "demo":
            if not args.output.strip():
                raise UsageError("-o is empty: give a folder (. for the current one)")
            _check_output(Path(args.output))
            if args.webhooks:
                return await run_webhook_demo(Path(args.output), out)
            return await run_demo(Path(args.output), out)
        _check_fake_key(getattr(args, "api_key", None))
        return await run_fake_server(args, out)
    if args.command == "auth":
        return await _run_auth(args, out)
    if args.command in ("enqueue", "worker", "queue-status"):
        from ssemble_async._cli._queue import run_queue_command  # noqa: PLC0415 - an extra

        return await run_queue_command(args, out)
    return await _with_client(args, out, _command(args.command), _api_key(args))


async def _with_client(args: argparse.Namespace, out: Output, command: Command, key: str) -> int:
    """Run ``command`` with a client of ``key``, keeping the quota figures it learns."""
    client = _client(args, key)
    path = quota_cache_file(key, client.base_url)
    async with client:
        _check_saved_quota(args, path, client)
        try:
            code = await command(client, args, out)
        finally:
            _remember_quota(client, path)
        return code


async def _verify_key(client: Client, args: argparse.Namespace, out: Output) -> int:
    """The call that checks a key: the cheapest one (as ssemble quota --refresh makes)."""
    await client.list_templates()
    return EXIT_OK


async def _run_auth(args: argparse.Namespace, out: Output) -> int:
    """``ssemble auth login|status|logout``; only ``login --verify`` makes a call."""
    shown = {"as_json": out.as_json, "quiet": out.quiet}
    if args.auth_command == "status":
        return show_key(args.api_key, **shown)
    if args.auth_command == "logout":
        return forget_key(**shown)
    key: str = args.new_key  # read before the event loop: see _read_terminal()
    if args.verify:
        try:
            await _with_client(args, out, _verify_key, key)
        except AuthenticationError as error:  # the key typed, not the one in use
            raise CommandError(
                f"the key was not saved: the API refused the key typed ({error.problem});"
                " check that it was copied whole: keys start with sk_ssemble_ and are made"
                " at https://app.ssemble.com/api-keys"
            ) from error
        except SsembleError as error:
            raise CommandError(f"the key was not saved: {_error_line(error, args)}") from error
    return store_new_key(key, verified=args.verify, **shown)


def _client(args: argparse.Namespace, key: str) -> Client:
    """The client of this command line (before any call: a bad setting is a usage error)."""
    quota = QuotaPolicy(on_exhausted="wait" if _quota_choice(args) else "raise")
    quota_url: str | None = args.quota_url
    try:
        return Client(
            key,
            base_url=args.base_url,
            quota=quota,
            poll=_poll(args),
            quota_url=quota_url,
            s3_endpoint_url=getattr(args, "s3_endpoint_url", None),
        )
    except ConfigurationError as error:
        if "quota_url" not in str(error):
            raise
        # the URL itself is never repeated: it may hold a password
        source = "--quota-url" if quota_url is not None else "SSEMBLE_QUOTA_URL"
        url = quota_url if quota_url is not None else os.environ.get("SSEMBLE_QUOTA_URL", "")
        scheme, found, _ = url.partition("://")
        named = f"the scheme {scheme.lower()}://" if found and scheme else "a URL without a scheme"
        if "distributed extra" in str(error):
            raise UsageError(
                f"{source}: a budget shared in Redis needs the distributed extra:"
                " pip install 'ssemble-async[distributed]'"
            ) from error
        raise UsageError(
            f"{source}: {named} is not supported; leave --quota-url and SSEMBLE_QUOTA_URL"
            " unset (or use local://) for this process's own quota budget, or give"
            " redis://host:port/db for one shared in Redis"
        ) from error


def _show_notices(debug: bool) -> Callable[[], None]:
    """Route the library's warnings (a quota wait...) to stderr as ``ssemble: ...`` lines.

    With ``--debug`` every log record goes to stderr with its time, logger and level
    instead. Returns what undoes it (``main`` may run more than once in one process).
    """
    notices.reset()
    if debug:
        logging.basicConfig(
            level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s"
        )
        return lambda: None
    handler = NoticeHandler()
    logger.addHandler(handler)
    return lambda: logger.removeHandler(handler)


Command = Callable[[Client, argparse.Namespace, Output], Awaitable[int]]

_COMMANDS: Mapping[str, Command] = {
    "download": run_download,
    "get": run_get,
    "status": run_status,
    "wait": run_wait,
    "create": run_create,
    "list": run_list,
    "delete": run_delete,
    "quota": run_quota,
    "listen": run_listen,
    "templates": run_templates,
}


def _command(name: str) -> Command:
    return _COMMANDS.get(name) or _asset_command(name)


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed ``ssemble`` command; returns the exit code."""
    out = Output(as_json=args.json, quiet=args.quiet)
    out.describe_error = lambda error: _error_line(error, args)
    stop_notices = _show_notices(args.debug)
    try:
        return _main(args, out)
    finally:
        stop_notices()


#: What Ctrl-C leaves behind, by command (the others: nothing to resume).
_INTERRUPTED = {
    "download": "interrupted; finished clips are kept, run the same command to resume",
    "listen": "interrupted; finished clips are kept, downloads cut short resume on the next run",
    "demo": "interrupted; finished clips are kept, run the same command to resume",
    "wait": "interrupted; the job keeps running on the server (ssemble wait waits again)",
    "create": "interrupted; the request may have been created all the same: ssemble list"
    " shows your requests",
    "delete": "interrupted; the request may have been deleted all the same: ssemble get tells",
    "enqueue": "interrupted; some ids may be queued already: run the same command again (an id"
    " is never queued twice)",
    "worker": "interrupted; its jobs go back to the queue after their heartbeat timeout",
    "auth": "interrupted; nothing was saved or removed",
}


def _leaf(error: BaseException) -> BaseException:
    """The first error inside (nested) exception groups (a Ctrl-C first); else ``error``."""
    while True:
        inner: object = getattr(error, "exceptions", None)  # an exception group's members
        if not isinstance(inner, tuple) or not inner:
            return error
        members = [e for e in inner if isinstance(e, BaseException)]
        if not members:
            return error
        interrupts = [e for e in members if isinstance(e, KeyboardInterrupt)]
        error = interrupts[0] if interrupts else members[0]


def _read_terminal(args: argparse.Namespace) -> None:
    """What is read from the terminal (or stdin) is read here, before the event loop runs:
    there the first Ctrl-C only cancels the loop's task, which a blocking read never sees
    (a prompt would ignore it). The checks made before any call come first."""
    if args.command == "auth" and args.auth_command == "login":
        args.new_key = read_new_key(args.api_key, sys.stdin)
    elif args.command == "enqueue" and args.input == "-":
        args.stdin_ids = _ids_in(sys.stdin.read())
    elif getattr(args, "offline", None) is None and args.command not in (
        "auth",
        "enqueue",
        "worker",
        "queue-status",
    ):
        _check_before_calls(args)


def _stdout_gone() -> bool:
    """True when standard output is a pipe that nobody reads any more (poll says so: an
    error or a hang-up on it, as Linux and the BSDs tell a pipe without a reader); it is
    then pointed at the null device, so that what is left in its buffer is not written to
    the pipe again at exit (another "Broken pipe")."""
    try:
        descriptor = sys.stdout.fileno()
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll, or no descriptor to ask
        return False
    if not any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
        return False
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)
    return True


def _main(args: argparse.Namespace, out: Output) -> int:
    """Run the command; map every way it can end to one line and an exit code.

    0 done; 1 the command ran and could not do its job (an API call, a wait, a clip, the
    disk); 2 a command line that cannot be run (found before any call); 130 Ctrl-C; 141
    the reader of standard output went away (``| head``), quietly, as SIGPIPE ends a tool.
    """
    try:
        _read_terminal(args)
        return asyncio.run(_run(args, out))
    except BaseException as raised:  # every ending gets its exit code
        error = _leaf(raised)
        if isinstance(error, SystemExit):
            raise
        if isinstance(error, BrokenPipeError) and _stdout_gone():
            return EXIT_BROKEN_PIPE  # the reader left (`| head -1`): end as SIGPIPE ends a tool
        if isinstance(error, KeyboardInterrupt):
            if getattr(args, "offline", None) == "fake-server":
                return EXIT_OK  # Ctrl-C is how a server is stopped
            told = _INTERRUPTED.get(args.command, "interrupted")
            at_prompt = args.command == "auth" and not hasattr(args, "new_key")
            if at_prompt and args.auth_command == "login" and sys.stdin.isatty():
                print(file=sys.stderr)  # below the prompt that Ctrl-C cut short
            print(f"{PROG}: {told}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if args.debug:
            traceback.print_exception(raised)
        if isinstance(error, UsageError | InvalidArgumentError | ConfigurationError):
            _fail(_error_line(error, args), EXIT_USAGE)
        if isinstance(error, SsembleError | CommandError):
            _fail(_error_line(error, args), EXIT_FAILED)
        if isinstance(error, OSError):  # the disk, a file: the command could not do its job
            _fail(str(error) or type(error).__name__, EXIT_FAILED)
        if not isinstance(error, Exception):
            raise
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        _fail(f"unexpected {detail} (--debug shows where; please report it)", EXIT_FAILED)
