"""Progress figures a person can trust: a transfer rate, an ETA, sizes in one unit family.

Pure: every function here is given the time and a `DownloadStats` snapshot, and returns
numbers or text. The live display and the lines of a log (`_output`) only print them.

The rate is measured over the bytes received (`DownloadStats.bytes_received`, which only
grows), never over the totals: sizes learnt one by one as transfers start do not reset it.
Sizes and speeds are binary: MiB and MiB/s, KiB and KiB/s below one MiB, bytes below one
KiB.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import attrs

from ssemble_async._cli._parser import MiB, UsageError
from ssemble_async._download_models import ClipState, DownloadStats

__all__ = [
    "DEFAULT_INTERVAL",
    "INTERVAL_VARIABLE",
    "Figures",
    "LogProgress",
    "RateMeter",
    "figures",
    "format_duration",
    "format_eta",
    "format_pair",
    "format_rate",
    "format_size",
    "progress_interval",
    "progress_line",
    "start_line",
]

KiB = 1024
#: Seconds between two progress lines of a log (not a terminal), unless the variable says.
DEFAULT_INTERVAL = 10.0
INTERVAL_VARIABLE = "SSEMBLE_PROGRESS_INTERVAL"


class RateMeter:
    """Bytes per second over the last ``window`` seconds of a transfer.

    Fed with a running count of bytes (`observe`), read with `rate`. The count may be
    any number that grows as bytes arrive: a count that goes down is taken as a new
    starting point, never as negative bytes. Time never runs backwards here: an earlier
    time than one already seen counts as that one.

    The rate is None until data has flowed for ``warmup`` seconds (the first figures of a
    transfer say little), then the bytes of the last ``window`` seconds (or since the
    data started, when that is shorter) over that time. With no bytes for ``window``
    seconds it is 0.
    """

    def __init__(self, *, window: float = 10.0, warmup: float = 1.0) -> None:
        if not 0 < warmup <= window:
            raise ValueError(f"need 0 < warmup <= window, got warmup={warmup}, window={window}")
        self.window = window
        self.warmup = warmup
        self._now = -math.inf
        self._seen: int | None = None  # the last running count given
        self._counted = 0  # bytes counted so far (the sum of every increase)
        self._started: float | None = None  # when data started to flow
        #: (time, bytes counted then): the latest one at least a window old, then newer ones
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now: float, count: int) -> None:
        """Note that ``count`` bytes had arrived in all at time ``now`` (seconds)."""
        now = max(now, self._now)
        added = 0 if self._seen is None else max(0, count - self._seen)
        self._seen = count
        if added and self._started is None:
            self._started = self._now  # the data started after the previous look
            self._samples = deque([(self._started, self._counted)])
        self._now = now
        self._counted += added
        self._samples.append((now, self._counted))
        cutoff = now - self.window
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()

    def rate(self, now: float) -> float | None:
        """Bytes per second at ``now`` (never negative); None in the first ``warmup`` seconds."""
        now = max(now, self._now)
        if self._started is None or now - self._started < self.warmup:
            return None
        cutoff = now - self.window
        since, base = self._samples[0]
        for at, counted in self._samples:
            if at > cutoff:
                break
            since, base = at, counted
        return (self._counted - base) / (now - since)


@attrs.frozen(kw_only=True)
class Figures:
    """What a progress display shows of a download at one moment.

    Attributes:
        done: bytes of the clips of this run so far, finished and in flight.
        known: the sizes known so far, summed.
        unknown: clips still to fetch whose size is not known yet.
        total: ``known`` plus the unknown clips at the mean known size (an estimate when
            ``unknown``); None when some sizes are unknown and none is known.
        rate: bytes per second, None until the first second of data.
        eta: seconds left at ``rate`` (``inf`` when nothing arrives), 0 when nothing is
            left; None while the rate or the total is unknown.
        active: transfers are running (a rate of 0 is a stall, not a wait).
    """

    done: int
    known: int
    unknown: int
    total: int | None
    rate: float | None
    eta: float | None
    active: bool


def figures(stats: DownloadStats, rate: float | None) -> Figures:
    """The figures of ``stats`` at ``rate`` (from a `RateMeter`)."""
    sized = [t for t in stats.in_flight if t.total is not None]
    unknown = max(0, stats.clips_known - stats.clips_done - len(sized))
    unsized_done = sum(t.done for t in stats.in_flight if t.total is None)
    known = stats.bytes_expected - unsized_done  # finished files and the announced sizes
    on_disk = stats.states.get(ClipState.DOWNLOADED, 0) + stats.states.get(
        ClipState.ALREADY_PRESENT, 0
    )
    sized_count = on_disk + len(sized)
    total: int | None = known
    if unknown:
        total = round(known + unknown * known / sized_count) if sized_count else None
    if not stats.clips_known and stats.requests_pending:
        total = None  # no clip known yet: the total is not 0, it is still to be learnt
    done = stats.bytes_done
    eta: float | None = None
    if total is not None:
        left = max(0, total - done)
        if not left:
            eta = 0.0  # all in, whether or not a rate was measured (a run under a second)
        elif rate is not None:
            eta = math.inf if rate <= 0 else left / rate
    return Figures(
        done=done,
        known=known,
        unknown=unknown,
        total=None if total is None else max(total, done),
        rate=rate,
        eta=eta,
        active=bool(stats.in_flight),
    )


def format_size(count: float) -> str:
    """``28.6 MiB``, ``512 KiB``, ``900 B``."""
    if count >= MiB - KiB / 2:  # what would round to 1024 KiB is 1.0 MiB
        return f"{count / MiB:.1f} MiB"
    if count >= KiB - 0.5:
        return f"{count / KiB:.0f} KiB"
    return f"{count:.0f} B"


def format_pair(done: int, total: int | None, *, estimated: bool = False) -> str:
    """``12.3/28.6 MiB``: both in the unit of the total (``~`` before an estimated one)."""
    if total is None:
        return f"{format_size(done)}/?"
    mark = "~" if estimated else ""
    if total >= MiB - KiB / 2:
        return f"{done / MiB:.1f}/{mark}{total / MiB:.1f} MiB"
    if total >= KiB - 0.5:
        return f"{done / KiB:.0f}/{mark}{total / KiB:.0f} KiB"
    return f"{done}/{mark}{total} B"


def format_rate(rate: float | None) -> str:
    """``3.1 MiB/s`` (``? MiB/s`` while not known)."""
    return "? MiB/s" if rate is None else f"{format_size(rate)}/s"


def format_duration(seconds: float) -> str:
    """``0:05``, ``12:34``, ``1:02:03`` (rounded up to the second)."""
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_eta(shown: Figures) -> str:
    """The time left: ``0:05``; ``?`` while unknown; ``stalled`` or ``waiting`` at a rate of 0."""
    if shown.eta is None:
        return "?"
    if math.isinf(shown.eta):
        return "stalled" if shown.active else "waiting"
    return format_duration(shown.eta)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def waiting_for(stats: DownloadStats) -> str:
    """``waiting for 1 request (processing, finding_highlights, 45%)``, or for several
    ``waiting for 3 requests (2 processing, 1 queued)``: what the server last said of the
    requests waited for, as far as it said it."""
    line = f"waiting for {_count(stats.requests_pending, 'request')}"
    seen = stats.requests_waited
    if len(seen) == 1 and stats.requests_pending == 1:
        (status,) = seen
        said = [status.status_raw or status.status.value, status.step]
        said.append(None if status.progress is None else f"{status.progress:g}%")
        return f"{line} ({', '.join(part for part in said if part)})"
    if seen:
        states: dict[str, int] = {}
        for status in seen:
            word = status.status_raw or status.status.value
            states[word] = states.get(word, 0) + 1
        return f"{line} ({', '.join(f'{count} {word}' for word, count in states.items())})"
    return line


def start_line(stats: DownloadStats, requests: int) -> str:
    """What a download is about to fetch, as far as known: ``downloading 10 clips from 2
    requests, 28.6 MiB`` (sizes not known yet are said to be so)."""
    line = f"downloading {_count(stats.clips_known, 'clip')} from {_count(requests, 'request')}"
    present = stats.states.get(ClipState.ALREADY_PRESENT, 0)
    if present:
        line += f" ({present} already present)"
    shown = figures(stats, None)
    if not shown.unknown:
        return f"{line}, {format_size(shown.known)}"
    if shown.known:
        return f"{line}, {format_size(shown.known)} known, {shown.unknown} sizes not known yet"
    return f"{line}, sizes not known yet"


def progress_line(stats: DownloadStats, rate: float | None) -> str:
    """One line of a log: ``progress: 12.3/28.6 MiB, 3.1 MiB/s, ETA 0:05; 4 of 10 clips
    done, 3 in flight`` (then what is queued, held or still awaited)."""
    if not stats.clips_known and stats.requests_pending:
        return f"progress: {waiting_for(stats)}"
    parts = [f"{stats.clips_done} of {_count(stats.clips_known, 'clip')} done"]
    if stats.in_flight:
        parts.append(f"{len(stats.in_flight)} in flight")
    if stats.queued:
        parts.append(f"{stats.queued} queued")
    if stats.waiting:
        parts.append(f"{stats.waiting} re-rendering")
    if stats.requests_pending:
        parts.append(waiting_for(stats))
    shown = figures(stats, rate)
    size = format_pair(shown.done, shown.total, estimated=bool(shown.unknown))
    head = f"{size}, {format_rate(rate)}, ETA {format_eta(shown)}"
    return f"progress: {head}; {', '.join(parts)}"


class LogProgress:
    """The progress lines of a log (not a terminal): when each one is due, and its text.

    The start line comes once every request is read (`start_line`), a progress line every
    ``interval`` seconds from ``started`` (`progress_line`), whatever the output between.
    """

    def __init__(self, interval: float, started: float) -> None:
        self.meter = RateMeter()
        self._interval = interval
        self._next = started + interval
        self._announced = False

    def lines(self, now: float, stats: DownloadStats, requests: int) -> list[str]:
        """The lines due at ``now`` (often none); ``requests``: those read without error."""
        self.meter.observe(now, stats.bytes_received)
        due: list[str] = []
        if not self._announced and not stats.requests_pending:
            self._announced = True
            if stats.clips_known:
                due.append(start_line(stats, requests))
        if now >= self._next:
            while self._next <= now:  # a late look skips the lines it missed
                self._next += self._interval
            due.append(progress_line(stats, self.meter.rate(now)))
        return due


def progress_interval(environ: Mapping[str, str]) -> float:
    """Seconds between the progress lines of a log: ``SSEMBLE_PROGRESS_INTERVAL``, else 10.

    Raises:
        UsageError: the variable is set to something else than a number above 0.
    """
    raw = environ.get(INTERVAL_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(
            f"{INTERVAL_VARIABLE}={raw!r}: expected a number of seconds above 0"
            f" (default {DEFAULT_INTERVAL:g})"
        )
    return value
