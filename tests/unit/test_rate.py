"""The CLI's progress figures: the rate meter, the ETA, units, the lines of a log (pure)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async._cli._parser import UsageError
from ssemble_async._cli._rate import (
    DEFAULT_INTERVAL,
    LogProgress,
    RateMeter,
    figures,
    format_duration,
    format_eta,
    format_pair,
    format_rate,
    format_size,
    progress_interval,
    progress_line,
    start_line,
    waiting_for,
)
from ssemble_async._download_models import ClipState, DownloadStats, TransferProgress
from ssemble_async._models import RequestState, RequestStatus

MiB = 1024 * 1024

looks = st.lists(
    st.tuples(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        st.integers(min_value=0, max_value=10**12),
    ),
    max_size=60,
)


def counted(looks: list[tuple[float, int]]) -> int:
    """The bytes a meter counts from these looks: every increase over the previous count."""
    return sum(max(0, b[1] - a[1]) for a, b in itertools.pairwise(looks))


@given(looks, st.floats(min_value=-1e6, max_value=2e6, allow_nan=False))
def test_the_rate_is_never_negative_nor_more_than_was_received(
    seen: list[tuple[float, int]], later: float
) -> None:
    meter = RateMeter()
    for now, count in seen:
        meter.observe(now, count)
        rate = meter.rate(now)
        assert rate is None or 0 <= rate <= counted(seen) / meter.warmup
    rate = meter.rate(later)  # any time, even one before the last look
    assert rate is None or 0 <= rate <= counted(seen) / meter.warmup


@given(
    st.floats(min_value=1000.0, max_value=1e9),  # bytes from the first step on
    st.floats(min_value=0.01, max_value=2.0),
    st.integers(min_value=1, max_value=400),
)
def test_a_steady_flow_is_measured_at_its_rate(rate: float, step: float, looks: int) -> None:
    meter = RateMeter()
    for n in range(looks + 1):
        meter.observe(n * step, round(rate * n * step))
    now = looks * step
    measured = meter.rate(now)
    if now < meter.warmup:
        assert measured is None
    else:
        assert measured == pytest.approx(rate, rel=1e-6, abs=2 / meter.warmup)


@given(looks, st.floats(min_value=1e-3, max_value=1e6))
def test_the_rate_falls_to_zero_when_nothing_arrives(
    seen: list[tuple[float, int]], quiet: float
) -> None:
    meter = RateMeter()
    for now, count in seen:
        meter.observe(now, count)
    last = max((now for now, _ in seen), default=0.0)
    rate = meter.rate(last + meter.window + quiet)
    assert rate is None or rate == 0


def test_no_rate_in_the_first_second_of_data() -> None:
    meter = RateMeter()
    meter.observe(100.0, 0)  # nothing yet: the data starts after this look
    meter.observe(100.5, 500_000)
    assert meter.rate(100.5) is None
    assert meter.rate(100.99) is None
    meter.observe(101.0, 1_000_000)
    assert meter.rate(101.0) == pytest.approx(1_000_000)


def test_bytes_before_the_first_look_do_not_count() -> None:
    meter = RateMeter()
    meter.observe(0.0, 5 * MiB)  # resumed clips: their bytes came before this run
    meter.observe(2.0, 5 * MiB + 2000)
    assert meter.rate(2.0) == pytest.approx(1000)


def test_a_count_that_goes_down_starts_over_from_there() -> None:
    meter = RateMeter()
    meter.observe(0.0, 0)
    meter.observe(1.0, 1000)
    meter.observe(2.0, 400)  # a transfer restarted: no bytes are taken back
    meter.observe(3.0, 1400)
    assert meter.rate(3.0) == pytest.approx(2000 / 3)


def test_time_that_runs_backwards_counts_as_no_time() -> None:
    meter = RateMeter()
    meter.observe(10.0, 0)
    meter.observe(12.0, 2000)
    meter.observe(11.0, 3000)  # taken as 12.0
    assert meter.rate(5.0) == pytest.approx(1500)


def test_the_window_forgets_old_bytes() -> None:
    meter = RateMeter(window=4.0)
    meter.observe(0.0, 0)
    meter.observe(1.0, 10_000_000)  # a burst
    for second in range(2, 9):
        meter.observe(float(second), 10_000_000 + (second - 1) * 1000)
    assert meter.rate(8.0) == pytest.approx(1000)


def test_a_warmup_longer_than_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="warmup"):
        RateMeter(window=1.0, warmup=2.0)


def stats_at(
    *,
    finished: int = 0,
    present: int = 0,
    clips: int = 10,
    in_flight: tuple[tuple[int, int | None], ...] = (),
    clip_size: int = MiB,
    received: int = 0,
    pending: int = 0,
    queued: int = 0,
    waiting: int = 0,
) -> DownloadStats:
    """A snapshot of a run of ``clips`` clips of ``clip_size`` bytes each."""
    transfers = tuple(
        TransferProgress(request_id="r", clip_id=f"c{n}", title="", done=done, total=total)
        for n, (done, total) in enumerate(in_flight)
    )
    done_bytes = (finished + present) * clip_size
    return DownloadStats(
        clips_known=clips,
        states={ClipState.DOWNLOADED: finished, ClipState.ALREADY_PRESENT: present},
        in_flight=transfers,
        queued=queued,
        waiting=waiting,
        bytes_done=done_bytes + sum(done for done, _ in in_flight),
        bytes_expected=done_bytes
        + sum(done if total is None else total for done, total in in_flight),
        bytes_received=received,
        requests_pending=pending,
    )


def test_rate_and_eta_survive_sizes_learnt_one_by_one() -> None:
    """Ten clips of 1 MiB, two at a time at 1 MiB/s each: every size is learnt as its
    transfer starts, and after the first second the rate and the ETA never go unknown."""
    meter = RateMeter()
    shown = []
    for tick in range(51):
        now = tick / 10
        finished = min(10, 2 * int(now))  # a pair ends every second
        part = round((now - int(now)) * MiB)
        flying = () if finished == 10 else ((part, MiB), (part, MiB))
        received = finished * MiB + 2 * part
        stats = stats_at(finished=finished, in_flight=flying, received=received)
        meter.observe(now, stats.bytes_received)
        shown.append((now, figures(stats, meter.rate(now))))
    for now, at in shown:
        if now >= 1.0:
            assert at.rate == pytest.approx(2 * MiB, rel=0.05)
            assert at.eta is not None
            assert at.total == 10 * MiB  # the clips not started: at the mean known size
        assert at.total is None or at.total >= at.done


def test_figures_with_every_size_known() -> None:
    stats = stats_at(clips=3, finished=1, in_flight=((MiB // 2, MiB), (0, 2 * MiB)))
    at = figures(stats, MiB / 2)
    assert (at.known, at.unknown, at.total, at.done) == (4 * MiB, 0, 4 * MiB, 3 * MiB // 2)
    assert at.eta == pytest.approx(5)
    assert format_eta(at) == "0:05"


def test_figures_without_any_size_known() -> None:
    at = figures(stats_at(clips=4, queued=4), 1000.0)
    assert (at.total, at.eta) == (None, None)
    assert format_eta(at) == "?"
    assert format_pair(at.done, at.total) == "0 B/?"


def test_a_rate_of_zero_is_a_stall_or_a_wait() -> None:
    stalled = figures(stats_at(clips=2, in_flight=((10, MiB), (10, MiB))), 0.0)
    assert stalled.eta == math.inf
    assert format_eta(stalled) == "stalled"
    held = figures(stats_at(clips=3, finished=2, waiting=1), 0.0)
    assert format_eta(held) == "waiting"


def test_nothing_left_is_an_eta_of_zero() -> None:
    assert format_eta(figures(stats_at(clips=2, finished=2), 0.0)) == "0:00"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (600_000, "586 KiB"),
        (MiB - 1, "1.0 MiB"),
        (30_000_000, "28.6 MiB"),
        (5 * 1024 * MiB, "5120.0 MiB"),
    ],
)
def test_sizes_are_mib_then_kib_then_bytes(count: int, text: str) -> None:
    assert format_size(count) == text


def test_pairs_rates_and_durations() -> None:
    assert format_pair(12 * MiB, 28 * MiB) == "12.0/28.0 MiB"
    assert format_pair(300 * 1024, 2 * MiB, estimated=True) == "0.3/~2.0 MiB"
    assert format_pair(10_000, 50_000) == "10/49 KiB"
    assert format_pair(10, 500) == "10/500 B"
    assert format_rate(3.25 * MiB) == "3.2 MiB/s"
    assert format_rate(512 * 1024) == "512 KiB/s"
    assert format_rate(None) == "? MiB/s"
    assert [format_duration(s) for s in (0, 0.2, 5, 754, 3723)] == [
        "0:00",
        "0:01",
        "0:05",
        "12:34",
        "1:02:03",
    ]


def test_start_line_says_what_is_known() -> None:
    all_known = stats_at(clips=2, in_flight=((0, 15 * MiB), (0, 13_600_000)))
    assert start_line(all_known, 2) == "downloading 2 clips from 2 requests, 28.0 MiB"
    some = stats_at(clips=10, present=3, in_flight=((0, MiB),), queued=6)
    assert start_line(some, 1) == (
        "downloading 10 clips from 1 request (3 already present), 4.0 MiB known,"
        " 6 sizes not known yet"
    )
    none = stats_at(clips=1, queued=1)
    assert start_line(none, 1) == "downloading 1 clip from 1 request, sizes not known yet"


def test_progress_line() -> None:
    stats = stats_at(
        clips=10, finished=4, in_flight=((MiB // 2, MiB),), queued=4, waiting=1, pending=1
    )
    assert progress_line(stats, 2 * MiB) == (
        "progress: 4.5/~10.0 MiB, 2.0 MiB/s, ETA 0:03; 4 of 10 clips done, 1 in flight,"
        " 4 queued, 1 re-rendering, waiting for 1 request"
    )


def test_progress_line_before_any_request_is_read() -> None:
    stats = stats_at(clips=0, pending=2)
    assert progress_line(stats, None) == "progress: waiting for 2 requests"


def test_a_log_gets_the_start_line_once_then_a_line_every_interval() -> None:
    log = LogProgress(2.0, started=0.0)
    printed: list[tuple[float, str]] = []
    for tick in range(71):
        now = tick / 10
        stats = stats_at(clips=4, pending=1 if now < 0.5 else 0, received=tick * 1000)
        printed += [(now, line) for line in log.lines(now, stats, 1)]
    starts = [now for now, line in printed if line.startswith("downloading ")]
    progress = [now for now, line in printed if line.startswith("progress: ")]
    assert starts == [0.5]
    assert progress == [2.0, 4.0, 6.0]


def test_a_late_look_skips_the_lines_it_missed() -> None:
    log = LogProgress(1.0, started=0.0)
    assert len(log.lines(0.0, stats_at(), 1)) == 1  # the start line
    assert [line[:9] for line in log.lines(5.5, stats_at(), 1)] == ["progress:"]
    assert log.lines(5.9, stats_at(), 1) == []
    assert len(log.lines(6.0, stats_at(), 1)) == 1


def test_no_start_line_for_a_run_without_clips() -> None:
    log = LogProgress(10.0, started=0.0)
    assert log.lines(0.0, stats_at(clips=0), 0) == []


@pytest.mark.parametrize(("raw", "seconds"), [(None, DEFAULT_INTERVAL), ("", 10.0), ("0.25", 0.25)])
def test_progress_interval(raw: str | None, seconds: float) -> None:
    environ = {} if raw is None else {"SSEMBLE_PROGRESS_INTERVAL": raw}
    assert progress_interval(environ) == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "nan", "inf"])
def test_a_bad_progress_interval_is_a_usage_error(raw: str) -> None:
    with pytest.raises(UsageError, match="SSEMBLE_PROGRESS_INTERVAL"):
        progress_interval({"SSEMBLE_PROGRESS_INTERVAL": raw})


def _status(rid: str, word: str, step: str | None, progress: int | None) -> RequestStatus:
    return RequestStatus(
        request_id=rid, status=RequestState(word), status_raw=word, step=step, progress=progress
    )


def test_waiting_for_says_what_the_server_said() -> None:
    one = DownloadStats(
        requests_pending=1, requests_waited=(_status("a", "processing", "rendering", 75),)
    )
    assert waiting_for(one) == "waiting for 1 request (processing, rendering, 75%)"
    bare = DownloadStats(requests_pending=1, requests_waited=(_status("a", "queued", None, None),))
    assert waiting_for(bare) == "waiting for 1 request (queued)"
    several = DownloadStats(
        requests_pending=3,
        requests_waited=(
            _status("a", "processing", "x", 10),
            _status("b", "queued", None, None),
            _status("c", "processing", "y", 90),
        ),
    )
    assert waiting_for(several) == "waiting for 3 requests (2 processing, 1 queued)"
    assert waiting_for(DownloadStats(requests_pending=2)) == "waiting for 2 requests"
    assert progress_line(several, None) == "progress: " + waiting_for(several)
