"""What a download reports: one outcome per clip, the whole report, and live statistics."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import attrs

from ssemble_async._errors import SsembleError
from ssemble_async._models import RequestStatus

__all__ = [
    "ClipOutcome",
    "ClipState",
    "DownloadPlan",
    "DownloadReport",
    "DownloadStats",
    "PlannedAction",
    "PlannedClip",
    "TransferProgress",
]


class ClipState(str, enum.Enum):
    """How a clip ended in a download."""

    DOWNLOADED = "downloaded"
    """Fetched, verified and renamed into place in this run."""
    ALREADY_PRESENT = "already_present"
    """A complete, unchanged copy was already on disk (per the request's manifest)."""
    SKIPPED_ERROR = "skipped_error"
    """The server flagged the clip ``error``; it was never fetched."""
    NOT_READY = "not_ready"
    """Still ``recompiling`` (or without a URL) when the wait budget ran out."""
    FAILED = "failed"
    """Could not be downloaded; ``message`` says why. Nothing partial is left under its name."""

    def __str__(self) -> str:
        return self.value


#: States after which nothing is left to do for a clip.
OK_STATES = frozenset({ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT, ClipState.SKIPPED_ERROR})


@attrs.frozen(kw_only=True)
class ClipOutcome:
    """What happened to one clip.

    Attributes:
        request_id: the request the clip belongs to.
        clip_id: the clip's id.
        state: how it ended.
        path: where the clip is (or would be) on disk; None for an ``s3://`` destination.
        url: where the clip is (or would be) in object storage (``s3://bucket/key``), for an
            ``s3://`` destination; None for a folder.
        size: bytes of the complete file on disk (0 when there is none).
        transferred: bytes fetched over the network for it in this run.
        title: the clip's title.
        viral_score: the clip's score, as the server sent it.
        message: the server's ``errorMessage`` (skipped_error) or the cause (failed, not_ready).
        error: the exception behind a ``failed`` outcome, when there is one.
    """

    request_id: str
    clip_id: str
    state: ClipState
    path: Path | None = None
    url: str | None = None
    size: int = 0
    transferred: int = 0
    title: str = ""
    viral_score: float | None = None
    message: str | None = None
    error: BaseException | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def ok(self) -> bool:
        """True for downloaded, already_present and skipped_error."""
        return self.state in OK_STATES


@attrs.frozen(kw_only=True)
class DownloadReport:
    """Everything a download call did: one outcome per clip, and the requests that failed.

    Attributes:
        outcomes: one per clip, in the order they finished.
        request_errors: request id -> the error that kept all of its clips from being
            known (not found, failed or cancelled on the server, an API failure).
    """

    outcomes: tuple[ClipOutcome, ...] = ()
    request_errors: Mapping[str, SsembleError] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """True when every clip ended downloaded, already_present or skipped_error."""
        return not self.request_errors and all(outcome.ok for outcome in self.outcomes)

    def counts(self) -> dict[ClipState, int]:
        """Clips per state (every state present, zero included)."""
        counted = Counter(outcome.state for outcome in self.outcomes)
        return {state: counted.get(state, 0) for state in ClipState}

    def by_state(self, state: ClipState) -> list[ClipOutcome]:
        """The outcomes in ``state``."""
        return [outcome for outcome in self.outcomes if outcome.state is state]

    @property
    def transferred(self) -> int:
        """Bytes fetched over the network in this run, all clips together."""
        return sum(outcome.transferred for outcome in self.outcomes)


@attrs.frozen(kw_only=True)
class TransferProgress:
    """One transfer in flight.

    Attributes:
        request_id: the request of the clip.
        clip_id: the clip.
        title: its title.
        done: bytes of the file received so far, counted as they arrive (written to disk
            in batches of ``chunk_size``; a resumed transfer starts above 0).
        total: the file's full size, once the server said it.
    """

    request_id: str
    clip_id: str
    title: str
    done: int
    total: int | None


@attrs.frozen(kw_only=True)
class DownloadStats:
    """A snapshot of a running download, for a progress display or a service's metrics.

    Attributes:
        clips_known: clips seen so far (grows while requests are still being read).
        states: finished clips per state.
        queued: clips waiting for a transfer slot.
        waiting: clips held while they are re-rendered (``recompiling``).
        in_flight: the transfers running now.
        bytes_done: bytes of the clips of this call, finished and in flight (as received).
        bytes_expected: the sum of the sizes known so far.
        bytes_received: bytes received from the clip hosts in this run, over all tries; it
            only grows (a rate over it survives restarts and sizes learnt late).
        requests_pending: requests not yet read (or still being waited for).
        folders_busy: request folders that another run is writing now; this run waits for
            it to finish before it touches them (then finds its complete clips present).
        requests_waited: the last status seen of each request still waited for
            (``wait=True``): its state, step and progress on the server.
    """

    clips_known: int = 0
    states: Mapping[ClipState, int] = attrs.field(factory=dict)
    queued: int = 0
    waiting: int = 0
    in_flight: tuple[TransferProgress, ...] = ()
    bytes_done: int = 0
    bytes_expected: int = 0
    bytes_received: int = 0
    requests_pending: int = 0
    folders_busy: tuple[Path, ...] = ()
    requests_waited: tuple[RequestStatus, ...] = ()

    @property
    def clips_done(self) -> int:
        """Clips that reached a final state."""
        return sum(self.states.values())


class PlannedAction(str, enum.Enum):
    """What a download would do with a clip.

    See [`Client.plan_downloads()`][ssemble_async.Client.plan_downloads].
    """

    DOWNLOAD = "download"
    """Fetch the whole file: nothing usable is on disk."""
    RESUME = "resume"
    """Fetch the rest of a ``.part`` an earlier run left (its manifest entry vouches for it)."""
    PRESENT = "present"
    """Nothing: a complete, unchanged copy is on disk (it would be ``already_present``)."""
    SKIP_ERROR = "skip_error"
    """Nothing: the server flagged the clip ``error`` (it would be ``skipped_error``)."""
    NOT_READY = "not_ready"
    """Wait first: the clip is being re-rendered (or has no URL yet)."""

    def __str__(self) -> str:
        return self.value


@attrs.frozen(kw_only=True)
class PlannedClip:
    """One clip of a download plan.

    Attributes:
        request_id: the request the clip belongs to.
        clip_id: the clip's id.
        action: what a download would do with it.
        path: where the clip would be on disk; None for an ``s3://`` destination.
        url: where the clip would be in object storage (``s3://bucket/key``), for an
            ``s3://`` destination; None for a folder.
        size: the complete file's size: on disk for ``present``, else as the clip host
            answered a ``HEAD`` (None when it did not say).
        to_fetch: bytes a download would transfer (None when ``size`` is unknown; 0 for
            clips it would not fetch).
        title: the clip's title.
        viral_score: the clip's score, as the server sent it.
    """

    request_id: str
    clip_id: str
    action: PlannedAction
    path: Path | None = None
    url: str | None = None
    size: int | None = None
    to_fetch: int | None = 0
    title: str = ""
    viral_score: float | None = None


@attrs.frozen(kw_only=True)
class DownloadPlan:
    """What a download would fetch, and where, found without writing anything.

    Attributes:
        clips: one per clip the download would consider (after ``top`` / ``min_score``),
            per request in order, highest score first.
        request_errors: request id -> why none of its clips can be planned (not found,
            not completed, failed on the server, an API failure).
    """

    clips: tuple[PlannedClip, ...] = ()
    request_errors: Mapping[str, SsembleError] = attrs.field(factory=dict)

    @property
    def to_fetch(self) -> int:
        """Bytes a download would transfer, over the clips whose size is known."""
        return sum(clip.to_fetch or 0 for clip in self.clips)

    @property
    def unknown_sizes(self) -> int:
        """Clips a download would fetch whose size the host did not say."""
        return sum(1 for clip in self.clips if clip.to_fetch is None)

    def by_action(self, action: PlannedAction) -> list[PlannedClip]:
        """The clips planned for ``action``."""
        return [clip for clip in self.clips if clip.action is action]
