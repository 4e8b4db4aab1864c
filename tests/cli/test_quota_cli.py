"""The CLI and the hourly quota: waiting for it, failing fast, ``ssemble quota`` and its cache,
``--quota-url``, and the 429 messages that name the flag to use."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import stat
from pathlib import Path

import anyio
import pytest

from ssemble_async._cli._app import (
    SavedQuota,
    _clock_time,
    load_quota,
    quota_cache_file,
    save_quota,
)
from ssemble_async._cli._output import notices
from ssemble_async.testing import ApiFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import ESC, Result, assert_one_line_error, environment, run_in_pty, ssemble

pytestmark = pytest.mark.anyio

WAIT_NOTICE = re.compile(r"^ssemble: quota spent; waiting until \d\d:\d\d UTC \(\d+ min\)$")
RATE_LIMIT_429 = json.dumps(
    {"success": False, "error": {"code": "rate_limit_exceeded", "message": "Slow down"}}
).encode()


def cache_file(fake: FakeSsembleAPI, cache_home: Path) -> Path:
    path = quota_cache_file(fake.api_key, fake.base_url, {"XDG_CACHE_HOME": str(cache_home)})
    assert path is not None
    return path


def saved(fake: FakeSsembleAPI, cache_home: Path) -> SavedQuota:
    figures = load_quota(cache_file(fake, cache_home))
    assert figures is not None
    return figures


def spend_quota(fake: FakeSsembleAPI, *, in_minutes: int = 20) -> dt.datetime:
    """Spend the hour's quota until a whole minute ``in_minutes`` from now; return it."""
    reset = fake.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=in_minutes)
    fake.set_quota(remaining_hour=0, reset=reset)
    return reset


def spend_quota_briefly(fake: FakeSsembleAPI, seconds: float = 2.0) -> None:
    """Spend the hour's quota until ``seconds`` from now (the next window is full)."""
    fake.set_quota(remaining_hour=0, reset=fake.now() + dt.timedelta(seconds=seconds))


def wait_notices(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if "quota spent; waiting" in line]


def completed_job(fake: FakeSsembleAPI) -> str:
    return fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=4096), FakeClip(size=4096))))


# -- --wait waits for the quota and says so once ----------------------------------------------


