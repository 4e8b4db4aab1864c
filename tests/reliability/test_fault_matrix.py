"""The fault matrix: one multi-request download through ``Client.download_many`` per fault.

Every row runs the same download (three requests of four clips, from 6 KB to 600 KB)
against the fake API and clip host with one fault injected, and the test checks, whatever
the fault:

* every clip that can be downloaded ends byte-identical (sha256) to what the host served;
* nothing partial ever sits under a final ``*.mp4`` name (a thread watches ``dest`` during
  the run, and checks every final name it sees);
* each outcome's state and message are the ones the row expects (downloaded, or failed
  with the cause named), and requests that could not be read are in ``request_errors``;
* nothing is written outside ``dest`` (the test directory and its siblings are unchanged;
  the working directory is a sibling too), and nothing but clips, sidecars and manifests
  is left inside it;
* the clip host never receives the API key.

Rows then check what proves the fault was handled the intended way (a ``Range`` resume,
one re-read of the request for a fresh URL, the wait a 429 asked for, ...). Waits are
instant (``instant_waits``) except in the rows that need real time: the stalled transfer
(the idle timeout is real) and the refused connections (the retries must span the outage).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from ssemble_async import (
    Client,
    ClipOutcome,
    ClipState,
    DownloadReport,
    RetryPolicy,
    ServerError,
    ShortsRequest,
    SsembleError,
    Timeouts,
    instant_waits,
)
from ssemble_async.testing import ApiFault, ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import FinalNameWatch, api_reads, clip_gets, sha, snapshot

pytestmark = pytest.mark.anyio

SIZES = (600_000, 250_000, 40_000, 6_000)
REQUESTS = 3
BIG = SIZES[0]
RETRY = RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1, jitter=0)
HTML = b"<!DOCTYPE html><html><body><h1>Please sign in</h1></body></html>"
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
ACCESS_DENIED = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
RATE_LIMITED = b'{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}'


@attrs.define
class Scene:
    """What a row's ``arrange`` works with: the fake, the client and the scripted jobs."""

    fake: FakeSsembleAPI
    client: Client
    rids: list[str]
    clips: dict[str, list[str]]  # request id -> clip ids, biggest first

    def clip(self, request: int = 0, index: int = 0) -> str:
        return self.clips[self.rids[request]][index]

    def all_clips(self) -> list[str]:
        return [clip for rid in self.rids for clip in self.clips[rid]]


Check = Callable[[Scene, DownloadReport, Sequence[logging.LogRecord]], None]


@attrs.define(kw_only=True)
class Expect:
    """What a row expects besides "every other clip downloaded, byte-identical".

    Attributes:
        failed: clip id -> phrases its ``failed`` message must contain.
        request_errors: request id -> (exception type, phrase of its message).
        check: further assertions on what the fake recorded, the report and the logs.
        background: runs beside the download (in the same task group).
        requests: what to hand ``download_many`` instead of the request ids.
    """

    failed: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    request_errors: dict[str, tuple[type[SsembleError], str]] = attrs.field(factory=dict)
    check: Check | None = None
    background: Callable[[], Coroutine[Any, Any, None]] | None = None
    requests: list[str | ShortsRequest] | None = None


@attrs.frozen(kw_only=True)
class Row:
    fault: str
    arrange: Callable[[Scene], Awaitable[Expect]]
    idle_timeout: float = 5.0
    instant: bool = True
    retry: RetryPolicy = RETRY
    timeouts: Timeouts = attrs.field(factory=Timeouts)


def cut_after(clip_id: str, cut: int, *, reset: bool, times: int = 1) -> ClipFault:
    """End the body after ``cut`` bytes: a TCP reset, or a clean close (a short body).

    The last byte follows a short pause, so that the client has read the others when the
    connection ends: bytes still in flight are lost to it, and the row wants to know where
    the resume starts.
    """
    if cut == 0:
        return ClipFault(clip_id=clip_id, truncate_at=0, reset=reset, times=times)
    return ClipFault(
        clip_id=clip_id,
        truncate_at=cut,
        stall_at=cut - 1,
        stall_seconds=0.05,
        reset=reset,
        times=times,
    )


def ranges(scene: Scene, clip_id: str) -> list[str | None]:
    return [r.headers.get("Range") for r in clip_gets(scene.fake, clip_id)]


