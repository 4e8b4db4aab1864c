"""Run one ``download_many`` in a fresh process and print what it cost, as JSON.

Started by ``test_load.py`` (which serves the fake API from its own process), so that the
memory, file descriptors and tasks measured here are the client's alone::

    python _load_child.py BASE_URL API_KEY DEST CONCURRENCY ID [ID ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ssemble_async import Client


def open_fds() -> list[str]:
    """What each open file descriptor of this process points at."""
    targets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:  # the descriptor of the listing itself, gone already
            continue
    return sorted(targets)


def memory_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak so far) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def main(base_url: str, api_key: str, dest: str, concurrency: int, ids: list[str]) -> None:
    this = asyncio.current_task()
    tasks_before = {t for t in asyncio.all_tasks() if t is not this}
    fds_before = open_fds()
    rss_before = memory_kib("VmRSS")
    started = time.monotonic()
    async with Client(api_key, base_url=base_url) as client:
        report = await client.download_many(
            ids, dest, concurrency=concurrency, chunk_size=64 * 1024
        )
    elapsed = time.monotonic() - started
    await asyncio.sleep(0)  # one turn of the loop: closed transports release their sockets
    tasks_after = {t for t in asyncio.all_tasks() if t is not this}
    fds_after = open_fds()
    result: dict[str, Any] = {
        "ok": report.ok,
        "counts": {state.value: n for state, n in report.counts().items()},
        "request_errors": {rid: str(error) for rid, error in report.request_errors.items()},
        "transferred": report.transferred,
        "elapsed": elapsed,
        "rss_before_kib": rss_before,
        "peak_kib": memory_kib("VmHWM"),
        "fds_before": fds_before,
        "fds_after": fds_after,
        "tasks_before": sorted(repr(t) for t in tasks_before),
        "tasks_after": sorted(repr(t) for t in tasks_after),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    base_url, api_key, dest, concurrency, *ids = sys.argv[1:]
    asyncio.run(main(base_url, api_key, dest, int(concurrency), ids))