async def test_download_wait_waits_for_the_quota_and_says_so_once(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    ids = [completed_job(fake_ssemble) for _ in range(3)]
    spend_quota_briefly(fake_ssemble)
    with anyio.fail_after(60):
        result = await ssemble(
            "download",
            *ids,
            "--wait",
            "--poll-interval",
            "0.5",
            "-o",
            str(tmp_path),
            fake=fake_ssemble,
        )
    assert result.code == 0, result.err
    notices = wait_notices(result)
    assert len(notices) == 1, result.err
    assert WAIT_NOTICE.match(notices[0]), notices
    assert "Traceback" not in result.err
    assert "WARNING" not in result.err and "ssemble_async" not in result.err
    assert len(list(tmp_path.rglob("*.mp4"))) == 6
    assert sum(fake_ssemble.rate_limited.values()) <= 1  # at most the call that learnt it


async def test_wait_command_waits_for_the_quota_and_says_so(fake_ssemble: FakeSsembleAPI) -> None:
    rid = completed_job(fake_ssemble)
    spend_quota_briefly(fake_ssemble)
    with anyio.fail_after(60):
        result = await ssemble("wait", rid, "--json", "--poll-interval", "0.5", fake=fake_ssemble)
    assert result.code == 0, result.err
    notices = wait_notices(result)
    assert len(notices) == 1 and WAIT_NOTICE.match(notices[0]), result.err
    data = result.json()
    assert isinstance(data, dict) and data["request_id"] == rid  # stdout stays pure JSON


async def test_the_wait_notice_on_a_real_terminal() -> None:
    async with FakeSsembleAPI() as fake:
        rid = completed_job(fake)
        spend_quota_briefly(fake)
        env = environment(fake, TERM="xterm-256color", COLUMNS="120", LINES="40")
        with anyio.fail_after(60):
            code, drawn = await anyio.to_thread.run_sync(
                run_in_pty, ["wait", rid, "--poll-interval", "0.5"], env
            )
    assert code == 0, drawn
    assert ESC in drawn  # the spinner was live
    assert drawn.count("quota spent; waiting until") == 1, drawn
    assert re.search(r"ssemble: quota spent; waiting until \d\d:\d\d UTC \(\d+ min\)", drawn)
    assert "Traceback" not in drawn and "WARNING" not in drawn


async def test_wait_for_quota_still_makes_any_command_wait(fake_ssemble: FakeSsembleAPI) -> None:
    spend_quota_briefly(fake_ssemble)
    with anyio.fail_after(60):
        result = await ssemble("templates", "--wait-for-quota", "-q", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert len(wait_notices(result)) == 1


def test_one_notice_per_quota_wait(capsys: pytest.CaptureFixture[str]) -> None:
    notices.reset()
    notices.say("quota spent; waiting until 21:59 UTC (19 min)")
    notices.say("quota spent; waiting until 22:00 UTC (18 min)")  # the same reset, rounded
    notices.say("quota spent; waiting until 21:59 UTC (17 min)")
    notices.say("quota spent; waiting until 23:00 UTC (60 min)")  # the next wait
    notices.say("another download is writing into x; waiting for it to finish")
    notices.say("another download is writing into x; waiting for it to finish")
    assert capsys.readouterr().err.splitlines() == [
        "ssemble: quota spent; waiting until 21:59 UTC (19 min)",
        "ssemble: quota spent; waiting until 23:00 UTC (60 min)",
        "ssemble: another download is writing into x; waiting for it to finish",
    ]
    notices.reset()


# -- --no-wait-for-quota fails fast -------------------------------------------------------------


@pytest.mark.parametrize("command", ["download", "wait"])
async def test_no_wait_for_quota_fails_fast_naming_the_reset_and_the_flag(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, command: str
) -> None:
    rid = completed_job(fake_ssemble)
    reset = spend_quota(fake_ssemble)
    args = (
        ["download", rid, "--wait", "-o", str(tmp_path)]
        if command == "download"
        else [command, rid]
    )
    with anyio.fail_after(30):
        result = await ssemble(*args, "--no-wait-for-quota", fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(
        result, f"run again after {reset:%H:%M} UTC, or drop --no-wait-for-quota to wait for it"
    )
    assert re.search(r"spent for the next (19|20) min", result.err), result.err
    assert result.err.count(f"{reset:%H:%M} UTC") == 1  # the reset is named once
    assert "nothing was sent" in result.err
    assert len(fake_ssemble.api_requests) <= 1  # only the call that learnt it
    assert not fake_ssemble.clip_requests
    assert not wait_notices(result)

    # the next run knows it from the saved figures: it sends nothing at all
    again = await ssemble(*args, "--no-wait-for-quota", fake=fake_ssemble)
    assert again.code == 1
    assert_one_line_error(again, f"run again after {reset:%H:%M} UTC")
    assert "as a run" in again.err and "saw it" in again.err
    assert len(fake_ssemble.api_requests) <= 1


async def test_no_wait_for_quota_after_the_global_options(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = completed_job(fake_ssemble)
    spend_quota(fake_ssemble)
    result = await ssemble(
        "--no-wait-for-quota", "download", rid, "--wait", "-o", str(tmp_path), fake=fake_ssemble
    )
    assert result.code == 1
    assert_one_line_error(result, "drop --no-wait-for-quota")


async def test_saved_figures_from_a_past_window_do_not_stop_a_run(
    fake_ssemble: FakeSsembleAPI, cache_home: Path
) -> None:
    past = fake_ssemble.now() - dt.timedelta(minutes=5)
    path = cache_file(fake_ssemble, cache_home)
    save_quota(path, SavedQuota(limit_hour=100, remaining_hour=0, reset=past, as_of=past))
    result = await ssemble("templates", "-q", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert fake_ssemble.calls["GET /templates"] == 1


# -- the 429 message names the flag --------------------------------------------------------------


async def test_spent_quota_without_wait_suggests_the_flag_that_waits(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = completed_job(fake_ssemble)
    reset = spend_quota(fake_ssemble)
    download = await ssemble("download", rid, "-o", str(tmp_path), fake=fake_ssemble)
    assert download.code == 1
    assert_one_line_error(
        download, f"run again after {reset:%H:%M} UTC, or add --wait to wait for it"
    )
    assert "--wait waits for the quota too" in download.err
    get = await ssemble("get", rid, fake=fake_ssemble)
    assert get.code == 1
    assert_one_line_error(get, "or add --wait-for-quota to wait for it")
    assert len(fake_ssemble.api_requests) <= 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["download", "{rid}", "--wait", "-o", "{dest}"], "unexpected with --wait"),
        (["wait", "{rid}"], "unexpected with ssemble wait"),
        (["get", "{rid}", "--wait-for-quota"], "unexpected with --wait-for-quota"),
    ],
)
async def test_a_429_while_waiting_for_the_quota_is_called_unexpected(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, args: list[str], named: str
) -> None:
    rid = completed_job(fake_ssemble)
    fake_ssemble.inject_api_fault(
        ApiFault(
            status=429,
            body=RATE_LIMIT_429,
            content_type="application/json",
            headers={"Retry-After": "7200"},
            times=50,
        )
    )
    line = [a.format(rid=rid, dest=tmp_path) for a in args]
    with anyio.fail_after(30):
        result = await ssemble(*line, fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, named)
    assert "HTTP 429" in result.err and "run again after" in result.err


async def test_a_429_without_wait_names_the_flag(fake_ssemble: FakeSsembleAPI) -> None:
    fake_ssemble.inject_api_fault(
        ApiFault(
            status=429,
            body=RATE_LIMIT_429,
            content_type="application/json",
            times=50,
            headers={"Retry-After": "7200"},
        )
    )
    result = await ssemble("templates", fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, "or add --wait-for-quota to wait for it")
    assert "unexpected" not in result.err


async def test_a_spent_daily_quota_says_run_again_tomorrow(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = completed_job(fake_ssemble)
    fake_ssemble.set_quota(remaining_day=0)
    result = await ssemble("download", rid, "-o", str(tmp_path), fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, "the daily quota of this API key is spent")
    assert "run again tomorrow, or add --wait to wait for it" in result.err
    assert len(fake_ssemble.api_requests) <= 1


# -- ssemble quota and the saved figures --------------------------------------------------------


async def test_quota_before_any_run_asks_the_api_once_and_says_it_costs_a_call(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    result = await ssemble("quota", "--json", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert "costs one call" in result.err
    assert fake_ssemble.calls["GET /templates"] == 1
    assert len(fake_ssemble.api_requests) == 1
    data = result.json()
    assert isinstance(data, dict)
    assert data["calls_spent"] == 1
    assert data["limit_hour"] == fake_ssemble.hourly_limit
    assert data["remaining_hour"] == fake_ssemble.quota_remaining
    assert data["limit_day"] == fake_ssemble.daily_limit
    assert data["remaining_day"] == fake_ssemble.daily_limit - 1
    assert data["reset_passed"] is False
    assert 0 < data["reset_in_seconds"] <= 3600


async def test_quota_after_a_run_shows_its_figures_without_a_call(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    rid = completed_job(fake_ssemble)
    for _ in range(3):
        assert (await ssemble("status", rid, "-q", fake=fake_ssemble)).code == 0
    sent = len(fake_ssemble.api_requests)
    result = await ssemble("quota", "--json", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert len(fake_ssemble.api_requests) == sent  # nothing asked
    assert result.err == ""
    data = result.json()
    assert isinstance(data, dict)
    assert data["calls_spent"] == 0
    assert data["remaining_hour"] == fake_ssemble.quota_remaining == fake_ssemble.hourly_limit - 3
    assert data["age_seconds"] < 30
    text = await ssemble("quota", fake=fake_ssemble)
    assert text.code == 0
    assert "as of just now" in text.out or re.search(r"as of \d+ s ago", text.out), text.out
    assert f"left this hour  {fake_ssemble.hourly_limit - 3}" in text.out
    assert f"hour resets at  {fake_ssemble.quota_reset:%H:%M} UTC (in " in text.out
    assert ESC not in text.out
    quiet = await ssemble("quota", "-q", fake=fake_ssemble)
    assert quiet.out == f"{fake_ssemble.hourly_limit - 3}\n"
    assert len(fake_ssemble.api_requests) == sent


async def test_quota_refresh_makes_one_cheap_call(fake_ssemble: FakeSsembleAPI) -> None:
    assert (await ssemble("templates", "-q", fake=fake_ssemble)).code == 0
    fake_ssemble.set_quota(remaining_hour=42)  # spent by someone else meanwhile
    stale = (await ssemble("quota", "--json", fake=fake_ssemble)).json()
    assert isinstance(stale, dict) and stale["remaining_hour"] == fake_ssemble.hourly_limit - 1
    fake_ssemble.reset_counters()
    fresh = await ssemble("quota", "--refresh", "--json", fake=fake_ssemble)
    assert fresh.code == 0, fresh.err
    assert dict(fake_ssemble.calls) == {"GET /templates": 1}
    data = fresh.json()
    assert isinstance(data, dict) and data["remaining_hour"] == 41 and data["calls_spent"] == 1
    later = (await ssemble("quota", "--json", fake=fake_ssemble)).json()
    assert isinstance(later, dict) and later["remaining_hour"] == 41  # the refresh was saved


async def test_quota_refresh_with_the_quota_spent_shows_it(fake_ssemble: FakeSsembleAPI) -> None:
    reset = spend_quota(fake_ssemble)
    result = await ssemble("quota", "--refresh", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert "left this hour  0" in result.out
    assert re.search(rf"hour resets at  {reset:%H:%M} UTC \(in (19|20) min\)", result.out)
    assert len(fake_ssemble.api_requests) == 1


async def test_quota_shows_the_age_of_saved_figures(
    fake_ssemble: FakeSsembleAPI, cache_home: Path
) -> None:
    now = fake_ssemble.now()
    reset = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=30)
    save_quota(
        cache_file(fake_ssemble, cache_home),
        SavedQuota(
            limit_hour=100,
            remaining_hour=37,
            limit_day=1000,
            remaining_day=812,
            reset=reset,
            as_of=now - dt.timedelta(minutes=3, seconds=10),
        ),
    )
    result = await ssemble("quota", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert "as of 3 min ago" in result.out
    assert "limit           100 calls an hour, 1000 a day" in result.out
    assert "left this hour  37" in result.out
    assert "left today      812 of 1000" in result.out
    assert re.search(rf"hour resets at  {reset:%H:%M} UTC \(in (29|30) min\)", result.out)
    assert fake_ssemble.api_requests == []


async def test_quota_of_a_window_that_has_reset_says_so(
    fake_ssemble: FakeSsembleAPI, cache_home: Path
) -> None:
    now = fake_ssemble.now()
    save_quota(
        cache_file(fake_ssemble, cache_home),
        SavedQuota(
            limit_hour=100,
            remaining_hour=3,
            reset=now - dt.timedelta(minutes=10),
            as_of=now - dt.timedelta(minutes=30),
        ),
    )
    result = await ssemble("quota", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert "as of 30 min ago" in result.out
    assert "3 before that reset, 100 after it" in result.out
    assert "ssemble quota --refresh" in result.out
    data = (await ssemble("quota", "--json", fake=fake_ssemble)).json()
    assert isinstance(data, dict) and data["reset_passed"] is True
    assert data["reset_in_seconds"] == 0
    assert fake_ssemble.api_requests == []


async def test_the_cache_file_never_holds_the_key(
    fake_ssemble: FakeSsembleAPI, cache_home: Path
) -> None:
    assert (await ssemble("templates", "-q", fake=fake_ssemble)).code == 0
    files = list(cache_home.rglob("*"))
    path = cache_file(fake_ssemble, cache_home)
    assert files == [path.parent, path]  # one file, no temporary left behind
    digest = hashlib.sha256(f"{fake_ssemble.api_key}\n{fake_ssemble.base_url}".encode())
    assert path == cache_home / "ssemble-async" / f"quota-{digest.hexdigest()[:32]}.json"
    raw = path.read_bytes()
    assert fake_ssemble.api_key.encode() not in raw
    assert fake_ssemble.api_key[len("sk_ssemble_") :].encode() not in raw
    assert fake_ssemble.api_key not in str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(raw)
    assert data["remaining_hour"] == fake_ssemble.quota_remaining
    assert set(data) == {
        "version",
        "limit_hour",
        "remaining_hour",
        "limit_day",
        "remaining_day",
        "reset",
        "as_of",
    }


async def test_each_key_and_api_has_its_own_file(fake_ssemble: FakeSsembleAPI) -> None:
    one = quota_cache_file("sk_ssemble_a", "https://x/api/v1", {"XDG_CACHE_HOME": "/c"})
    other_key = quota_cache_file("sk_ssemble_b", "https://x/api/v1", {"XDG_CACHE_HOME": "/c"})
    other_api = quota_cache_file("sk_ssemble_a", "https://y/api/v1", {"XDG_CACHE_HOME": "/c"})
    assert len({one, other_key, other_api}) == 3
    assert one is not None and one.parent == Path("/c/ssemble-async")
    home = quota_cache_file("k", "u", {"XDG_CACHE_HOME": "relative/dir"})
    assert home is not None and home.parent == Path.home() / ".cache" / "ssemble-async"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00", b"[]", b'{"version": 1}', b'{"version": 1, "as_of": 5}'],
)
async def test_an_unreadable_cache_file_is_ignored(
    fake_ssemble: FakeSsembleAPI, cache_home: Path, content: bytes
) -> None:
    path = cache_file(fake_ssemble, cache_home)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    result = await ssemble("quota", "--json", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert "costs one call" in result.err
    assert "Traceback" not in result.err
    assert len(fake_ssemble.api_requests) == 1
    assert saved(fake_ssemble, cache_home).remaining_hour == fake_ssemble.quota_remaining


async def test_a_cache_that_cannot_be_written_does_not_fail_the_run(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = environment(fake_ssemble, XDG_CACHE_HOME=str(blocker))
    result = await ssemble("templates", "-q", env=env)
    assert result.code == 0, result.err
    assert result.err == ""


def test_saving_keeps_the_lower_count_of_one_window(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    reset = dt.datetime(2030, 1, 1, 22, tzinfo=dt.timezone.utc)
    then = reset - dt.timedelta(minutes=30)
    save_quota(path, SavedQuota(limit_hour=100, remaining_hour=40, reset=reset, as_of=then))
    save_quota(path, SavedQuota(limit_hour=100, remaining_hour=45, reset=reset, as_of=then))
    figures = load_quota(path)
    assert figures is not None and figures.remaining_hour == 40
    later = reset + dt.timedelta(hours=1)
    save_quota(path, SavedQuota(limit_hour=100, remaining_hour=99, reset=later, as_of=reset))
    figures = load_quota(path)
    assert figures is not None and figures.remaining_hour == 99  # a new window


def test_reset_times_are_rounded_up_to_the_minute() -> None:
    now = dt.datetime(2030, 1, 1, 21, 30, tzinfo=dt.timezone.utc)
    at = dt.datetime(2030, 1, 1, 21, 59, 30, tzinfo=dt.timezone.utc)
    assert _clock_time(at, now) == "22:00 UTC"
    assert _clock_time(at.replace(minute=59, second=59, microsecond=600_000), now) == "22:00 UTC"
    assert _clock_time(at.replace(hour=22, minute=0, second=0), now) == "22:00 UTC"
    assert _clock_time(at.replace(hour=22, minute=0, second=1), now) == "22:00 UTC"
    assert _clock_time(at.replace(hour=22, minute=0, second=10), now) == "22:01 UTC"
    assert _clock_time(at + dt.timedelta(days=1), now) == "2030-01-02 22:00 UTC"


# -- --quota-url ----------------------------------------------------------------------------------


async def test_an_unsupported_quota_url_is_a_usage_error_before_any_call(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    flag = await ssemble(
        "templates", "--quota-url", "mongodb://:hunter2@127.0.0.1:6379/0", fake=fake_ssemble
    )
    assert flag.code == 2
    assert_one_line_error(flag, "--quota-url: the scheme mongodb:// is not supported")
    assert "hunter2" not in flag.err
    env = environment(fake_ssemble, SSEMBLE_QUOTA_URL="mongodb://:hunter2@127.0.0.1:6379/0")
    from_env = await ssemble("download", completed_job(fake_ssemble), "--wait", env=env)
    assert from_env.code == 2
    assert_one_line_error(from_env, "SSEMBLE_QUOTA_URL: the scheme mongodb:// is not supported")
    assert "hunter2" not in from_env.err
    assert fake_ssemble.api_requests == []


@pytest.mark.parametrize("url", ["memory://", "local://", ""])
async def test_a_supported_quota_url_works(fake_ssemble: FakeSsembleAPI, url: str) -> None:
    result = await ssemble("--quota-url", url, "templates", "-q", fake=fake_ssemble)
    assert result.code == 0, result.err
    # the flag wins over the variable
    env = environment(fake_ssemble, SSEMBLE_QUOTA_URL="mongodb://127.0.0.1/0")
    flag_first = await ssemble("templates", "-q", "--quota-url", url, env=env)
    assert flag_first.code == 0, flag_first.err


async def test_a_waiting_run_after_a_spent_one_sends_nothing_refused(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    rid = completed_job(fake_ssemble)
    spend_quota_briefly(fake_ssemble, seconds=3.0)
    with anyio.fail_after(30):
        first = await ssemble("status", rid, fake=fake_ssemble)  # does not wait: learns it
        assert first.code == 1
        refused = sum(fake_ssemble.rate_limited.values())
        assert refused == 1
        second = await ssemble("wait", rid, "--poll-interval", "0.5", fake=fake_ssemble)
    assert second.code == 0, second.err
    # the saved figures started its budget: it waited for the reset without a refused probe
    assert sum(fake_ssemble.rate_limited.values()) == refused
    assert len(wait_notices(second)) == 1
