"""The ``ssemble`` command line: a thin layer over the public API, with no logic of its own.

Parsing (`._parser`) imports nothing heavy, so ``ssemble --help``, ``--version`` and a
usage error are quick; the commands (`._app`) load the client when one runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ssemble_async._cli._parser import EXIT_OK, build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ssemble`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare ``ssemble``: what it can do
        parser.print_help()
        return EXIT_OK
    if args.command == "completion":  # read at every shell start: no client to load
        from ssemble_async._cli._completion import completion_script  # noqa: PLC0415

        print(completion_script(parser, args.shell), end="")
        return EXIT_OK
    from ssemble_async._cli._app import run_command  # noqa: PLC0415 - loaded once needed

    return run_command(args)
