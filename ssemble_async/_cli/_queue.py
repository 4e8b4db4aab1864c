"""``ssemble enqueue``, ``worker``, ``queue-status``: the queue of `ssemble_async.distributed`.

A thin layer over the public module. The queue URL may hold a password: it is never
printed, not even in an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ssemble_async._cli._app import _api_key, _check_output, _client, _collect_ids, _poll
from ssemble_async._cli._output import NoticeHandler, Output, notices
from ssemble_async._cli._parser import EXIT_OK, PROG, CommandError, UsageError
from ssemble_async._client import validate_request_id
from ssemble_async._errors import ConfigurationError
from ssemble_async._s3 import INSTALL_HINT, is_s3_url, parse_s3_url

if TYPE_CHECKING:
    from ssemble_async.distributed import JobOutcome

__all__ = ["run_queue_command"]

_SCHEMES = ("redis", "rediss", "unix")


def _queue_url(args: argparse.Namespace) -> str:
    """``--queue``, else ``SSEMBLE_QUEUE_URL``; checked without ever repeating it."""
    flag = "--queue" if args.queue is not None else "SSEMBLE_QUEUE_URL"
    url: str = args.queue if args.queue is not None else os.environ.get("SSEMBLE_QUEUE_URL", "")
    if not url:
        raise UsageError(
            "no queue given: pass --queue redis://host:port/db (or set SSEMBLE_QUEUE_URL)"
        )
    scheme, found, _ = url.partition("://")
    if not found or scheme.lower() not in _SCHEMES:
        named = f"the scheme {scheme.lower()}://" if found and scheme else "a URL without a scheme"
        raise UsageError(
            f"{flag}: {named} is not supported; give redis://host:port/db, rediss://host:port/db"
            " or unix:///path/to/redis.sock"
        )
    return url


def _check_extra(command: str) -> None:
    """A usage error when the distributed extra (SAQ, redis-py) is not installed."""
    try:
        import ssemble_async.distributed  # noqa: F401, PLC0415 - an extra
    except ImportError:
        raise UsageError(
            f"ssemble {command} needs the distributed extra:"
            " pip install 'ssemble-async[distributed]'"
        ) from None


def _check_parsed(url: str, args: argparse.Namespace) -> None:
    """A usage error when the queue URL cannot be parsed (never repeated: a password)."""
    from ssemble_async.distributed import (  # noqa: PLC0415 - an extra
        MALFORMED_QUEUE_URL,
        _check_queue_url,
    )

    try:
        _check_queue_url(url)
    except ConfigurationError:
        flag = "--queue" if args.queue is not None else "SSEMBLE_QUEUE_URL"
        raise UsageError(f"{flag} {MALFORMED_QUEUE_URL}") from None


def _check_s3_dest(dest: str, flag: str, *, local: bool) -> None:
    """A usage error for an ``s3://`` destination without a bucket (``local``: this
    machine writes there, so the s3 extra must be installed here)."""
    try:
        parse_s3_url(dest)
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None
    if local and importlib.util.find_spec("aiobotocore") is None:
        raise UsageError(f"{flag} {dest}: {INSTALL_HINT}")


async def run_queue_command(args: argparse.Namespace, out: Output) -> int:
    """Run ``enqueue``, ``worker`` or ``queue-status``."""
    url = _queue_url(args)
    _check_extra(args.command)
    _check_parsed(url, args)
    from ssemble_async.distributed import QueueUnavailableError  # noqa: PLC0415 - an extra

    try:
        if args.command == "enqueue":
            return await _enqueue(url, args, out)
        if args.command == "worker":
            return await _work(url, args, out)
        return await _status(url, out)
    except QueueUnavailableError as error:
        raise CommandError(
            f"the queue's Redis cannot be reached or refused a command ({error.reason});"
            " check --queue (or SSEMBLE_QUEUE_URL) and that Redis runs"
        ) from None


async def _enqueue(url: str, args: argparse.Namespace, out: Output) -> int:
    from ssemble_async.distributed import enqueue_requests  # noqa: PLC0415 - an extra

    if args.dest is not None and is_s3_url(args.dest):
        _check_s3_dest(args.dest, "--dest", local=False)  # the workers write there
    ids = [validate_request_id(rid) for rid in _collect_ids(args)]
    choice = {"top": args.top, "min_score": args.min_score, "name": args.name}
    result = await enqueue_requests(
        url,
        ids,
        dest=args.dest,
        heartbeat_timeout=args.heartbeat_timeout,
        retries=args.retries,
        **{key: value for key, value in choice.items() if value is not None},
    )
    if out.as_json:
        out.json({"queued": list(result.queued), "already_queued": list(result.already_queued)})
        return EXIT_OK
    if out.quiet:
        for rid in result.queued:
            out.result(rid)
        return EXIT_OK
    new = set(result.queued)
    for rid in dict.fromkeys(ids):
        print(f"{rid} {'queued' if rid in new else 'already queued'}", flush=True)
    out.print(f"{len(result.queued)} queued, {len(result.already_queued)} already queued")
    return EXIT_OK


def _outcome_line(outcome: JobOutcome) -> str:
    counts = ", ".join(f"{count} {state}" for state, count in outcome.counts.items())
    line = f"{outcome.request_id} {outcome.state}: {outcome.detail}"
    if counts:
        line += f" ({counts})"
    if outcome.delay is not None:
        delay = outcome.delay
        shown = f"{delay:.1f}".removesuffix(".0") if delay < 60 else f"{delay:.0f}"
        line += f"; runs again in {shown} s"
    return line


@contextmanager
def _saq_errors(debug: bool) -> Iterator[None]:
    """SAQ's own errors as ``ssemble:`` notices (its routine logs stay quiet; ``--debug``
    shows everything)."""
    if debug:
        yield
        return
    handler = NoticeHandler()
    handler.setLevel(logging.ERROR)
    saq_logger = logging.getLogger("saq")
    saq_logger.addHandler(handler)
    try:
        yield
    finally:
        saq_logger.removeHandler(handler)


async def _work(url: str, args: argparse.Namespace, out: Output) -> int:
    from saq import Worker  # noqa: PLC0415 - an extra

    from ssemble_async.distributed import DEFAULT_QUEUE, worker_settings  # noqa: PLC0415

    if is_s3_url(args.output):
        _check_s3_dest(args.output, "-o", local=True)
    else:  # a folder, as for ssemble download
        _check_output(Path(args.output))

    def report(outcome: JobOutcome) -> None:
        if out.as_json:
            print(json.dumps(attrs.asdict(outcome), ensure_ascii=False), flush=True)
        elif out.quiet:
            if outcome.state == "done":
                out.result(outcome.request_id)
        else:
            print(_outcome_line(outcome), flush=True)

    client = _client(args, _api_key(args))
    async with client:
        settings = worker_settings(
            url,
            dest=args.output,
            client=client,
            concurrency=args.concurrency,
            poll=_poll(args),
            sweep_interval=args.sweep_interval,
            on_outcome=report,
        )
        worker = Worker(**settings)
        await settings["queue"].check()
        if is_s3_url(args.output):  # the bucket can be used (no API call), before any job
            await client.plan_downloads([], args.output)
        if not out.quiet and not out.as_json:
            notices.say(
                f"worker on queue {DEFAULT_QUEUE}: {args.concurrency} request(s) at"
                f" once into {args.output}; Ctrl-C stops it"
            )
        with _saq_errors(args.debug):
            await worker.queue.connect()
            try:
                await worker.start()
            finally:
                await worker.queue.disconnect()
    if not out.quiet and not out.as_json:
        print(f"{PROG}: worker stopped; jobs in flight went back to the queue", file=sys.stderr)
    return EXIT_OK


async def _status(url: str, out: Output) -> int:
    from ssemble_async.distributed import queue_status  # noqa: PLC0415 - an extra

    status = await queue_status(url)
    if out.as_json:
        out.json(attrs.asdict(status))
        return EXIT_OK
    rows = (
        ("pending", status.pending, "waiting for a worker"),
        ("scheduled", status.scheduled, "not ready on the server, or waiting for the quota"),
        ("active", status.active, "running on a worker"),
        ("done", status.done, "in the last 7 days"),
        ("failed", status.failed, "in the last 7 days"),
        ("workers", status.workers, "running now"),
    )
    width = max(len(str(count)) for _, count, _ in rows)
    if not out.quiet:
        print(f"queue {status.name}", flush=True)
    for label, count, meaning in rows:
        print(f"  {label:<9} {count:>{width}}  {meaning}", flush=True)
    return EXIT_OK
