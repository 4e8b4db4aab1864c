"""Scripted scenarios for the fake API: jobs, clips, faults, and what the fake records."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import attrs
from multidict import CIMultiDictProxy

from ssemble_async import _clock

__all__ = [
    "DEFAULT_STEPS",
    "ApiFault",
    "ClipFault",
    "ClipState",
    "FakeClip",
    "FakeJob",
    "JobState",
    "RecordedRequest",
    "WebhookDelivery",
    "WebhookFault",
]

Outcome = Literal["completed", "failed", "cancelled"]

DEFAULT_STEPS: tuple[tuple[str, int, str], ...] = (
    ("queued", 0, "Waiting in queue..."),
    ("fetching_video", 15, "Downloading video..."),
    ("transcribing_audio", 35, "Transcribing audio..."),
    ("finding_highlights", 60, "Finding interesting segments..."),
    ("finalizing", 90, "Rendering clips..."),
)

_OUTCOME_VIEWS: dict[str, tuple[str, int, str]] = {
    "completed": ("completed", 100, "Your shorts are ready"),
    "failed": ("failed", 0, "Processing failed"),
    "cancelled": ("cancelled", 0, "Processing cancelled"),
}


def _sdk_now() -> datetime:
    return _clock.utcnow()


def new_request_id() -> str:
    """Return a fresh 24-hex request ID."""
    return secrets.token_hex(12)


def _request_id_or_new(value: str | None) -> str:
    return new_request_id() if value is None else value


def _clip_id_or_new(value: str | None) -> str:
    return str(uuid.uuid4()) if value is None else value


@attrs.frozen(kw_only=True)
class FakeClip:
    """One clip that a fake job renders.

    Attributes:
        clip_id: The clip's ``id``; a fresh UUID string when None.
        title: AI-style title.
        description: Social caption.
        reason: Why the clip was chosen.
        viral_score: Score sent as ``viral_score``.
        start_timestamp: Start in the source video, in seconds.
        end_timestamp: End in the source video, in seconds.
        duration: Clip length in seconds.
        width: Frame width in pixels.
        height: Frame height in pixels.
        sentence_indexes: Indexes into the job's sentences.
        size: Length in bytes of the generated MP4 the clip host serves.
        content: Exact bytes to serve instead of a generated MP4.
        error: Whether the clip failed to render; its ``video_url`` is then ``""`` and the
            clip host has no file for it.
        error_message: The clip's ``errorMessage``.
        recompiling_reads: For this many ``GET /shorts/:id`` reads after the job completed,
            the clip shows ``recompiling: true`` with its old URL; the next read shows
            ``recompiling: false`` with a new URL, and the old URL answers 404 from then on.
        omit_error_message: Leave the ``errorMessage`` key out instead of sending it.
    """

    clip_id: str = attrs.field(default=None, converter=_clip_id_or_new)
    title: str = "The Most Viral Moment"
    description: str = "An unexpected insight that challenges conventional wisdom. #mindset #viral"
    reason: str = "High engagement potential due to an emotional hook and a surprise"
    viral_score: float = 70
    start_timestamp: float = 12.5
    end_timestamp: float = 55.3
    duration: float = 43
    width: int = 1080
    height: int = 1920
    sentence_indexes: Sequence[int] = (0, 1)
    size: int = 64 * 1024
    content: bytes | None = None
    error: bool = False
    error_message: str | None = None
    recompiling_reads: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    omit_error_message: bool = False


def _default_clips() -> tuple[FakeClip, ...]:
    return (
        FakeClip(viral_score=85),
        FakeClip(
            title="Key Takeaway That Changes Everything",
            description="The three-step framework in under a minute. #tips #howto",
            reason="Actionable advice with strong shareability",
            viral_score=72,
            start_timestamp=120.0,
            end_timestamp=175.5,
            duration=55,
            sentence_indexes=(3, 4, 5),
        ),
        FakeClip(
            title="Nobody Expected This Ending",
            description="Wait for the last ten seconds. #story #plot",
            reason="Clear setup and payoff inside forty seconds",
            viral_score=64,
            start_timestamp=301.2,
            end_timestamp=337.82,
            duration=36.62,
            sentence_indexes=(8, 9, 10),
        ),
    )


def _default_sentences() -> tuple[tuple[float, float, str], ...]:
    return tuple(
        (round(12.5 + 4.4 * i, 2), round(16.9 + 4.4 * i, 2), f"This is transcribed sentence {i}.")
        for i in range(12)
    )


@attrs.frozen(kw_only=True)
class FakeJob:
    """A scripted clipping job: how it progresses, how it ends and what it renders.

    The job walks through ``steps`` and then reaches ``outcome``. By default the job is
    read-driven: every ``GET /shorts/:id/status`` or ``GET /shorts/:id`` of the job, and
    every ``GET /shorts`` page that lists it, is one read, and the job advances after
    ``reads_per_step`` reads on a step.

    With ``seconds_per_step`` or ``finishes_after`` it is time-driven instead: it advances
    by the fake's clock (the SDK's clock, virtual under ``ssemble_async.instant_waits()``,
    plus the fake's ``clock_skew``) and reads do not move it. Step ``k`` (counting from 1;
    step ``len(steps)`` is the outcome) is reached at ``createdAt + k * seconds_per_step``,
    whether or not anybody reads the job meanwhile, and ``updatedAt`` shows that moment,
    not the time of the read that noticed it. For "finishes 17 minutes after creation",
    write ``FakeJob(finishes_after=17 * 60)``: the steps then share the time evenly and
    the outcome is reached exactly then.

    Attributes:
        request_id: Lowercase 24-hex ID; a fresh one when None.
        steps: ``(step, progress, stepMessage)`` of the processing phase. A step named
            ``queued`` has status ``queued``; the others have status ``processing``.
        outcome: The terminal status.
        failure_reason: ``failureReason`` of a failed job.
        reads_per_step: Reads served on each step before it advances.
        seconds_per_step: Seconds (> 0) spent on each step; when set, reads do not advance.
        finishes_after: Seconds (> 0) from creation to the outcome, spread evenly over the
            steps; when set, reads do not advance. Needs at least one step, and excludes
            ``seconds_per_step``.
        clips: Clips shown once the job completed.
        url: Source YouTube URL (None for a ``fileUrl`` job).
        file_url: Source file URL.
        start: Start of the processed window in seconds.
        end: End of the processed window in seconds.
        title: Title of the source video.
        language: Transcription language.
        caption_language: Caption language, ``""`` when it equals ``language``.
        template: Name of the caption template.
        preferred_length: Preferred clip length setting.
        user_email: Owner's email.
        is_demo: Sent as ``isDemo`` by the status endpoint.
        project_id: Sent as ``projectId``.
        sentences: ``(start, end, text)`` of the transcript shown once completed.
        status_word_completed: Status word of a completed job, e.g. ``TASK_COMPLETE``.
        webhook_url: Where the fake POSTs the job's webhook when the job ends (see
            [`WebhookDelivery`][ssemble_async.testing.WebhookDelivery]); None sends none. A job made
            by ``POST /shorts/create`` takes the body's ``webhookUrl`` (the ``auto_job``
            template's is not used).

    Raises:
        ValueError: If both ``seconds_per_step`` and ``finishes_after`` are set, or
            ``finishes_after`` is set on a job without steps.
    """

    request_id: str = attrs.field(
        default=None,
        converter=_request_id_or_new,
        validator=attrs.validators.matches_re(r"[0-9a-f]{24}"),
    )
    steps: Sequence[tuple[str, int, str]] = DEFAULT_STEPS
    outcome: Outcome = "completed"
    failure_reason: str = "Source file could not be downloaded (HTTP 403)"
    reads_per_step: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    seconds_per_step: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    finishes_after: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0))
    )
    clips: Sequence[FakeClip] = attrs.field(factory=_default_clips)
    url: str | None = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    file_url: str | None = None
    start: float = 0
    end: float = 600
    title: str = "My Video Title"
    language: str = "en"
    caption_language: str = ""
    template: str = "karaoke"
    preferred_length: str = "under60sec"
    user_email: str = "user@example.com"
    is_demo: bool = False
    project_id: str | None = None
    sentences: Sequence[tuple[float, float, str]] = attrs.field(factory=_default_sentences)
    status_word_completed: str = "completed"
    webhook_url: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.finishes_after is not None:
            if self.seconds_per_step is not None:
                raise ValueError("set seconds_per_step or finishes_after, not both")
            if not self.steps:
                raise ValueError("finishes_after needs at least one step")

    @property
    def time_driven(self) -> bool:
        """Whether the job advances by the clock (``seconds_per_step`` or ``finishes_after``)."""
        return self.seconds_per_step is not None or self.finishes_after is not None

    def seconds_to_step(self, step: int) -> float:
        """Seconds from creation until a time-driven job reaches ``step`` (0 to ``len(steps)``).

        Raises:
            ValueError: If the job is read-driven.
        """
        if self.finishes_after is not None:
            return self.finishes_after * step / len(self.steps)
        if self.seconds_per_step is None:
            raise ValueError("a read-driven job has no schedule")
        return self.seconds_per_step * step


@attrs.frozen(kw_only=True)
class ApiFault:
    """A raw response the fake API sends instead of acting on matching requests.

    Faulted requests are recorded (and counted in ``FakeSsembleAPI.calls``) but neither
    authenticated, counted against the quota nor acted on. The response carries only
    ``headers``, the content type and a ``Date`` from the fake's clock (unless ``headers``
    has one), no rate-limit headers (as from a proxy in front of the API).

    Attributes:
        status: HTTP status.
        body: Raw body bytes.
        content_type: ``Content-Type`` of the body.
        headers: Extra headers, e.g. ``Retry-After``.
        times: How many matching requests get the fault.
        path_prefix: Match only paths starting with this, relative to ``/api/v1``
            (e.g. ``"/shorts"``); None matches every path.
        method: Match only this HTTP method; None matches every method.
        delay: Seconds to wait before answering (for client timeouts).
    """

    status: int = 502
    body: bytes = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    content_type: str = "text/html"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    times: int = 1
    path_prefix: str | None = None
    method: str | None = None
    delay: float = 0.0

    def matches(self, method: str, api_path: str) -> bool:
        """Return whether a request with this method and path relative to the base is hit."""
        return (self.method is None or self.method.upper() == method) and (
            self.path_prefix is None or api_path.startswith(self.path_prefix)
        )


@attrs.frozen(kw_only=True)
class ClipFault:
    """A misbehaviour of the clip host for the next matching clip downloads.

    With ``status`` set, the raw response replaces the clip. Otherwise the clip is served
    with its real headers but the body is disturbed as described.

    A ``content_length`` smaller than the body makes a consistent but short response (the
    rest of the file is never sent): no HTTP client can tell it from a complete one, so it
    models a host that lies about the file, not a transfer fault.

    Attributes:
        times: How many matching downloads get the fault.
        clip_id: Match only this clip; None matches every clip.
        status: HTTP status of a raw response sent instead of the clip.
        body: Body of that raw response.
        content_type: Content type of that raw response.
        headers: Extra headers of that raw response, e.g. ``Location``.
        ignore_range: Serve the whole file with 200 whatever ``Range`` says.
        stall_at: Body bytes sent before a pause of ``stall_seconds``.
        stall_seconds: Length of that pause.
        truncate_at: Body bytes sent before the connection is dropped.
        content_length: ``Content-Length`` to announce instead of the true length of the
            body. When it is larger than the body sent, the connection is dropped after the
            body (a body shorter than announced).
        reset: Drop the connection with a TCP reset (RST) instead of a clean close, when
            the body is cut short by ``truncate_at`` or a larger ``content_length``.
        chunked: Send the raw response's body with chunked transfer encoding, without a
            ``Content-Length`` (a host whose answer says its range only in
            ``Content-Range``).
    """

    times: int = 1
    clip_id: str | None = None
    status: int | None = None
    body: bytes = b""
    content_type: str = "text/html"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    ignore_range: bool = False
    stall_at: int | None = None
    stall_seconds: float = 0.0
    truncate_at: int | None = None
    content_length: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    reset: bool = False
    chunked: bool = False


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """A request as the fake received it.

    Attributes:
        method: HTTP method.
        path: URL path as received, e.g. ``/api/v1/shorts``.
        query: Query parameters (the first value of a repeated one).
        headers: Case-insensitive copy of all request headers.
        json: The parsed JSON body, or None when the body is empty or not JSON.
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    json: Any = None


