"""One worker process of the distributed tests: API calls through a quota shared in Redis.

    python -m tests.distributed._worker BASE_URL API_KEY QUOTA_URL REQUEST_ID CALLS TASKS SKEW

``TASKS`` tasks make up to ``CALLS`` calls in all (``GET /shorts/:id/status``), stopping when
the shared budget says the quota is spent; ``SKEW`` seconds are added to this process's
clock (a worker whose clock is wrong). Prints one JSON line: calls answered, calls held
back by the governor, and 429s received.
"""

from __future__ import annotations

import json
import sys

import anyio

from ssemble_async import Client, QuotaPolicy, RateLimitError
from ssemble_async._clock import _State


async def main(argv: list[str]) -> None:
    base_url, api_key, quota_url, request_id = argv[:4]
    calls, tasks, skew = int(argv[4]), int(argv[5]), float(argv[6])
    _State.skipped = skew  # this process's clock, wrong by SKEW seconds
    tally = {"answered": 0, "held": 0, "refused_429": 0}
    left = [calls]

    async def work(client: Client) -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                await client.get_status(request_id)
                tally["answered"] += 1
            except RateLimitError as exc:
                tally["held" if not exc.sent else "refused_429"] += 1
                return

    quota = QuotaPolicy(on_exhausted="raise")
    async with (
        Client(api_key, base_url=base_url, quota=quota, quota_url=quota_url) as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(tasks):
            group.start_soon(work, client)
    print(json.dumps(tally), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