def outcome_of(report: DownloadReport, clip_id: str) -> ClipOutcome:
    return next(o for o in report.outcomes if o.clip_id == clip_id)


def retry_delays(records: Sequence[logging.LogRecord]) -> list[float]:
    """The waits the API session announced before its retries."""
    found = (re.search(r"retry \d+/\d+ in ([\d.]+) s", r.getMessage()) for r in records)
    return [float(match.group(1)) for match in found if match]


# -- clip host rows ------------------------------------------------------------------------


def reset_once(cut: int, *, reset: bool = True) -> Callable[[Scene], Awaitable[Expect]]:
    async def arrange(scene: Scene) -> Expect:
        big = scene.clip(0)
        scene.fake.inject_clip_fault(cut_after(big, cut, reset=reset))

        def check(scene: Scene, report: DownloadReport, _: object) -> None:
            sent = ranges(scene, big)
            assert len(sent) == 2
            assert sent[0] is None
            if cut >= 2:  # the bytes before the pause arrived: the retry resumes after them
                assert sent[1] in (f"bytes={cut - 1}-", f"bytes={cut}-")
            etag = scene.fake.jobs[scene.rids[0]].clips[big].etag
            if sent[1] is not None:
                assert clip_gets(scene.fake, big)[1].headers["If-Range"] == etag
            assert BIG <= outcome_of(report, big).transferred <= BIG + 1

        return Expect(check=check)

    return arrange


async def reset_repeatedly(scene: Scene) -> Expect:
    big, mid = scene.clip(0), scene.clip(1)
    scene.fake.inject_clip_fault(cut_after(big, 100_000, reset=True, times=5))
    scene.fake.inject_clip_fault(cut_after(mid, 50_000, reset=False, times=4))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        for clip_id, faults in ((big, 5), (mid, 4)):
            sent = ranges(scene, clip_id)
            assert len(sent) == faults + 1
            offsets = [int(r.removeprefix("bytes=").rstrip("-")) for r in sent[1:] if r]
            assert len(offsets) == faults  # every retry resumed
            assert offsets == sorted(offsets)  # ... further on each time
        assert outcome_of(report, big).transferred < BIG + 5 * 2

    return Expect(check=check)


async def reset_every_clip_once(scene: Scene) -> Expect:
    for clip_id in scene.all_clips():
        scene.fake.inject_clip_fault(cut_after(clip_id, 8, reset=True))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert all(len(clip_gets(scene.fake, c)) == 2 for c in scene.all_clips())

    return Expect(check=check)


async def range_ignored(scene: Scene) -> Expect:
    big = scene.clip(0)
    scene.fake.inject_clip_fault(cut_after(big, 300_000, reset=False))
    scene.fake.inject_clip_fault(ClipFault(clip_id=big, ignore_range=True))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        sent = ranges(scene, big)
        assert len(sent) == 2 and sent[1] is not None  # asked to resume, got the whole file
        assert outcome_of(report, big).transferred >= 299_999 + BIG

    return Expect(check=check)


async def stall(scene: Scene) -> Expect:
    big, other = scene.clip(0), scene.clip(2, 1)
    for clip_id in (big, other):
        scene.fake.inject_clip_fault(ClipFault(clip_id=clip_id, stall_at=100_000, stall_seconds=3))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        for clip_id in (big, other):
            sent = ranges(scene, clip_id)
            assert len(sent) >= 2  # more only if a loaded machine stalls the resume too
            assert sent[1] is not None and sent[1].startswith("bytes=")

    return Expect(check=check)


async def clip_5xx_burst(scene: Scene) -> Expect:
    for clip_id in scene.all_clips():
        for status in (500, 502, 503):
            scene.fake.inject_clip_fault(
                ClipFault(clip_id=clip_id, status=status, body=b"oops", content_type="text/plain")
            )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert all(len(clip_gets(scene.fake, c)) == 4 for c in scene.all_clips())

    return Expect(check=check)


async def clip_5xx_persistent(scene: Scene) -> Expect:
    bad = scene.clip(1)
    scene.fake.inject_clip_fault(ClipFault(clip_id=bad, status=503, times=1000))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert len(clip_gets(scene.fake, bad)) == RETRY.attempts

    return Expect(failed={bad: ("503", f"gave up after {RETRY.attempts} tries")}, check=check)


