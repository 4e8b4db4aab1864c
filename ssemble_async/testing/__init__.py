"""A fake Ssemble API for tests, demos and local development.

:class:`FakeSsembleAPI` serves the whole Ssemble API v1 from an ``aiohttp.web`` app on
127.0.0.1 (a free port), plus a second server, the clip host, that serves the rendered clips
as MP4 files. Point a client at :attr:`FakeSsembleAPI.base_url` with
:attr:`FakeSsembleAPI.api_key`::

    from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

    async with FakeSsembleAPI() as fake:
        request_id = fake.add_job(FakeJob(clips=[FakeClip(viral_score=91), FakeClip(error=True)]))
        ...  # call fake.base_url with the header "X-API-Key: <fake.api_key>"

Jobs are scripted: a :class:`FakeJob` walks through its steps one read (one
``GET /shorts/:id/status`` or ``GET /shorts/:id``, or one ``GET /shorts`` page listing it)
at a time, or by the clock (``seconds_per_step``, ``finishes_after``), and ends
``completed``, ``failed`` or ``cancelled``. Clips can be error clips or recompiling ones
whose URL changes. :class:`ApiFault` and :class:`ClipFault` inject proxy errors, slow
answers, stalled or dropped downloads; :meth:`FakeSsembleAPI.set_quota` and the
``quota_window`` argument script the rate-limit headers and 429s. A job created with a
``webhookUrl`` (or a :class:`FakeJob` with ``webhook_url``) gets its webhook POSTed when it
ends, with the real service's retries; every attempt is recorded as a
:class:`WebhookDelivery`, and :class:`WebhookFault` loses, duplicates or delays deliveries.
Every request either server received is recorded, and :attr:`FakeSsembleAPI.calls` and
:attr:`FakeSsembleAPI.rate_limited` count them by endpoint.

The fake keeps time by the SDK's clock: under ``ssemble_async.instant_waits()`` its quota
window, job progress, timestamps and ``Date`` headers follow the virtual clock, so quota
experiments over hours run in moments. ``clock_skew`` sets its clock ahead or behind.

With pytest, the ``fake_ssemble`` fixture (registered by this package's pytest plugin)
yields a started :class:`FakeSsembleAPI` to ``anyio``-marked tests.
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
