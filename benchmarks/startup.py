"""Start-up cost: importing the package and running ``ssemble --help`` / ``--version``.

Each case is a fresh interpreter, timed from spawn to exit (median of ``--repeat`` runs,
interleaved with the baseline ``python -c pass`` so that a noisy machine hits both alike).
Prints the wall time, the time above the baseline, and the targets (issue 11: ``import
ssemble_async`` within 0.15 s; issue 13: ``ssemble --help`` within 0.1 s).

    python benchmarks/startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PY = sys.executable
CLI = "from ssemble_async._cli import main; raise SystemExit(main())"

#: name, argv, the target in seconds (None: shown for reference)
CASES: tuple[tuple[str, list[str], float | None], ...] = (
    ("python -c pass (baseline)", [PY, "-c", "pass"], None),
    ("import ssemble_async", [PY, "-c", "import ssemble_async"], 0.15),
    ("ssemble --help", [PY, "-c", CLI, "--help"], 0.10),
    ("ssemble --version", [PY, "-c", CLI, "--version"], 0.10),
    ("ssemble download --help", [PY, "-c", CLI, "download", "--help"], 0.10),
    ("from ssemble_async import Client", [PY, "-c", "from ssemble_async import Client"], None),
)


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="runs per case (default: 15)")
    options = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    for _name, argv, _ in CASES:  # warm the file cache and the .pyc files
        once(argv)
    for _ in range(options.repeat):
        for name, argv, _ in CASES:
            times[name].append(once(argv))
    base = statistics.median(times[CASES[0][0]])
    print(f"start-up, median of {options.repeat} fresh interpreters ({sys.version.split()[0]})")
    print(f"{'case':36} {'wall s':>8} {'above base':>11} {'target':>8}  met")
    for name, _, target in CASES:
        wall = statistics.median(times[name])
        met = "" if target is None else ("yes" if wall <= target else "NO")
        shown = "" if target is None else f"{target:.2f}"
        print(f"{name:36} {wall:8.3f} {wall - base:11.3f} {shown:>8}  {met}")


if __name__ == "__main__":
    main()
