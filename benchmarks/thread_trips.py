"""What one thread trip costs: ``anyio.to_thread.run_sync`` against the transfers' own pool.

A transfer hands its file work to a thread once per clip and once per write batch; this
measures the trip alone (a function that returns at once), ``--tasks`` at a time, as the
downloader runs them. Rounds alternate between the ways so that a noisy machine hits
each alike; the medians per trip are printed with their ratio to anyio's.

    python benchmarks/thread_trips.py [--trips N] [--tasks N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio.to_thread

from ssemble_async._transfer import in_thread


def nothing() -> int:
    return 1


async def _measure(trip: Callable[[], Awaitable[int]], trips: int, tasks: int) -> list[float]:
    """Wall, user and system CPU per trip, in microseconds."""

    async def task() -> None:
        for _ in range(trips // tasks):
            await trip()

    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*(task() for _ in range(tasks)))
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    done = trips // tasks * tasks
    return [
        wall / done * 1e6,
        (after.ru_utime - before.ru_utime) / done * 1e6,
        (after.ru_stime - before.ru_stime) / done * 1e6,
    ]


async def run(trips: int, tasks: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    ways: dict[str, Callable[[], Awaitable[int]]] = {
        "anyio.to_thread.run_sync": lambda: anyio.to_thread.run_sync(nothing),
        "loop default executor": lambda: loop.run_in_executor(None, nothing),
        "ssemble_async in_thread": lambda: in_thread(nothing),
    }
    samples: dict[str, list[list[float]]] = {name: [] for name in ways}
    for trip in ways.values():  # start every pool's threads
        await _measure(trip, tasks * 4, tasks)
    for _ in range(rounds):
        for name, trip in ways.items():
            samples[name].append(await _measure(trip, trips, tasks))
    base = statistics.median(sum(s[1:]) for s in samples["anyio.to_thread.run_sync"])
    print(f"one thread trip, {tasks} at a time, median of {rounds} rounds of {trips} trips")
    print(f"{'way':28} {'wall us':>8} {'user us':>8} {'sys us':>8} {'CPU vs anyio':>13}")
    for name, rows in samples.items():
        wall, user, system = (statistics.median(column) for column in zip(*rows, strict=True))
        cpu = statistics.median(sum(s[1:]) for s in rows)
        print(f"{name:28} {wall:8.1f} {user:8.1f} {system:8.1f} {cpu / base:12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trips", type=int, default=8000, help="trips per round (8000)")
    parser.add_argument("--tasks", type=int, default=8, help="tasks at a time (8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per way (5)")
    options = parser.parse_args()
    asyncio.run(run(options.trips, options.tasks, options.rounds))


if __name__ == "__main__":
    main()
