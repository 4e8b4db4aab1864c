"""What a download reports: one outcome per clip, the whole report, and live statistics."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import attrs

from ssemble_async._errors import SsembleError

__all__ = ["ClipOutcome", "ClipState", "DownloadReport", "DownloadStats", "TransferProgress"]


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
        path: where the clip is (or would be) on disk.
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
        done: bytes of the file on disk so far (a resumed transfer starts above 0).
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
        bytes_done: bytes on disk for the clips of this call (finished and in flight).
        bytes_expected: the sum of the sizes known so far.
        requests_pending: requests not yet read (or still being waited for).
        folders_busy: request folders that another run is writing now; this run waits for
            it to finish before it touches them (then finds its complete clips present).
    """

    clips_known: int = 0
    states: Mapping[ClipState, int] = attrs.field(factory=dict)
    queued: int = 0
    waiting: int = 0
    in_flight: tuple[TransferProgress, ...] = ()
    bytes_done: int = 0
    bytes_expected: int = 0
    requests_pending: int = 0
    folders_busy: tuple[Path, ...] = ()

    @property
    def clips_done(self) -> int:
        """Clips that reached a final state."""
        return sum(self.states.values())
