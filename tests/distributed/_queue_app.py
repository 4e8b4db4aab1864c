"""A SAQ app of one's own running the download jobs: saq tests.distributed._queue_app.settings

The queue and the API come from the environment (``SSEMBLE_QUEUE_URL``, ``SSEMBLE_API_KEY``,
``SSEMBLE_BASE_URL``); the jobs name their destination.
"""

from __future__ import annotations

import os
from typing import Any

from ssemble_async.distributed import worker_settings


def settings() -> dict[str, Any]:
    return worker_settings(os.environ["SSEMBLE_QUEUE_URL"], dest="unused", sweep_interval=1)
