"""Parsing cost: ssemble_async's converter against bare ``json.loads`` in the same run.

Prints a table: per-call time for each payload, and the ratio of our full parse (JSON +
validation + models) to the bare JSON decode that any client has to pay anyway. The target
(issue 11): a request of 100 clips and 2,000 sentences within 3x ``json.loads``.

    python benchmarks/parsing.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ssemble_async._converter import parse_shorts_request

SEED = Path(__file__).parent.parent / "tests" / "payloads" / "get_shorts_seed.json"


def big_request(clips: int, sentences: int) -> bytes:
    """A completed request with many clips and a long transcript."""
    data = json.loads(SEED.read_bytes())["data"]
    template = data["shorts"][0]
    data["sentences"] = [
        {
            "index": i,
            "sentence": f"Sentence number {i} of the talk.",
            "start": i * 2.0,
            "end": i * 2.0 + 1.9,
        }
        for i in range(sentences)
    ]
    data["shorts"] = [
        {
            **template,
            "id": str(uuid.uuid4()),
            "viral_score": i % 100,
            "sentenceIndexes": list(range(i, i + 20)),
        }
        for i in range(clips)
    ]
    return json.dumps({"data": data}).encode()


def per_call(func: Callable[[], object], rounds: int) -> float:
    """Best-of-5 mean seconds per call."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            func()
        best = min(best, (time.perf_counter() - started) / rounds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    payloads = {
        "seed example (2 clips)": SEED.read_bytes(),
        "100 clips, 2000 sentences": big_request(100, 2000),
    }
    print(f"{'payload':<28} {'bytes':>9} {'json.loads':>12} {'ssemble_async':>14} {'ratio':>7}")
    for name, body in payloads.items():
        rounds = max(1, args.rounds if len(body) < 10_000 else args.rounds // 20)
        baseline = per_call(lambda body=body: json.loads(body), rounds)
        ours = per_call(lambda body=body: parse_shorts_request(body), rounds)
        target = "  (target 3.0x: " + ("met)" if ours / baseline <= 3.0 else "MISSED)")
        print(
            f"{name:<28} {len(body):>9} {baseline * 1e6:>10.1f}us {ours * 1e6:>12.1f}us"
            f" {ours / baseline:>6.1f}x" + (target if name.startswith("100 clips") else "")
        )


if __name__ == "__main__":
    main()
