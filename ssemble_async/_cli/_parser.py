"""The ``ssemble`` argument parser: flags, their checks and help, and nothing heavy.

Kept apart from the commands so that ``ssemble --help``, ``--version`` and a usage error
import neither the HTTP stack nor the terminal library.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from ssemble_async._ids import is_hex24

PROG = "ssemble"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MiB = 1024 * 1024


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""


def _fail(message: str, code: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


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
        "--quota-url",
        default=default,
        metavar="URL",
        help="where the key's quota budget is kept (default: $SSEMBLE_QUOTA_URL, else this"
        " process's own; local:// and memory:// name that too)",
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


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` (to ``maximum``)."""
    wanted = f"{minimum} or more" if maximum is None else f"{minimum} to {maximum}"

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


EPILOG = "exit codes: 0 all good, 1 a clip or call failed, 2 usage error, 130 interrupted"


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
    download.add_argument(
        "--concurrency", type=_whole(1), default=8, help="transfers at once (default: 8)"
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
    source.add_argument("--url", help="YouTube watch URL")
    source.add_argument("--file-url", help="public video file URL")
    create.add_argument(
        "--start", type=_seconds(least=0.0), required=True, metavar="SECONDS", help="0 or more"
    )
    create.add_argument(
        "--end",
        type=_seconds(above=0.0),
        required=True,
        metavar="SECONDS",
        help="1 to 1200 seconds after --start",
    )
    for option in ("preferred-length", "language", "caption-language"):
        create.add_argument(f"--{option}")
    create.add_argument(
        "--template-id", type=_template_id, metavar="ID", help="see ssemble templates"
    )
    for option in ("meme-hook-name", "game-video-name", "music-name", "layout", "webhook-url"):
        create.add_argument(f"--{option}")
    create.add_argument("--cta-text", help="call-to-action text (turns the CTA on)")
    create.add_argument("--music-volume", type=_number(least=0.0, most=100.0), help="0 to 100")
    for flag in (
        "no-clipping",
        "hook-title",
        "meme-hook",
        "game-video",
        "cta-enabled",
        "music",
    ):
        create.add_argument(f"--{flag}", action="store_const", const=True, default=None)

    listing = command("list", "List your requests.", "ssemble list --status completed")
    listing.add_argument(
        "--status", choices=("queued", "processing", "completed", "failed", "cancelled")
    )
    listing.add_argument("--sort-by", choices=("createdAt", "updatedAt"))
    listing.add_argument("--sort-order", choices=("asc", "desc"))
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

    command("templates", "List the caption templates.", "ssemble templates")
    for kind in ("music", "game-videos", "meme-hooks"):
        command(kind, f"List the {kind.replace('-', ' ')}.", f"ssemble {kind} --json")

    fake = command(
        "fake-server",
        "Run the built-in fake Ssemble API on 127.0.0.1 for your integration tests.",
        "ssemble fake-server --port 8765 --api-key sk_ssemble_test --jobs 3",
    )
    fake.add_argument("--port", type=_port, default=0, help="API port (default: any free one)")
    fake.add_argument(
        "--clip-port", type=_port, default=0, help="clip host port (default: any free one)"
    )
    fake.add_argument(
        "--jobs", type=_whole(0, 1000), default=2, help="completed jobs to start with (default: 2)"
    )
    fake.set_defaults(offline="fake-server")

    demo = command(
        "demo",
        "Show the whole product against the built-in fake API: create, wait, download.",
        "ssemble demo -o ssemble-demo/",
    )
    demo.add_argument("--output", "-o", default="ssemble-demo", metavar="DIR")
    demo.add_argument(
        "--webhooks",
        action="store_true",
        help="show the webhook flow instead: create with a webhook URL, the fake calls a"
        " local receiver, the clips land on disk without polling",
    )
    demo.set_defaults(offline="demo")
    return parser
