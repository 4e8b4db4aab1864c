"""The response models: frozen, keyword-only attrs classes with snake_case attributes.

Wire names (camelCase, ``_id``, the variants of section 6 of the API reference) are mapped
in `ssemble_async._converter`; these classes know nothing of JSON.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "CreatedRequest",
    "GameVideo",
    "MemeHook",
    "MusicTrack",
    "Pagination",
    "RequestState",
    "RequestStatus",
    "RequestSummary",
    "Sentence",
    "Short",
    "ShortsRequest",
    "Template",
    "TimeAdjustment",
    "TimeRange",
]

DEFAULT_TEMPLATE_ID = "660b8531aedb346bbe26eb43"
DEFAULT_TEMPLATE_NAME = "karaoke"


class RequestState(str, enum.Enum):
    """Where a job is. An open set: a status word the SDK does not know becomes ``UNKNOWN``.

    The word the server sent is kept beside it (``status_raw`` on the models). The legacy
    ``TASK_COMPLETE`` counts as ``COMPLETED`` and ``error`` as ``FAILED``.
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def from_wire(cls, word: str) -> RequestState:
        """Map a status word from the server to a state (never raises)."""
        return _STATE_WORDS.get(word.strip().lower(), cls.UNKNOWN)

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in (RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED)

    def __str__(self) -> str:
        return self.value


_STATE_WORDS = {
    "queued": RequestState.QUEUED,
    "pending": RequestState.QUEUED,
    "processing": RequestState.PROCESSING,
    "completed": RequestState.COMPLETED,
    "task_complete": RequestState.COMPLETED,
    "failed": RequestState.FAILED,
    "error": RequestState.FAILED,
    "cancelled": RequestState.CANCELLED,
    "canceled": RequestState.CANCELLED,
}


def _none_if_empty(value: str | None) -> str | None:
    return value or None


@attrs.frozen(kw_only=True)
class Sentence:
    """One transcribed sentence of the source video.

    Attributes:
        index: position in the transcript, from 0.
        text: the transcribed text (``sentence`` on the wire).
        start: start in the source video, seconds.
        end: end in the source video, seconds.
    """

    index: int
    text: str = ""
    start: float | None = None
    end: float | None = None


@attrs.frozen(kw_only=True)
class Short:
    """One generated clip.

    Attributes:
        id: the clip id, an opaque string (a UUID or 24 hex characters).
        title: AI-written title.
        description: AI-written social caption, usually with hashtags.
        reason: why the AI chose the segment.
        viral_score: the server's virality prediction, as sent (its scale is the server's).
        video_url: temporary link to the rendered MP4, or None while it renders or failed.
        start_timestamp: clip start in the source video, seconds.
        end_timestamp: clip end in the source video, seconds.
        duration: clip length in seconds, as the server reports it.
        width: output width in pixels (1080 when not sent).
        height: output height in pixels (1920 when not sent).
        sentence_indexes: indexes into the request's sentences.
        recompiling: True while the clip is being re-rendered.
        error: True when this clip failed to render.
        error_message: the server's text for a failed clip, when it gave one.
    """

    id: str
    title: str = ""
    description: str = ""
    reason: str = ""
    viral_score: float | None = None
    video_url: str | None = attrs.field(default=None, converter=_none_if_empty)
    start_timestamp: float | None = None
    end_timestamp: float | None = None
    duration: float | None = None
    width: int = 1080
    height: int = 1920
    sentence_indexes: tuple[int, ...] = ()
    recompiling: bool = False
    error: bool = False
    error_message: str | None = None

    @property
    def is_downloadable(self) -> bool:
        """True when the clip has a URL, did not fail, and is not being re-rendered."""
        return bool(self.video_url) and not self.error and not self.recompiling