async def url_403_once(scene: Scene) -> Expect:
    clip_id, rid = scene.clip(2), scene.rids[2]
    scene.fake.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=403, body=ACCESS_DENIED, content_type="application/xml")
    )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert api_reads(scene.fake, rid) == 2  # the first read, then one for a fresh URL
        assert [api_reads(scene.fake, r) for r in scene.rids[:2]] == [1, 1]

    return Expect(check=check)


async def url_expired_before_download(scene: Scene) -> Expect:
    stale = [await scene.client.get_shorts(rid) for rid in scene.rids]
    rid = scene.rids[1]
    expired = scene.clip(1, 0)
    old = scene.fake.clip_url(rid, expired)
    new = scene.fake.expire_clip_url(rid, expired)

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        paths = [r.path for r in clip_gets(scene.fake, expired)]
        assert [p.split("/")[1] for p in paths] == [
            old.split("/")[3],  # the token of the old URL: 404
            new.split("/")[3],  # then the fresh one
        ]
        assert api_reads(scene.fake, rid) == 2  # the stale read, then one refresh

    return Expect(check=check, requests=list(stale))


async def url_refused_even_when_fresh(scene: Scene) -> Expect:
    clip_id = scene.clip(0, 2)
    scene.fake.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=403, body=ACCESS_DENIED, times=1000)
    )
    return Expect(failed={clip_id: ("expired", "still gives this URL")})


async def url_expired_while_api_fails(scene: Scene) -> Expect:
    stale = [await scene.client.get_shorts(rid) for rid in scene.rids]
    rid, clip_id = scene.rids[2], scene.clip(2, 1)
    scene.fake.inject_clip_fault(ClipFault(clip_id=clip_id, status=403, body=ACCESS_DENIED))
    scene.fake.inject_api_fault(
        ApiFault(status=502, body=HTML_502, path_prefix=f"/shorts/{rid}", times=1000)
    )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert api_reads(scene.fake, rid) == 1 + RETRY.attempts  # the stale read, the retries

    return Expect(
        failed={clip_id: ("no fresh URL", "502", "Bad Gateway")},
        requests=list(stale),
        check=check,
    )


async def redirect_to_other_host(scene: Scene) -> Expect:
    fake = scene.fake
    for clip_id in scene.clips[scene.rids[0]]:
        url = fake.clip_url(scene.rids[0], clip_id)
        elsewhere = url.replace("//127.0.0.1:", "//localhost:")
        fake.inject_clip_fault(
            ClipFault(clip_id=clip_id, status=302, headers={"Location": elsewhere})
        )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        port = scene.fake.clip_base_url.rsplit(":", 1)[1]
        for clip_id in scene.clips[scene.rids[0]]:
            hosts = [r.headers.get("Host") for r in clip_gets(scene.fake, clip_id)]
            assert hosts == [f"127.0.0.1:{port}", f"localhost:{port}"]

    return Expect(check=check)


async def redirect_loop(scene: Scene) -> Expect:
    clip_id = scene.clip(1, 2)
    url = scene.fake.clip_url(scene.rids[1], clip_id)
    scene.fake.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=302, headers={"Location": url}, times=1000)
    )
    return Expect(failed={clip_id: ("redirected more than 5 times",)})


async def redirect_to_non_http(scene: Scene) -> Expect:
    clip_id = scene.clip(2, 2)
    scene.fake.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=302, headers={"Location": "file:///etc/passwd"})
    )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert len(clip_gets(scene.fake, clip_id)) == 1  # not retried: no retry can mend it

    return Expect(failed={clip_id: ("cannot be fetched", "file:///etc/passwd")}, check=check)


async def html_200_once(scene: Scene) -> Expect:
    clip_id = scene.clip(0)
    scene.fake.inject_clip_fault(ClipFault(clip_id=clip_id, status=200, body=HTML))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert len(clip_gets(scene.fake, clip_id)) == 2

    return Expect(check=check)


async def html_200_always(scene: Scene) -> Expect:
    clip_id = scene.clip(2, 0)
    scene.fake.inject_clip_fault(ClipFault(clip_id=clip_id, status=200, body=HTML, times=1000))
    return Expect(failed={clip_id: ("text/html", "error page", "gave up")})