@attrs.define(kw_only=True, eq=False)
class ClipState:
    """Live state of one clip on the fake server.

    Attributes:
        clip: The scripted clip.
        content: Bytes the clip host serves for it.
        etag: Strong, quoted ETag of ``content``.
        recompiling_left: Reads left that show ``recompiling: true``.
        token: Path token of the clip's current URL; None for an error clip.
        last_modified: HTTP date of the current URL's file.
        new_url_due: Whether the next read issues a new URL.
    """

    clip: FakeClip
    content: bytes
    etag: str
    recompiling_left: int
    token: str | None = None
    last_modified: str = ""
    new_url_due: bool = False


@attrs.define(kw_only=True, eq=False)
class JobState:
    """Live state of one job on the fake server.

    A time-driven job (see [`FakeJob`][ssemble_async.testing.FakeJob]) is brought up to date by
    [`sync_clock()`][ssemble_async.testing.JobState.sync_clock], which the fake calls on every
    request that touches the job; call it yourself before reading ``phase``, ``status`` or
    ``updated_at`` of such a job directly.

    Attributes:
        job: The scripted job.
        clips: Clip states by clip ID, in the job's order.
        created_at: Creation time (UTC, in the fake's clock).
        updated_at: Time of the last step change (UTC, in the fake's clock). For a
            time-driven job, the moment the step was scheduled to be reached.
        create_body: The ``POST /shorts/create`` body when the job was created through
            the API, else None.
        phase: Index into ``job.steps``; ``len(job.steps)`` once the outcome is reached.
        reads_on_phase: Reads served on the current phase.
        clock: The fake's clock (aware UTC); the SDK's ``utcnow`` by default.
        webhook_dispatched: Whether the fake has dealt with the job's webhook: set when a
            job with a webhook URL reaches its outcome and its delivery starts (or is
            passed over: a cancelled job, a lost delivery). Never set for a job without
            a webhook URL.
    """

    job: FakeJob
    clips: dict[str, ClipState]
    created_at: datetime
    updated_at: datetime
    create_body: dict[str, Any] | None = None
    phase: int = 0
    reads_on_phase: int = 0
    clock: Callable[[], datetime] = attrs.field(default=_sdk_now, repr=False)
    webhook_dispatched: bool = False

    @property
    def finished(self) -> bool:
        """Whether the job reached its outcome."""
        return self.phase >= len(self.job.steps)

    @property
    def status(self) -> str:
        """The canonical status: queued, processing, completed, failed or cancelled."""
        if self.finished:
            return self.job.outcome
        return "queued" if self.job.steps[self.phase][0] == "queued" else "processing"

    def view(self) -> tuple[str, str, int, str]:
        """Return ``(status, step, progress, stepMessage)`` as sent on the wire."""
        if not self.finished:
            step, progress, message = self.job.steps[self.phase]
            return self.status, step, progress, message
        step, progress, message = _OUTCOME_VIEWS[self.job.outcome]
        word = self.job.status_word_completed if step == "completed" else step
        return word, step, progress, message

    def step_reached_at(self, step: int) -> datetime:
        """When a time-driven job reaches ``step`` (0 to ``len(job.steps)``).

        Raises:
            ValueError: If the job is read-driven.
        """
        return self.created_at + timedelta(seconds=self.job.seconds_to_step(step))

    def sync_clock(self, now: datetime | None = None) -> None:
        """Advance a time-driven job to where the clock (``now``, else ``clock()``) says it is.

        The job never moves back, even if the clock does.
        """
        if not self.job.time_driven:
            return
        now = self.clock() if now is None else now
        phase = self.phase
        while phase < len(self.job.steps) and self.step_reached_at(phase + 1) <= now:
            phase += 1
        if phase != self.phase:
            self.phase, self.reads_on_phase = phase, 0
            self.updated_at = self.step_reached_at(phase)

    def count_read(self, now: datetime | None = None) -> None:
        """Count one read of a read-driven job and advance it when the step is used up.

        A step change sets ``updated_at`` to ``now`` (else ``clock()``).
        """
        if self.job.time_driven or self.finished:
            return
        self.reads_on_phase += 1
        if self.reads_on_phase >= self.job.reads_per_step:
            self.phase, self.reads_on_phase = self.phase + 1, 0
            self.updated_at = self.clock() if now is None else now