@attrs.frozen(kw_only=True)
class ShortsRequest:
    """A whole request as ``GET /shorts/:id`` returns it: settings, transcript and clips.

    Attributes:
        request_id: the 24-hex request id (``_id`` or ``requestId`` on the wire).
        status: the state of the job.
        status_raw: the status word exactly as the server sent it.
        progress: 0-100, when sent.
        user_email: the owning account's email, when sent.
        url: the source URL (may be None for ``fileUrl`` jobs).
        file_url: the ``fileUrl`` source, when the server sends it.
        start: start of the processed window, seconds.
        end: end of the processed window, seconds.
        title: title of the source video.
        language: language used for transcription.
        template: caption template name, an opaque string (a slug or a display name).
        caption_language: caption language ("" when the same as ``language``).
        heatmap: engagement heatmap, kept raw.
        sentences: the transcript.
        preferred_length: the length setting used.
        project_id: linked editor project, or None.
        shorts: the generated clips (empty or partial while the job runs).
        created_at: creation time, when sent.
        updated_at: last update, when sent.
        failure_reason: why the job failed, when it failed and the server said.
        extra: every field of the response this SDK does not model, kept as sent.
    """

    request_id: str
    status: RequestState
    status_raw: str
    progress: float | None = None
    user_email: str | None = None
    url: str | None = None
    file_url: str | None = None
    start: float | None = None
    end: float | None = None
    title: str | None = None
    language: str | None = None
    template: str | None = None
    caption_language: str | None = None
    heatmap: tuple[Any, ...] = ()
    sentences: tuple[Sentence, ...] = ()
    preferred_length: str | None = None
    project_id: str | None = None
    shorts: tuple[Short, ...] = ()
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    failure_reason: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def id(self) -> str:
        """The request id (same as ``request_id``)."""
        return self.request_id

    def shorts_by_score(self) -> list[Short]:
        """The clips, highest ``viral_score`` first (clips without a score last)."""
        return sorted(
            self.shorts,
            key=lambda s: (s.viral_score is None, -(s.viral_score or 0.0)),
        )


@attrs.frozen(kw_only=True)
class RequestStatus:
    """The cheap progress view of ``GET /shorts/:id/status``.

    Attributes:
        request_id: the request id (``_id`` or ``requestId``; the id asked for if absent).
        status: the state of the job.
        status_raw: the status word exactly as the server sent it.
        step: the current pipeline step, an open string such as ``finding_highlights``.
        step_message: text for people (``stepMessage``).
        message: the alternative text field some servers send instead of ``stepMessage``.
        progress: 0-100, when sent.
        user_email: the owning account's email, when sent.
        failure_reason: why the job failed (only sent when it failed).
        is_demo: whether the request was a demo request.
        estimated_time_remaining: the server's estimate, kept as sent.
    """

    request_id: str
    status: RequestState
    status_raw: str
    step: str | None = None
    step_message: str | None = None
    message: str | None = None
    progress: float | None = None
    user_email: str | None = None
    failure_reason: str | None = None
    is_demo: bool | None = None
    estimated_time_remaining: Any = None

    @property
    def display_message(self) -> str | None:
        """``step_message``, else ``message``: the best text to show a person."""
        return self.step_message or self.message


@attrs.frozen(kw_only=True)
class TimeRange:
    """A window of the source video, in seconds."""

    start: float
    end: float


@attrs.frozen(kw_only=True)
class TimeAdjustment:
    """Sent by create when the requested window ran past the end of the video.

    Attributes:
        message: the server's explanation.
        original: the window asked for.
        adjusted: the window that will be used.
        video_duration: the real length of the video, seconds.
    """

    message: str | None = None
    original: TimeRange | None = None
    adjusted: TimeRange | None = None
    video_duration: float | None = None


@attrs.frozen(kw_only=True)
class CreatedRequest:
    """The answer to ``POST /shorts/create``.

    Attributes:
        request_id: the new job's id, for every later call.
        status: the state of the job (normally queued).
        status_raw: the status word exactly as sent.
        message: a note for people, when sent.
        estimated_time: the time estimate (``estimatedTime`` or ``estimatedCompletionTime``).
        credits_used: credits charged, when sent.
        time_adjustment: present when the server trimmed the window.
    """

    request_id: str
    status: RequestState = RequestState.QUEUED
    status_raw: str = "queued"
    message: str | None = None
    estimated_time: str | None = None
    credits_used: float | None = None
    time_adjustment: TimeAdjustment | None = None