async def html_labelled_as_video(scene: Scene) -> Expect:
    clip_id = scene.clip(1, 1)
    scene.fake.inject_clip_fault(
        ClipFault(clip_id=clip_id, status=200, body=HTML, content_type="video/mp4", times=1000)
    )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert len(clip_gets(scene.fake, clip_id)) == 1  # not retried: it is no MP4

    return Expect(failed={clip_id: ("not an MP4",)}, check=check)


async def content_length_larger(scene: Scene) -> Expect:
    big, small = scene.clip(0), scene.clip(1, 3)
    scene.fake.inject_clip_fault(ClipFault(clip_id=big, content_length=BIG + 1000))
    scene.fake.inject_clip_fault(ClipFault(clip_id=small, content_length=SIZES[3] * 10))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        for clip_id in (big, small):
            assert len(clip_gets(scene.fake, clip_id)) >= 2  # the short answer was not trusted

    return Expect(check=check)


async def content_length_larger_on_resume(scene: Scene) -> Expect:
    big = scene.clip(0)
    scene.fake.inject_clip_fault(cut_after(big, 200_000, reset=False))
    scene.fake.inject_clip_fault(ClipFault(clip_id=big, content_length=BIG))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert len(clip_gets(scene.fake, big)) >= 3

    return Expect(check=check)


async def content_length_smaller_on_resume(scene: Scene) -> Expect:
    """A clean 206 that ends early: its Content-Range still tells the file's size."""
    big = scene.clip(0)
    scene.fake.inject_clip_fault(cut_after(big, 200_000, reset=False))
    scene.fake.inject_clip_fault(ClipFault(clip_id=big, content_length=100_000))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        sent = ranges(scene, big)
        assert len(sent) == 3
        assert sent[2] == f"bytes={int(str(sent[1])[6:-1]) + 100_000}-"

    return Expect(check=check)


# -- API rows ------------------------------------------------------------------------------


async def api_5xx_burst(scene: Scene) -> Expect:
    for status in (500, 502, 503):
        scene.fake.inject_api_fault(ApiFault(status=status, body=b"", content_type=""))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert sum(api_reads(scene.fake, rid) for rid in scene.rids) == REQUESTS + 3

    return Expect(check=check)


async def api_429_retry_after(scene: Scene) -> Expect:
    scene.fake.inject_api_fault(
        ApiFault(
            status=429,
            body=RATE_LIMITED,
            content_type="application/json",
            headers={"Retry-After": "7"},
            times=2,
        )
    )

    def check(scene: Scene, report: DownloadReport, logs: Sequence[logging.LogRecord]) -> None:
        assert retry_delays(logs) == [7.0, 7.0]

    return Expect(check=check)


