"""The ``ssemble`` command line: a thin layer over the public API, with no logic of its own.

Parsing (:mod:`._parser`) imports nothing heavy, so ``ssemble --help``, ``--version`` and a
usage error are quick; the commands (:mod:`._app`) load the client when one runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from ssemble_async._cli._parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ssemble`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    from ssemble_async._cli._app import run_command  # noqa: PLC0415 - loaded once needed

    return run_command(args)
