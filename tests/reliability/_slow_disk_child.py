"""Run the ``ssemble`` command on a slow disk: every write under ROOT takes milliseconds.

Started by ``test_soak.py``, which then interrupts this process (SIGINT or SIGKILL) at a
random moment: with the writes slowed down, that moment very likely falls *inside* a write
to a clip's ``.part`` or to the download's bookkeeping, the cut point a fast disk almost
never shows::

    python _slow_disk_child.py ROOT MIN_MS MAX_MS SEED -- download ID ... -o ROOT ...

Only writes to files under ROOT are slowed (stdout, stderr and sockets are not), and each
is split in two halves with a pause before each half, so a kill may also land between the
halves and leave half a block on disk: a torn write, as a crash can leave one.

What is slowed, without touching aiohttp: ``os.write``, ``os.pwrite``, ``os.writev`` and
``os.pwritev`` on raw descriptors, and the raw file behind the buffered files that
``aiofiles.open`` returns (the ``.part`` writes of the current transport go there). The
wrappers are installed before ``ssemble_async`` is imported, so a module that did
``from os import pwrite`` gets the slow one too.
"""

from __future__ import annotations

import io
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

_rng = random.Random()
_rng_lock = threading.Lock()
_root = ""
_pause_ms = (1.0, 3.0)


def _pause() -> None:
    with _rng_lock:
        seconds = _rng.uniform(*_pause_ms) / 1000
    time.sleep(seconds)


def _under_root(fd: int) -> bool:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target.startswith(_root + os.sep)


def _halves(data: Any) -> tuple[memoryview, memoryview]:
    view = memoryview(data).cast("B")
    half = len(view) // 2
    return view[:half], view[half:]


def _slow_write(real: Callable[[int, Any], int]) -> Callable[[int, Any], int]:
    def write(fd: int, data: Any) -> int:
        if not _under_root(fd):
            return real(fd, data)
        first, second = _halves(data)
        _pause()
        done = real(fd, first)
        if done < len(first) or not second:
            return done
        _pause()
        return done + real(fd, second)

    return write


def _slow_pwrite(real: Callable[[int, Any, int], int]) -> Callable[[int, Any, int], int]:
    def pwrite(fd: int, data: Any, offset: int) -> int:
        if not _under_root(fd):
            return real(fd, data, offset)
        first, second = _halves(data)
        _pause()
        done = real(fd, first, offset)
        if done < len(first) or not second:
            return done
        _pause()
        return done + real(fd, second, offset + done)

    return pwrite


def _slow_vector(real: Callable[..., int]) -> Callable[..., int]:
    def writev(fd: int, buffers: Sequence[Any], *rest: Any) -> int:
        if _under_root(fd):
            _pause()
        return real(fd, buffers, *rest)

    return writev


class _SlowFileIO(io.FileIO):
    """The raw file under a buffered one: each write paused and split in two."""

    def write(self, data: Any, /) -> int:
        first, second = _halves(data)
        _pause()
        done = super().write(first)
        if done is None or done < len(first) or not second:
            return done or 0
        _pause()
        return done + (super().write(second) or 0)


def _slow_open(real_open: Callable[..., Any]) -> Callable[..., Any]:
    """``open`` for aiofiles: binary writable files under ROOT get a slow raw file."""

    def open_(file: Any, mode: str = "r", buffering: int = -1, **kwargs: Any) -> Any:
        path = os.path.realpath(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        writable = "b" in mode and any(flag in mode for flag in "wa+")
        if not (writable and path.startswith(_root + os.sep) and buffering != 0):
            return real_open(file, mode, buffering, **kwargs)
        raw = _SlowFileIO(path, mode.replace("b", ""), opener=kwargs.get("opener"))
        if "+" in mode:
            return io.BufferedRandom(raw)
        return io.BufferedWriter(raw)

    return open_


def install(root: str, min_ms: float, max_ms: float, seed: str) -> None:
    global _root, _pause_ms  # noqa: PLW0603 - one process, configured once
    _root = os.path.realpath(root)
    _pause_ms = (min_ms, max_ms)
    _rng.seed(seed)
    os.write = _slow_write(os.write)
    os.pwrite = _slow_pwrite(os.pwrite)
    os.writev = _slow_vector(os.writev)
    os.pwritev = _slow_vector(os.pwritev)
    import aiofiles.threadpool

    aiofiles.threadpool.sync_open = _slow_open(aiofiles.threadpool.sync_open)


def main(argv: list[str]) -> int:
    root, min_ms, max_ms, seed, separator, *cli_args = argv
    if separator != "--":
        raise SystemExit("usage: _slow_disk_child.py ROOT MIN_MS MAX_MS SEED -- CLI ARGS")
    os.makedirs(root, exist_ok=True)
    install(root, float(min_ms), float(max_ms), seed)
    from ssemble_async._cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
