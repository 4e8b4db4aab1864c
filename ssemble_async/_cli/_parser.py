"""The ``ssemble`` argument parser: flags, their checks and help, and nothing heavy.

Kept apart from the commands so that ``ssemble --help``, ``--version`` and a usage error
import neither the HTTP stack nor the terminal library.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ssemble_async._ids import is_hex24
from ssemble_async._naming import NAME_FIELDS, check_name_template

PROG = "ssemble"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool the signal ended
MiB = 1024 * 1024
#: The most transfers (or requests) at once: each is a task and a connection, made up front.
MAX_CONCURRENCY = 1000


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


class CommandError(Exception):
    """A command that ran and could not do its job (exit 1)."""


def _fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _add_globals(parser: argparse.ArgumentParser, *, suppress: bool, api: bool = True) -> None:
    """The options of every command; ``api=False``: only those of a command that never
    talks to the API (the fake server, the demo)."""
    default: Any = argparse.SUPPRESS if suppress else None
    flag_default: Any = argparse.SUPPRESS if suppress else False
    group = parser.add_argument_group("global options")
    if api:
        group.add_argument(
            "--api-key",
            default=default,
            help="API key (default: $SSEMBLE_API_KEY, else the key saved by ssemble auth"
            " login); never printed",
        )
        group.add_argument(
            "--base-url",
            default=default,
            help="API root (default: $SSEMBLE_BASE_URL or production)",
        )
    group.add_argument(
        "--json", action="store_true", default=flag_default, help="machine output on stdout"
    )
    group.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=flag_default,
        help="only the essential result, one per line (ids, file paths); no progress or tables",
    )
    group.add_argument(
        "--debug", action="store_true", default=flag_default, help="debug logs and tracebacks"
    )
    if not api:
        return
    group.add_argument(
        "--quota-url",
        default=default,
        metavar="URL",
        help="where the key's quota budget is kept (default: $SSEMBLE_QUOTA_URL, else this"
        " process's own; local:// and memory:// name that too): redis://host:port/db shares"
        " it with every process using that Redis (needs ssemble-async[distributed])",
    )
    group.add_argument(
        "--wait-for-quota",
        dest="wait_for_quota",
        action="store_const",
        const=True,
        default=default,
        help="when the hourly quota is spent, wait for its reset (the default of --wait and"
        " of ssemble wait; other commands stop with an error)",
    )
    group.add_argument(
        "--no-wait-for-quota",
        dest="wait_for_quota",
        action="store_const",
        const=False,
        default=default,
        help="when the hourly quota is spent, stop with exit 1 and say when it resets,"
        " sending nothing more (also with --wait)",
    )


def _add_poll_interval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--poll-interval",
        type=_seconds(above=0.0),
        metavar="SECONDS",
        help="first interval between status polls, above 0 (default: 10, growing to 60;"
        " stretched further to keep within the hourly quota)",
    )


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (it costs an import)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        from ssemble_async._version import __version__  # noqa: PLC0415 - only when asked

        print(f"{parser.prog} {__version__}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``ssemble: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        what = "commands" if self.prog == PROG else "options"
        _fail(f"{message} ({self.prog} --help lists the {what})", EXIT_USAGE)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unknown option is told with the help of the command it
        follows (``ssemble quota --help``), not the list of commands."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            path = [getattr(parsed, name, None) for name in ("command", "auth_command")]
            where = " ".join([self.prog, *(part for part in path if isinstance(part, str))])
            what = "commands" if where == PROG else "options"
            unknown = f"unrecognized arguments: {' '.join(extras)}"
            _fail(f"{unknown} ({where} --help lists the {what})", EXIT_USAGE)
        return parsed


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return value


def _url_path(text: str) -> str:
    if not text.startswith("/") or any(c in text for c in "?# "):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a URL path: it starts with / and has no ?, # or space"
        )
    return text


def _whole(
    minimum: int, maximum: int | None = None, *, cap: int | None = None
) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` (to ``maximum``; or to ``cap``, a
    bound against typing mistakes rather than a range to choose from)."""
    wanted = f"{minimum} or more" if maximum is None else f"{minimum} to {maximum}"
    if cap is not None:
        wanted, maximum = f"{minimum} or more (at most {cap})", cap

    def whole(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({wanted})") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return value

    return whole


def _number(
    *,
    above: float | None = None,
    least: float | None = None,
    most: float | None = None,
    what: str = "a number",
) -> Callable[[str], float]:
    """An argparse type: a finite number above ``above`` (or from ``least``) to ``most``."""
    if above is not None:
        wanted = f"{what} above {above:g}"
    elif most is not None:
        wanted = f"{what} from {least or 0:g} to {most:g}"
    else:
        wanted = f"{what}, {least or 0:g} or more"

    def number(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if (
            not math.isfinite(value)
            or (above is not None and value <= above)
            or (least is not None and value < least)
            or (most is not None and value > most)
        ):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text.strip()}")
        return value

    return number


def _seconds(*, above: float | None = None, least: float | None = None) -> Callable[[str], float]:
    """An argparse type: seconds, a finite number above ``above`` (or from ``least``)."""
    return _number(above=above, least=least, what="a number of seconds")


def _name_template(text: str) -> str:
    try:
        check_name_template(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a name template: {exc}") from None
    return text


def _template_id(text: str) -> str:
    if not is_hex24(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a template id: 24 hexadecimal characters (ssemble templates"
            " lists them)"
        )
    return text


MIN_CHUNK, MAX_CHUNK = 64 * 1024, 64 * MiB
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[km]?)(?:i?b)?", re.IGNORECASE)


def _size_arg(text: str) -> int:
    """An argparse type: a byte count, ``65536``, ``512k`` or ``1m`` (KiB and MiB)."""
    sizes = "a number of bytes, or of KiB or MiB with k or m (e.g. 512k, 1m), from 64k to 64m"
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give {sizes}")
    units = {"": 1, "k": 1024, "m": MiB}
    value = int(float(found["number"]) * units[found["unit"].lower()])
    if not MIN_CHUNK <= value <= MAX_CHUNK:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: give {sizes}")
    return value


#: The values ``POST /shorts/create`` allows (the API reference, 2.1); it names no aliases.
PREFERRED_LENGTHS = (
    "under30sec",
    "under60sec",
    "under90sec",
    "under3min",
    "under5min",
    "under10min",
)
LAYOUTS = ("auto", "fill", "fit", "square")
#: The shells ``ssemble completion`` writes a script for.
SHELLS = ("bash", "zsh", "fish")

EPILOG = "exit codes: 0 all good, 1 a clip or call failed, 2 usage error, 130 interrupted"


def _s3_url(text: str) -> str:
    """An argparse type: ``s3://bucket[/prefix]``."""
    bucket = text[len("s3://") :].partition("/")[0]
    if not text.lower().startswith("s3://") or not bucket:
        raise argparse.ArgumentTypeError(f"{text!r} is not s3://bucket/prefix")
    return text


def _add_s3_endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="the S3-compatible endpoint of s3:// destinations (MinIO, R2...; default:"
        " $AWS_ENDPOINT_URL, else AWS); credentials and region come from the AWS_*"
        " variables or a profile, as for any AWS tool",
    )


def _add_s3_cleanup(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``ssemble s3-cleanup``: abort the unfinished uploads that killed downloads left."""
    cleanup = command(
        "s3-cleanup",
        "Abort the unfinished multipart uploads under s3://bucket/prefix that downloads"
        " cut short left (the parts of a killed run are stored, and billed, until then)."
        " A later download of such a clip fetches it again. Needs ssemble-async[s3].",
        "ssemble s3-cleanup s3://my-bucket/clips --older-than 24",
        api=False,
    )
    cleanup.add_argument(
        "url", type=_s3_url, metavar="S3_URL", help="the destination: s3://bucket/prefix"
    )
    cleanup.add_argument(
        "--older-than",
        type=_number(least=0.0, what="a number of hours"),
        default=24.0,
        metavar="HOURS",
        help="only uploads started at least HOURS ago (default: 24; keep it above the"
        " longest transfer: a running download's upload is aborted too)",
    )
    _add_s3_endpoint(cleanup)
    cleanup.set_defaults(offline="s3-cleanup")


def _add_queue_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """``ssemble enqueue``, ``worker`` and ``queue-status``: the work queue on Redis."""

    def queue_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--queue",
            metavar="URL",
            help="the queue's Redis: redis://host:port/db, rediss://... or"
            " unix:///path/redis.sock (default: $SSEMBLE_QUEUE_URL); never printed",
        )

    enqueue = command(
        "enqueue",
        "Put one download job per request id on the work queue, keyed by the id (an id"
        " already waiting or running is not queued twice); ssemble worker runs them."
        " Needs ssemble-async[distributed].",
        "ssemble enqueue -i ids.txt --queue redis://localhost:6379/0",
        api=False,
    )
    enqueue.add_argument("ids", nargs="*", metavar="ID", help="request ids")
    enqueue.add_argument("--input", "-i", metavar="FILE", help="read ids from FILE (- = stdin)")
    queue_option(enqueue)
    enqueue.add_argument(
        "--output",
        "-o",
        dest="dest",
        metavar="DEST",
        help="where the workers put these clips, as seen on their machines (default: each"
        " worker's -o)",
    )
    enqueue.add_argument(
        "--heartbeat-timeout",
        type=_whole(1),
        default=60,
        metavar="SECONDS",
        help="seconds without a heartbeat after which a job's worker is taken for dead and"
        " the job goes to another, 1 or more (default: 60)",
    )
    enqueue.add_argument(
        "--retries",
        type=_whole(1),
        default=5,
        metavar="N",
        help="runs a job may take when it fails for a passing cause, 1 or more (default: 5;"
        " runs that find the request not ready do not count)",
    )
    picking = enqueue.add_argument_group("choosing and naming clips (as for ssemble download)")
    picking.add_argument("--top", type=_whole(1), metavar="N", help="only the N best clips")
    picking.add_argument(
        "--min-score",
        type=_number(least=0.0, what="a score"),
        metavar="SCORE",
        help="only clips scoring at least SCORE",
    )
    picking.add_argument(
        "--name", type=_name_template, metavar="TEMPLATE", help="file names from a template"
    )

    worker = command(
        "worker",
        "Run the download jobs of the work queue until Ctrl-C or SIGTERM (jobs in flight go"
        " back to the queue; their .part files are resumed). One line per job run. A job"
        " whose request is not done yet is checked again later, without holding a slot."
        " Give every worker the same --quota-url (the queue's Redis) to share the quota.",
        "ssemble worker --queue redis://localhost:6379/0 --quota-url redis://localhost:6379/0"
        " -o clips/",
    )
    queue_option(worker)
    worker.add_argument("--output", "-o", default=".", metavar="DIR", help="default: .")
    worker.add_argument(
        "--concurrency",
        type=_whole(1, cap=MAX_CONCURRENCY),
        default=4,
        help=f"requests at once, 1 or more (at most {MAX_CONCURRENCY}; default: 4)",
    )
    worker.add_argument(
        "--sweep-interval",
        type=_whole(1),
        default=10,
        metavar="SECONDS",
        help="seconds between looks for jobs whose worker died, 1 or more (default: 10)",
    )
    _add_poll_interval(worker)
    _add_s3_endpoint(worker)

    status = command(
        "queue-status",
        "Count the work queue's jobs: pending, scheduled (not ready yet), active, done and"
        " failed (the last two over 7 days), and the workers running.",
        "ssemble queue-status --queue redis://localhost:6379/0 --json",
        api=False,
    )
    queue_option(status)


def build_parser() -> argparse.ArgumentParser:
    """The ``ssemble`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="Command line for the Ssemble AI-clipping API: create clipping jobs, "
        "wait for them and download every rendered clip, verified.",
        epilog="example: ssemble download 665a1b2c3d4e5f6a7b8c9d0e -o clips/\n" + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    _add_globals(parser, suppress=False)
    # no command: main() prints this help
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, help_text: str, example: str, *, api: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_globals(sub, suppress=True, api=api)
        return sub

    download = command(
        "download",
        "Download every clip of one or more requests, verified, into OUTPUT/<request>/.",
        "ssemble download 665a1b2c3d4e5f6a7b8c9d0e --wait -o clips/",
    )
    download.add_argument("ids", nargs="*", metavar="ID", help="request ids")
    download.add_argument("--input", "-i", metavar="FILE", help="read ids from FILE (- = stdin)")
    download.add_argument(
        "--output",
        "-o",
        default=".",
        metavar="DIR",
        help="default: .; or s3://bucket/prefix for S3-compatible storage (the s3 extra)",
    )
    _add_s3_endpoint(download)
    download.add_argument(
        "--concurrency",
        type=_whole(1, cap=MAX_CONCURRENCY),
        default=8,
        help=f"transfers at once, 1 or more (at most {MAX_CONCURRENCY}; default: 8)",
    )
    download.add_argument(
        "--chunk-size",
        type=_size_arg,
        default=MiB,
        metavar="SIZE",
        help="bytes per write: a number, or with k or m (KiB, MiB); 64k to 64m (default: 1m)",
    )
    download.add_argument(
        "--idle-timeout",
        type=_seconds(above=0.0),
        default=30.0,
        metavar="SECONDS",
        help="seconds without data before a retry, above 0 (default: 30)",
    )
    download.add_argument(
        "--recompile-wait",
        type=_seconds(least=0.0),
        default=600.0,
        metavar="SECONDS",
        help="seconds to wait for re-rendering clips before reporting them not_ready, 0 or"
        " more (default: 600)",
    )
    download.add_argument("--overwrite", action="store_true", help="download complete files again")
    download.add_argument(
        "--wait",
        action="store_true",
        help="wait for jobs that are not done, and for the hourly quota when it is spent",
    )
    _add_poll_interval(download)
    picking = download.add_argument_group("choosing and naming clips")
    picking.add_argument(
        "--top",
        type=_whole(1),
        metavar="N",
        help="only the N highest-scoring clips of each request (after --min-score)",
    )
    picking.add_argument(
        "--min-score",
        type=_number(least=0.0, what="a score"),
        metavar="SCORE",
        help="only clips scoring at least SCORE (clips without a score are left out)",
    )
    picking.add_argument(
        "--name",
        type=_name_template,
        metavar="TEMPLATE",
        help="file names from a template instead of the clip id, e.g. '{score:03.0f}-{title}';"
        f" fields: {', '.join(NAME_FIELDS)}. Made safe (other characters than ASCII"
        " letters, digits, . _ - become _) and unique; sidecar and manifest keep the clip id;"
        " a complete file keeps the name it was first given",
    )
    download.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be fetched, where and how many bytes, writing nothing (reads"
        " each request once, as a download would; one HEAD per clip on the clip host)",
    )

    for name, help_text in (
        ("get", "Show a request and its clips."),
        ("status", "Show the progress of a job."),
    ):
        sub = command(name, help_text, f"ssemble {name} 665a1b2c3d4e5f6a7b8c9d0e")
        sub.add_argument("id", metavar="ID")

    wait = command(
        "wait",
        "Wait for a job to finish, showing its steps; then show its clips. A spent hourly"
        " quota is waited for too (--no-wait-for-quota stops instead).",
        "ssemble wait 665a1b2c3d4e5f6a7b8c9d0e --timeout 1800",
    )
    wait.add_argument("id", metavar="ID")
    wait.add_argument(
        "--timeout",
        type=_seconds(above=0.0),
        default=3600.0,
        metavar="SECONDS",
        help="seconds, above 0 (default: 3600)",
    )
    _add_poll_interval(wait)

    create = command(
        "create",
        "Start a clipping job (costs one credit); prints its request id.",
        "ssemble create --url https://www.youtube.com/watch?v=dQw4w9WgXcQ --start 0 --end 600",
    )
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--url", metavar="URL", help="the video: a YouTube watch URL (not a Shorts URL)"
    )
    source.add_argument(
        "--file-url", metavar="URL", help="the video: a public http(s) URL of a video file"
    )
    create.add_argument(
        "--start",
        type=_seconds(least=0.0),
        required=True,
        metavar="SECONDS",
        help="where the clipped window starts, 0 or more",
    )
    create.add_argument(
        "--end",
        type=_seconds(above=0.0),
        required=True,
        metavar="SECONDS",
        help="where it ends: 1 to 1200 seconds after --start",
    )
    create.add_argument(
        "--preferred-length",
        choices=PREFERRED_LENGTHS,
        metavar="LENGTH",
        help=f"clip length: {', '.join(PREFERRED_LENGTHS)} (API default: under60sec)",
    )
    create.add_argument(
        "--language",
        metavar="CODE",
        help="spoken language, an ISO 639-1 code such as en, es, fr, de (API default: en)",
    )
    create.add_argument(
        "--caption-language",
        metavar="CODE",
        help="caption language, when it differs from --language",
    )
    create.add_argument(
        "--template-id",
        type=_template_id,
        metavar="ID",
        help="caption template (ssemble templates lists them; API default: Karaoke)",
    )
    create.add_argument(
        "--no-clipping",
        action="store_const",
        const=True,
        default=None,
        help="no highlight picking: the whole window becomes one clip",
    )
    create.add_argument(
        "--hook-title",
        action="store_const",
        const=True,
        default=None,
        help="an animated hook title at the start of each clip",
    )
    for flag, kind, what in (
        ("meme-hook", "meme-hooks", "a 2-5 s meme clip before each clip"),
        ("game-video", "game-videos", "split screen: the speaker on top, gameplay below"),
        ("music", "music", "background music"),
    ):
        create.add_argument(f"--{flag}", action="store_const", const=True, default=None, help=what)
        create.add_argument(
            f"--{flag}-name",
            metavar="NAME",
            help=f"with --{flag}: the exact name of one (ssemble {kind} lists them;"
            " API default: a random one)",
        )
    create.add_argument(
        "--music-volume",
        type=_number(least=0.0, most=100.0),
        metavar="0-100",
        help="with --music: 0 to 100 (API default: 10; 20 to 40 sits under speech)",
    )
    create.add_argument(
        "--cta-enabled",
        action="store_const",
        const=True,
        default=None,
        help="a call-to-action text overlay (needs --cta-text)",
    )
    create.add_argument(
        "--cta-text",
        metavar="TEXT",
        help="call-to-action text, at most 200 characters (turns the overlay on)",
    )
    create.add_argument(
        "--layout",
        choices=LAYOUTS,
        metavar="LAYOUT",
        help="framing: auto (the AI frames the speaker), fill (crop to 9:16), fit (the whole"
        " frame, with bars if needed), square (1:1) (API default: auto)",
    )
    create.add_argument(
        "--webhook-url",
        metavar="URL",
        help="where the API POSTs when the job completes or fails (ssemble listen prints one)",
    )

    listing = command("list", "List your requests.", "ssemble list --status completed")
    listing.add_argument(
        "--status",
        choices=("queued", "processing", "completed", "failed", "cancelled"),
        help="only the requests in this state",
    )
    listing.add_argument("--sort-by", choices=("createdAt", "updatedAt"), help="the order's field")
    listing.add_argument("--sort-order", choices=("asc", "desc"), help="ascending or descending")
    listing.add_argument("--limit", type=_whole(1), help="show at most this many")
    listing.add_argument(
        "--page-size", type=_whole(1, 100), default=20, help="1 to 100 (default: 20)"
    )

    delete = command(
        "delete", "Delete a request and its files.", "ssemble delete 665a1b2c3d4e5f6a7b8c9d0e"
    )
    delete.add_argument("id", metavar="ID")
    delete.add_argument("--missing-ok", action="store_true", help="succeed if already gone")

    quota = command(
        "quota",
        "Show the API key's quota as last seen (X-RateLimit-*): the hourly limit, the calls"
        " left this hour and today, and when the hour resets. Every run that talks to the API"
        " saves these figures; with none saved yet, asks the API (one call).",
        "ssemble quota --refresh",
    )
    quota.add_argument(
        "--refresh",
        action="store_true",
        help="ask the API now instead of showing the saved figures (costs one call:"
        " GET /templates)",
    )

    listen = command(
        "listen",
        "Receive Ssemble's webhook deliveries and download each finished job's clips (one"
        " API call per job); prints first the URL to pass as --webhook-url. Jobs that ended"
        " without a delivery while it ran are found too. Ctrl-C stops it (downloads cut"
        " there resume on the next run).",
        "ssemble listen --port 8787 -o clips/",
    )
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on")
    listen.add_argument(
        "--port", type=_port, default=8787, help="port (default: 8787; 0 for any free one)"
    )
    listen.add_argument(
        "--path",
        default="/ssemble/webhook",
        type=_url_path,
        help="route of the deliveries; put a secret token in it to keep strangers out",
    )
    listen.add_argument("--output", "-o", default=".", metavar="DIR", help="download folder")

    _add_queue_commands(command)
    _add_s3_cleanup(command)

    command("templates", "List the caption templates.", "ssemble templates")
    for kind in ("music", "game-videos", "meme-hooks"):
        command(kind, f"List the {kind.replace('-', ' ')}.", f"ssemble {kind} --json")

    fake = command(
        "fake-server",
        "Run the built-in fake Ssemble API on 127.0.0.1 for your integration tests.",
        "ssemble fake-server --port 8765 --api-key sk_ssemble_test --jobs 3",
        api=False,
    )
    fake.add_argument("--port", type=_port, default=0, help="API port (default: any free one)")
    fake.add_argument(
        "--clip-port", type=_port, default=0, help="clip host port (default: any free one)"
    )
    fake.add_argument(
        "--jobs",
        type=_whole(0, 1000),
        default=2,
        help="completed jobs to start with, 0 to 1000 (default: 2)",
    )
    fake.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        help="the key the fake accepts: letters, digits, . _ - (default: a new random"
        " sk_ssemble_ key; the export line prints it)",
    )
    fake.set_defaults(offline="fake-server")

    demo = command(
        "demo",
        "Show the whole product against the built-in fake API: create, wait, download.",
        "ssemble demo -o ssemble-demo/",
        api=False,
    )
    demo.add_argument(
        "--output",
        "-o",
        default="ssemble-demo",
        metavar="DIR",
        help="folder for the clips (default: ssemble-demo)",
    )
    demo.add_argument(
        "--webhooks",
        action="store_true",
        help="show the webhook flow instead: create with a webhook URL, the fake calls a"
        " local receiver, the clips land on disk without polling",
    )
    demo.set_defaults(offline="demo")

    auth = command(
        "auth",
        "Save, show or remove the API key the commands use. The key is looked for in"
        " --api-key, then SSEMBLE_API_KEY, then the file ssemble auth login saves.",
        "echo $SSEMBLE_API_KEY | ssemble auth login",
    )
    actions = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    for name, help_text, example in (
        (
            "login",
            "Save an API key in $XDG_CONFIG_HOME/ssemble/credentials (default:"
            " ~/.config/ssemble/), readable by you alone. The key is read from a hidden"
            " prompt, or from stdin when piped; never from the command line.",
            "ssemble auth login --verify",
        ),
        (
            "status",
            "Say which API key the commands use and where it comes from (masked); exit 1"
            " when there is none.",
            "ssemble auth status",
        ),
        ("logout", "Delete the saved API key.", "ssemble auth logout"),
    ):
        action = actions.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}\n{EPILOG}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_globals(action, suppress=True)
        if name == "login":
            action.add_argument(
                "--verify",
                action="store_true",
                help="check the key with the API before saving it (costs one call: GET /templates)",
            )

    completion = command(
        "completion",
        "Print the shell completion script of ssemble: commands, options and their values"
        " complete with TAB.",
        'eval "$(ssemble completion bash)"  (in ~/.bashrc; zsh: the same in'
        " ~/.zshrc; fish: ssemble completion fish | source)",
        api=False,
    )
    completion.add_argument("shell", choices=SHELLS, help="bash, zsh or fish")
    return parser