async def api_429_reset_only(scene: Scene) -> Expect:
    reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=45)
    scene.fake.inject_api_fault(
        ApiFault(
            status=429,
            body=RATE_LIMITED,
            content_type="application/json",
            headers={
                "X-RateLimit-Limit-Hour": "100",
                "X-RateLimit-Remaining-Hour": "0",
                "X-RateLimit-Reset": reset.isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
        )
    )

    def check(scene: Scene, report: DownloadReport, logs: Sequence[logging.LogRecord]) -> None:
        # held until the reset by the quota governor, not retried after a backoff of a
        # second or so
        assert retry_delays(logs) == [0.0]
        waits = [r.getMessage() for r in logs if r.getMessage().startswith("quota spent")]
        assert waits and "(1 min)" in waits[0]

    return Expect(check=check)


async def api_html_502_burst(scene: Scene) -> Expect:
    scene.fake.inject_api_fault(ApiFault(status=502, body=HTML_502, times=3))

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert sum(api_reads(scene.fake, rid) for rid in scene.rids) == REQUESTS + 3

    return Expect(check=check)


async def api_html_502_persistent(scene: Scene) -> Expect:
    rid = scene.rids[1]
    scene.fake.inject_api_fault(
        ApiFault(status=502, body=HTML_502, path_prefix=f"/shorts/{rid}", times=1000)
    )

    def check(scene: Scene, report: DownloadReport, _: object) -> None:
        assert api_reads(scene.fake, rid) == RETRY.attempts
        error = report.request_errors[rid]
        assert isinstance(error, ServerError) and error.status == 502

    return Expect(request_errors={rid: (ServerError, "502 Bad Gateway")}, check=check)


async def api_refused_for_a_while(scene: Scene) -> Expect:
    await scene.fake.pause_api()

    async def outage() -> None:
        await anyio.sleep(0.6)
        await scene.fake.resume_api()

    def check(scene: Scene, report: DownloadReport, logs: Sequence[logging.LogRecord]) -> None:
        refused = [r for r in logs if ": connection refused (GET " in r.getMessage()]
        assert len(refused) >= REQUESTS  # every first read was refused, and retried
        assert sum(api_reads(scene.fake, rid) for rid in scene.rids) == REQUESTS

    return Expect(check=check, background=outage)


async def api_timeout(scene: Scene) -> Expect:
    scene.fake.inject_api_fault(ApiFault(status=200, body=b"{}", delay=2.0, times=2))

    def check(scene: Scene, report: DownloadReport, logs: Sequence[logging.LogRecord]) -> None:
        # the two slow answers (and, on a loaded machine, perhaps one more)
        assert sum("no answer within the timeouts" in r.getMessage() for r in logs) >= 2

    return Expect(check=check)


ROWS = [
    *(
        Row(fault=f"clip-reset-after-{cut}-bytes", arrange=reset_once(cut))
        for cut in (0, 1, 8, 65_536, 300_000, BIG - 1)
    ),
    Row(fault="clip-reset-repeatedly", arrange=reset_repeatedly),
    Row(fault="clip-reset-every-clip-once", arrange=reset_every_clip_once),
    *(
        Row(
            fault=f"clip-body-shorter-than-content-length-{cut}",
            arrange=reset_once(cut, reset=False),
        )
        for cut in (1, 300_000)
    ),
    Row(fault="clip-range-ignored", arrange=range_ignored),
    Row(fault="clip-stall-beyond-idle-timeout", arrange=stall, idle_timeout=0.3),
    Row(fault="clip-5xx-burst", arrange=clip_5xx_burst),
    Row(fault="clip-5xx-persistent", arrange=clip_5xx_persistent),
    Row(fault="clip-403-url-expired", arrange=url_403_once),
    Row(fault="clip-404-url-replaced-before-download", arrange=url_expired_before_download),
    Row(fault="clip-403-even-fresh-urls", arrange=url_refused_even_when_fresh),
    Row(fault="clip-403-while-api-fails", arrange=url_expired_while_api_fails),
    Row(fault="clip-redirect-to-other-host", arrange=redirect_to_other_host),
    Row(fault="clip-redirect-loop", arrange=redirect_loop),
    Row(fault="clip-redirect-to-non-http-url", arrange=redirect_to_non_http),
    Row(fault="clip-html-200-once", arrange=html_200_once),
    Row(fault="clip-html-200-always", arrange=html_200_always),
    Row(fault="clip-html-labelled-video-mp4", arrange=html_labelled_as_video),
    Row(fault="clip-content-length-larger-than-body", arrange=content_length_larger),
    Row(fault="clip-content-length-larger-on-resume", arrange=content_length_larger_on_resume),
    Row(fault="clip-206-shorter-than-content-range", arrange=content_length_smaller_on_resume),
    Row(fault="api-5xx-burst", arrange=api_5xx_burst),
    Row(fault="api-429-retry-after", arrange=api_429_retry_after),
    Row(fault="api-429-ratelimit-reset-only", arrange=api_429_reset_only),
    Row(fault="api-html-502-burst", arrange=api_html_502_burst),
    Row(fault="api-html-502-persistent", arrange=api_html_502_persistent),
    Row(
        fault="api-connection-refused-for-a-while",
        arrange=api_refused_for_a_while,
        instant=False,  # real waits: the retries must span the outage
        retry=RetryPolicy(attempts=8, initial_wait=0.1, max_wait=0.4, jitter=0),
    ),
    Row(fault="api-timeout", arrange=api_timeout, timeouts=Timeouts(connect=5, read=0.2)),
]


def add_jobs(fake: FakeSsembleAPI) -> tuple[list[str], dict[str, list[str]]]:
    rids: list[str] = []
    clips: dict[str, list[str]] = {}
    for number in range(REQUESTS):
        job = FakeJob(
            steps=(),
            clips=tuple(
                FakeClip(size=size, viral_score=90 - 10 * index - number, title=f"clip {index}")
                for index, size in enumerate(SIZES)
            ),
        )
        rid = fake.add_job(job)
        rids.append(rid)
        clips[rid] = [clip.clip_id for clip in job.clips]
    return rids, clips


@pytest.mark.parametrize("row", ROWS, ids=[row.fault for row in ROWS])
async def test_fault(
    row: Row,
    fake_ssemble: FakeSsembleAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = fake_ssemble
    dest = tmp_path / "dest"
    (tmp_path / "cwd").mkdir()
    (tmp_path / "sibling.txt").write_text("not to be touched")
    monkeypatch.chdir(tmp_path / "cwd")
    rids, clips = add_jobs(fake)
    expected = {
        dest / rid / f"{clip_id}.mp4": fake.clip_bytes(rid, clip_id)
        for rid in rids
        for clip_id in clips[rid]
    }
    caplog.set_level(logging.INFO, logger="ssemble_async")
    with instant_waits(row.instant), anyio.fail_after(30):
        async with Client(
            fake.api_key, base_url=fake.base_url, retry=row.retry, timeouts=row.timeouts
        ) as client:
            scene = Scene(fake=fake, client=client, rids=rids, clips=clips)
            expect = await row.arrange(scene)
            caplog.clear()
            outside = snapshot(tmp_path.parent, skip=dest)
            with FinalNameWatch(dest, expected) as watch:
                async with anyio.create_task_group() as group:
                    if expect.background is not None:
                        group.start_soon(expect.background)
                    report = await client.download_many(
                        expect.requests or rids,
                        dest,
                        concurrency=4,
                        chunk_size=64 * 1024,
                        idle_timeout=row.idle_timeout,
                    )
    logs = list(caplog.records)

    # Nothing partial ever sat under a final name; nothing was written outside dest.
    assert watch.problems == []
    assert watch.scans > 1
    assert snapshot(tmp_path.parent, skip=dest) == outside

    # Requests that could not be read, and the outcome of every clip of the others.
    assert set(report.request_errors) == set(expect.request_errors)
    for rid, (error_type, phrase) in expect.request_errors.items():
        error = report.request_errors[rid]
        assert isinstance(error, error_type)
        assert phrase in str(error)
        assert not (dest / rid).exists()
    readable = [rid for rid in rids if rid not in expect.request_errors]
    assert sorted((o.request_id, o.clip_id) for o in report.outcomes) == sorted(
        (rid, clip_id) for rid in readable for clip_id in clips[rid]
    )
    for outcome in report.outcomes:
        path = dest / outcome.request_id / f"{outcome.clip_id}.mp4"
        assert outcome.path == path
        served = fake.clip_bytes(outcome.request_id, outcome.clip_id)
        if outcome.clip_id in expect.failed:
            assert outcome.state is ClipState.FAILED
            assert outcome.error is not None
            for phrase in expect.failed[outcome.clip_id]:
                assert phrase in (outcome.message or ""), (phrase, outcome.message)
            assert not path.exists()
            assert not path.with_name(path.name + ".json").exists()
            continue
        assert outcome.state is ClipState.DOWNLOADED, (outcome.state, outcome.message)
        assert outcome.message is None
        assert sha(path.read_bytes()) == sha(served)
        assert outcome.size == len(served)
        assert outcome.transferred >= len(served)
        assert path.with_name(path.name + ".json").is_file()
        assert not path.with_name(path.name + ".part").exists()
    assert report.ok == (not expect.failed and not expect.request_errors)

    # Inside dest: only clips, their sidecars, manifests, the folder's lock file, and the
    # .part of a failed clip (kept when its bytes are good and resumable).
    for rid in readable:
        manifest = json.loads((dest / rid / "manifest.json").read_text())
        for clip_id in clips[rid]:
            assert manifest["clips"][clip_id]["complete"] is (clip_id not in expect.failed)
        allowed = {"manifest.json", ".ssemble.lock"} | {
            name
            for clip_id in clips[rid]
            for name in (
                (f"{clip_id}.mp4.part",)
                if clip_id in expect.failed
                else (f"{clip_id}.mp4", f"{clip_id}.mp4.json")
            )
        }
        assert {p.name for p in (dest / rid).iterdir()} <= allowed
    assert {p.name for p in dest.iterdir()} == set(readable)

    # The clip host never saw the API key, whatever redirects and retries happened.
    for request in fake.clip_requests:
        assert "X-API-Key" not in request.headers
        assert "Authorization" not in request.headers
        assert fake.api_key not in request.path + json.dumps(dict(request.query))

    if expect.check is not None:
        expect.check(scene, report, logs)
