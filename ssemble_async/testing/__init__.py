"""A fake Ssemble API for tests, demos and local development.

[`FakeSsembleAPI`][ssemble_async.testing.FakeSsembleAPI] serves the whole Ssemble API v1 from an
``aiohttp.web`` app on 127.0.0.1 (a free port), plus a second server, the clip host, that serves the
rendered clips as MP4 files. Point a client at
[`FakeSsembleAPI.base_url`][ssemble_async.testing.FakeSsembleAPI.base_url] with
[`FakeSsembleAPI.api_key`][ssemble_async.testing.FakeSsembleAPI]:

```python
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

async with FakeSsembleAPI() as fake:
    request_id = fake.add_job(FakeJob(clips=[FakeClip(viral_score=91), FakeClip(error=True)]))
    ...  # call fake.base_url with the header "X-API-Key: <fake.api_key>"
```

Jobs are scripted: a [`FakeJob`][ssemble_async.testing.FakeJob] walks through its steps one read
(one ``GET /shorts/:id/status`` or ``GET /shorts/:id``, or one ``GET /shorts`` page listing it)
at a time, or by the clock (``seconds_per_step``, ``finishes_after``), and ends
``completed``, ``failed`` or ``cancelled``. Clips can be error clips or recompiling ones
whose URL changes. [`ApiFault`][ssemble_async.testing.ApiFault] and
[`ClipFault`][ssemble_async.testing.ClipFault] inject proxy errors, slow answers, stalled or dropped
downloads; [`FakeSsembleAPI.set_quota()`][ssemble_async.testing.FakeSsembleAPI.set_quota] and the
``quota_window`` argument script the rate-limit headers and 429s. A job created with a
``webhookUrl`` (or a [`FakeJob`][ssemble_async.testing.FakeJob] with ``webhook_url``) gets its
webhook POSTed when it ends, with the real service's retries; every attempt is recorded as a
[`WebhookDelivery`][ssemble_async.testing.WebhookDelivery], and
[`WebhookFault`][ssemble_async.testing.WebhookFault] loses, duplicates or delays deliveries. Every
request either server received is recorded, and
[`FakeSsembleAPI.calls`][ssemble_async.testing.FakeSsembleAPI] and
[`FakeSsembleAPI.rate_limited`][ssemble_async.testing.FakeSsembleAPI] count them by
endpoint.

The fake keeps time by the SDK's clock: under ``ssemble_async.instant_waits()`` its quota
window, job progress, timestamps and ``Date`` headers follow the virtual clock, so quota
experiments over hours run in moments. ``clock_skew`` sets its clock ahead or behind.

With pytest, the ``fake_ssemble`` fixture (registered by this package's pytest plugin)
yields a started [`FakeSsembleAPI`][ssemble_async.testing.FakeSsembleAPI] to ``anyio``-marked tests.
"""

from ._fake import WEBHOOK_USER_AGENT, FakeSsembleAPI
from ._mp4 import make_mp4
from ._scenario import (
    ApiFault,
    ClipFault,
    ClipState,
    FakeClip,
    FakeJob,
    JobState,
    RecordedRequest,
    WebhookDelivery,
    WebhookFault,
)

__all__ = [
    "WEBHOOK_USER_AGENT",
    "ApiFault",
    "ClipFault",
    "ClipState",
    "FakeClip",
    "FakeJob",
    "FakeSsembleAPI",
    "JobState",
    "RecordedRequest",
    "WebhookDelivery",
    "WebhookFault",
    "make_mp4",
]