@attrs.frozen(kw_only=True)
class WebhookFault:
    """A misbehaviour of the fake's webhook sender for the next matching job ends.

    A fault is taken when a job with a webhook URL reaches its outcome (completed or
    failed) and its delivery starts; deliveries sent with ``FakeSsembleAPI.send_webhook``
    or ``forge_webhook`` never take one.

    Attributes:
        lost: Send nothing at all for the job (no attempt is made or recorded).
        duplicate: Send the whole delivery (up to 3 attempts) this many extra times; each
            copy starts ``duplicate_after`` seconds after the previous copy ended.
        duplicate_after: Seconds (package clock) between the copies of a duplicated
            delivery.
        delay: Seconds (package clock) to wait before the first attempt.
        request_id: Match only this job's delivery; None matches the next delivery.
        times: How many matching deliveries get the fault.
    """

    lost: bool = False
    duplicate: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    duplicate_after: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    request_id: str | None = None
    times: int = attrs.field(default=1, validator=attrs.validators.ge(1))


@attrs.frozen(kw_only=True)
class WebhookDelivery:
    """One attempt of the fake to POST a webhook, as recorded in ``webhook_deliveries``.

    Attributes:
        request_id: The payload's ``requestId``.
        url: Where it was POSTed.
        event: The payload's ``event``: ``shorts.completed`` or ``shorts.failed``.
        attempt: 1 to 3 within one delivery (one copy of a duplicated delivery).
        status: The receiver's HTTP status; None when there was no answer (connection
            refused or cut, timeout).
        payload: The JSON body sent.
        at: When the attempt started, on the fake's clock (aware UTC).
        copy: 0 for the delivery itself, 1 to N for the copies of a duplicated one.
        forged: True for a delivery sent by ``send_webhook`` or ``forge_webhook``.
        error: What went wrong when there was no answer, else None.
    """

    request_id: str
    url: str
    event: str
    attempt: int
    status: int | None
    payload: Mapping[str, Any]
    at: datetime
    copy: int = 0
    forged: bool = False
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        """Whether the receiver answered with a 2xx."""
        return self.status is not None and 200 <= self.status < 300