@attrs.frozen(kw_only=True)
class RequestSummary:
    """One item of ``GET /shorts``.

    Attributes:
        request_id: the request id.
        status: the state of the job.
        status_raw: the status word exactly as sent.
        progress: 0-100, when sent.
        created_at: creation time.
        updated_at: last status change.
        url: the source URL (may be None for ``fileUrl`` jobs).
        duration: seconds (the length of the processed window).
    """

    request_id: str
    status: RequestState
    status_raw: str
    progress: float | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    url: str | None = None
    duration: float | None = None


@attrs.frozen(kw_only=True)
class Template:
    """A caption template of ``GET /templates``.

    Attributes:
        template_id: the 24-hex value to pass as ``template_id`` to create.
        name: internal slug such as ``karaoke``.
        display_name: label for people.
        thumbnail: still image URL.
        order: display order.
        preview: preview URL (``preview``, ``previewUrl`` or ``thumbnail``).
        gif: animated preview URL.
        is_default: True for the template used when none is given.
    """

    template_id: str
    name: str | None = None
    display_name: str | None = None
    thumbnail: str | None = None
    order: int | None = None
    preview: str | None = None
    gif: str | None = None
    is_default: bool = False


@attrs.frozen(kw_only=True)
class MusicTrack:
    """A background track of ``GET /music``.

    Attributes:
        name: the exact value for ``music_name``.
        duration: length in seconds.
        url: audio preview link, when sent.
        extra: unmodelled fields, kept as sent.
    """

    name: str
    duration: float | None = None
    url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class GameVideo:
    """A gameplay overlay of ``GET /game-videos``.

    Attributes:
        name: the exact value for ``game_video_name``.
        preview: preview image (``preview`` or ``previewUrl``).
        video: preview video URL.
        video_duration: seconds.
        extra: unmodelled fields, kept as sent.
    """

    name: str
    preview: str | None = None
    video: str | None = None
    video_duration: float | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class MemeHook:
    """A meme intro clip of ``GET /meme-hooks``.

    Attributes:
        name: the exact value for ``meme_hook_name``.
        preview: preview image (``preview`` or ``previewUrl``).
        video: preview video URL.
        video_duration: seconds.
        extra: unmodelled fields, kept as sent.
    """

    name: str
    preview: str | None = None
    video: str | None = None
    video_duration: float | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class Pagination:
    """Paging of a list response, from either key style of the API.

    Attributes:
        page: this page's number (``page`` or ``currentPage``).
        limit: page size (``limit`` or ``itemsPerPage``).
        total_pages: number of pages, derived from the total when absent.
        total_count: number of items (``totalCount``, ``totalItems`` or ``total``).
        has_more: whether a page follows this one (``hasMore`` or ``hasNextPage``), for
            servers that page without totals.
    """

    page: int | None = None
    limit: int | None = None
    total_pages: int | None = None
    total_count: int | None = None
    has_more: bool | None = None


@attrs.frozen(kw_only=True)
class WebhookShort:
    """A clip as a webhook delivery describes it (reduced: confirm with ``GET /shorts/:id``).

    Attributes:
        id: the clip id.
        title: its title.
        video_url: temporary link to the MP4, when sent.
        duration: seconds.
        viral_score: as sent; the webhook documentation gives it on a 0-10 scale (the
            request read with ``GET /shorts/:id`` gives 0-100).
        extra: unmodelled fields, kept as sent.
    """

    id: str
    title: str = ""
    video_url: str | None = attrs.field(default=None, converter=_none_if_empty)
    duration: float | None = None
    viral_score: float | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)


@attrs.frozen(kw_only=True)
class WebhookEvent:
    """One webhook delivery: a job ended (unsigned: a hint to confirm, never proof).

    Attributes:
        event: ``shorts.completed`` or ``shorts.failed`` (an open string).
        request_id: the request id, lower-cased.
        status: the state the delivery reports.
        status_raw: the status word exactly as sent.
        timestamp: when the event happened, when sent.
        shorts: the reduced clips of ``data.shorts`` (completed events).
        failure_reason: ``data.failureReason`` (failed events).
        extra: every other field of the payload (``data`` fields under ``"data"``), as sent.
    """

    event: str
    request_id: str
    status: RequestState = RequestState.UNKNOWN
    status_raw: str = ""
    timestamp: dt.datetime | None = None
    shorts: tuple[WebhookShort, ...] = ()
    failure_reason: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)
