"""Failure paths keep the CLI's promises (issue 13, items 1-7): exit codes 0/1/2/130, one line
on stderr in the command line's own terms, usage errors found before any call."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from ssemble_async._cli._parser import build_parser
from ssemble_async.testing import ApiFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import Result, assert_one_line_error, environment, ssemble, take_retries

pytestmark = pytest.mark.anyio

RID = "0123456789abcdef01234567"
#: Words of the library's API that a command line user has no use for.
LIBRARY_WORDS = (
    "wait=True",
    "wait_for_completion",
    "api_key=",
    "create_short",
    "list_templates",
    "base_url",
    "Timeouts",
    "ConnectionSettings",
)


def assert_cli_terms(result: Result) -> None:
    for word in LIBRARY_WORDS:
        assert word not in result.err, (word, result.err)
    assert "Traceback" not in result.err


async def interrupt(
    args: list[str], fake: FakeSsembleAPI, ready: Callable[[bytes], bool]
) -> tuple[int, str]:
    """Start the CLI, send SIGINT once ``ready(stdout so far)``; return its code and stderr."""
    command = [sys.executable, "-m", "ssemble_async", *args]
    async with await anyio.open_process(command, env=environment(fake)) as process:
        assert process.stdout is not None and process.stderr is not None
        seen = b""
        with anyio.fail_after(20):
            while not ready(seen):
                with anyio.move_on_after(0.1):
                    seen += await process.stdout.receive()
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            code = await process.wait()
        err = b""
        async for chunk in process.stderr:
            err += chunk
    return code, err.decode()


# -- 1. exit codes: 0, 1 (a wait that timed out, an OSError), 2 (usage), 130 ----------------


async def test_exit_0_when_the_command_did_its_job(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("templates", fake=fake_ssemble)
    assert (result.code, result.err) == (0, "")


async def test_a_wait_that_times_out_exits_1_not_2(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1000))
    result = await ssemble(
        "wait", rid, "--timeout", "0.5", "--poll-interval", "0.1", fake=fake_ssemble
    )
    assert result.code == 1
    assert_one_line_error(result, f"request {rid} was still queued after 0.5 s")
    assert "raise --timeout" in result.err
    assert_cli_terms(result)


async def test_an_os_error_while_running_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeSsembleAPI() as fake:
            result = await ssemble("listen", "--port", str(port), "-o", str(tmp_path), fake=fake)
    assert result.code == 1
    assert_one_line_error(result, "address")


async def test_exit_2_only_for_usage_errors_found_before_any_call(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    for args in (
        ["frobnicate"],
        ["wait", RID, "--timeout", "0"],
        ["get", "not-an-id"],
        ["download", RID, "-o", str(tmp_path / "file"), "--json"],
        ["download", "-i", str(tmp_path / "missing.txt")],
        ["--base-url", "ftp://example.org", "templates"],
    ):
        (tmp_path / "file").write_text("")
        result = await ssemble(*args, fake=fake_ssemble)
        assert result.code == 2, (args, result.err)
        assert_one_line_error(result, "")
        assert_cli_terms(result)
    assert fake_ssemble.api_requests == []


async def test_ctrl_c_during_wait_exits_130_without_talk_of_clips(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1000))
    code, err = await interrupt(
        ["wait", rid, "--poll-interval", "0.2"], fake_ssemble, lambda out: rid.encode() in out
    )
    assert code == 130
    assert err.startswith("ssemble: interrupted")
    assert "the job keeps running on the server" in err
    assert "clips" not in err
    assert "Traceback" not in err


async def test_ctrl_c_during_templates_exits_130_without_talk_of_clips(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    fake_ssemble.inject_api_fault(ApiFault(path_prefix="/templates", delay=30, times=5))
    code, err = await interrupt(
        ["templates"], fake_ssemble, lambda _: bool(fake_ssemble.api_requests)
    )
    assert code == 130
    assert err.strip() == "ssemble: interrupted"


# -- 2. every numeric flag checked by the parser: one line, exit 2, no internal names -----------


def typed_options() -> list[tuple[str, str]]:
    """(command, flag) of every option of every command that takes a checked value."""
    found: list[tuple[str, str]] = []
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if action.type is not None and action.option_strings:
                found.append((name, action.option_strings[0]))
    return found


def test_every_typed_option_is_listed() -> None:
    options = set(typed_options())
    assert {
        ("download", "--concurrency"),
        ("download", "--chunk-size"),
        ("download", "--idle-timeout"),
        ("download", "--recompile-wait"),
        ("download", "--poll-interval"),
        ("wait", "--timeout"),
        ("wait", "--poll-interval"),
        ("create", "--start"),
        ("create", "--end"),
        ("create", "--music-volume"),
        ("create", "--template-id"),
        ("list", "--limit"),
        ("list", "--page-size"),
        ("listen", "--port"),
        ("fake-server", "--port"),
        ("fake-server", "--clip-port"),
        ("fake-server", "--jobs"),
    } <= options
    # a number taken as it comes (type=float, type=int) is no check at all
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.type not in (int, float), (name, action.option_strings)


def _base_args(command: str) -> list[str]:
    return {
        "download": ["download", RID],
        "wait": ["wait", RID],
        "create": ["create", "--url", "https://youtu.be/x", "--start", "0", "--end", "60"],
        "listen": ["listen"],
    }.get(command, [command])


@pytest.mark.parametrize(("command", "flag"), typed_options())
async def test_a_value_that_is_no_number_is_one_line(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, command: str, flag: str
) -> None:
    result = await ssemble(*_base_args(command), flag, "abc", cwd=tmp_path, fake=fake_ssemble)
    assert result.code == 2, result.err
    assert_one_line_error(result, f"argument {flag}: 'abc' is not ")
    assert not re.search(r"invalid \w+ value", result.err), result.err
    assert f"ssemble {command} --help" in result.err
    assert fake_ssemble.api_requests == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["wait", RID, "--poll-interval", "0"], "above 0"),
        (["wait", RID, "--poll-interval", "-1"], "above 0"),
        (["download", RID, "--wait", "--poll-interval", "0"], "above 0"),
        (["download", RID, "--wait", "--poll-interval", "-1"], "above 0"),
        (["wait", RID, "--timeout", "0"], "above 0"),
        (["wait", RID, "--timeout", "-1"], "above 0"),
        (["wait", RID, "--timeout", "nan"], "above 0"),
        (["wait", RID, "--timeout", "inf"], "above 0"),
        (["download", RID, "--concurrency", "0"], "1 or more"),
        (["download", RID, "--idle-timeout", "0"], "above 0"),
        (["download", RID, "--recompile-wait", "-1"], "0 or more"),
        (["download", RID, "--chunk-size", "10g"], "with k or m"),
        (["download", RID, "--chunk-size", "1k"], "from 64k to 64m"),
        (["download", RID, "--chunk-size", "1g"], "from 64k to 64m"),
        (["list", "--limit", "0"], "1 or more"),
        (["list", "--page-size", "101"], "1 to 100"),
        (["create", "--url", "u", "--start", "-1", "--end", "60"], "0 or more"),
        (["create", "--url", "u", "--start", "0", "--end", "0"], "above 0"),
        (["create", "--url", "u", "--start", "0", "--end", "60", "--music-volume", "101"], "100"),
        (["create", "--url", "u", "--start", "0", "--end", "9", "--template-id", "x"], "templates"),
        (["fake-server", "--jobs", "-1"], "0 to 1000"),
        (["fake-server", "--port", "70000"], "0-65535"),
    ],
)
async def test_out_of_range_values_are_refused_by_the_parser(
    fake_ssemble: FakeSsembleAPI, args: list[str], needle: str
) -> None:
    with anyio.fail_after(30):  # a value taken as given may start a server that never ends
        result = await ssemble(*args, fake=fake_ssemble)
    assert result.code == 2, result.err
    assert_one_line_error(result, needle)
    assert_cli_terms(result)
    assert fake_ssemble.api_requests == []


def test_values_in_range_are_taken() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["download", RID, "--recompile-wait", "0", "--chunk-size", "1.5m", "--poll-interval", ".5"]
    )
    assert (args.recompile_wait, args.chunk_size, args.poll_interval) == (0.0, 1572864, 0.5)
    for text, size in (("65536", 65536), ("512k", 524288), ("512KiB", 524288), ("2MB", 2 << 20)):
        assert parser.parse_args(["download", RID, "--chunk-size", text]).chunk_size == size


# -- 3. hints in the command line's terms ----------------------------------------------------


async def test_a_bad_key_says_api_key_flag_after_a_full_stop(fake_ssemble: FakeSsembleAPI) -> None:
    env = environment(fake_ssemble, SSEMBLE_API_KEY="sk_ssemble_wrong")
    result = await ssemble("templates", env=env)
    assert result.code == 1
    assert_one_line_error(
        result, "or revoked. Check the API key (ssemble auth status tells which one is used:"
    )
    assert "--api-key, SSEMBLE_API_KEY or the one ssemble auth login saved" in result.err
    assert_cli_terms(result)


async def test_no_key_names_the_flag() -> None:
    result = await ssemble("templates", env=environment(None))
    assert result.code == 2
    assert_one_line_error(result, "pass --api-key or set SSEMBLE_API_KEY")
    assert_cli_terms(result)


async def test_a_malformed_id_names_ssemble_create(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("get", "nope", fake=fake_ssemble)
    assert result.code == 2
    assert_one_line_error(result, "as ssemble create prints it")
    assert_cli_terms(result)


async def test_a_not_found_id_names_ssemble_list(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("get", RID, fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, "your account. Check the request id (ssemble list shows")
    assert_cli_terms(result)


async def test_network_down_names_base_url_flag() -> None:
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_x", SSEMBLE_BASE_URL="http://127.0.0.1:9")
    result = await ssemble("status", RID, env=env)
    assert result.code == 1
    assert len(take_retries(result)) == 4  # "ssemble: retry 1/4 in 0.6 s: connection refused"
    assert_one_line_error(result, "Check the network and --base-url")
    assert_cli_terms(result)


async def test_a_bad_base_url_scheme_names_the_flag() -> None:
    env = environment(None, SSEMBLE_API_KEY="sk_ssemble_x")
    result = await ssemble("--base-url", "ftp://example.org", "templates", env=env)
    assert result.code == 2
    assert_one_line_error(result, "--base-url (SSEMBLE_BASE_URL) must start with https://")
    assert_cli_terms(result)


async def test_a_spent_quota_names_the_reset_once(fake_ssemble: FakeSsembleAPI) -> None:
    fake_ssemble.set_quota(remaining_hour=0)
    result = await ssemble("templates", fake=fake_ssemble)
    assert result.code == 1
    reset = f"{fake_ssemble.quota_reset:%H:%M} UTC"
    assert_one_line_error(result, f"run again after {reset}")
    assert result.err.count(reset) == 1
    assert_cli_terms(result)


# -- 4. a wrong base URL is named as such ----------------------------------------------------


async def test_a_base_url_without_api_v1_is_named(fake_ssemble: FakeSsembleAPI) -> None:
    root = fake_ssemble.base_url.removesuffix("/api/v1")
    result = await ssemble("list", "--base-url", root, fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, "--base-url (or SSEMBLE_BASE_URL) does not point at the API")
    assert "/api/v1" in result.err
    assert "request id" not in result.err
    assert_cli_terms(result)
    # nor is it taken for a request already gone
    gone = await ssemble("delete", RID, "--missing-ok", "--base-url", root, fake=fake_ssemble)
    assert gone.code == 1
    assert_one_line_error(gone, "does not point at the API")


# -- 5. what is said at the end matches what happened ----------------------------------------


async def test_delete_missing_ok_says_it_was_already_gone(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("delete", RID, "--missing-ok", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert result.out.strip() == f"request {RID} was already gone: nothing deleted"
    as_json = await ssemble("delete", RID, "--missing-ok", "--json", fake=fake_ssemble)
    assert as_json.json() == {"deleted": RID, "already_gone": True}
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    deleted = await ssemble("delete", rid, "--missing-ok", fake=fake_ssemble)
    assert deleted.out.strip() == f"deleted request {rid}"


# -- 6. an output folder that cannot be written is a usage error, before any call --------------


@pytest.mark.parametrize("where", ["a file", "under a file"])
async def test_an_unwritable_output_is_refused_before_any_call(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, where: str
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    plain = tmp_path / "plain"
    plain.write_text("not a folder")
    output = plain if where == "a file" else plain / "clips"
    for command in (["download", rid], ["listen"]):
        result = await ssemble(*command, "-o", str(output), fake=fake_ssemble)
        assert result.code == 2, result.err
        assert_one_line_error(result, f"-o {output}")
    demo = await ssemble("demo", "-o", str(output), env=environment(None))
    assert demo.code == 2
    assert_one_line_error(demo, f"-o {output}")
    assert fake_ssemble.api_requests == []
    assert plain.read_text() == "not a folder"


async def test_a_read_only_output_is_refused_before_any_call(
    fake_ssemble: FakeSsembleAPI, make_tmpfs: Callable[[str], Path]
) -> None:
    read_only = make_tmpfs("1m,ro")
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    for output in (read_only, read_only / "clips"):
        result = await ssemble("download", rid, "-o", str(output), fake=fake_ssemble)
        assert result.code == 2, result.err
        assert_one_line_error(result, "no permission to write")
    assert fake_ssemble.api_requests == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder")
async def test_a_folder_without_write_permission_is_refused(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = await ssemble("download", RID, "-o", str(locked), fake=fake_ssemble)
    finally:
        locked.chmod(stat.S_IRWXU)
    assert result.code == 2
    assert_one_line_error(result, "no permission to write")
    assert fake_ssemble.api_requests == []


# -- 7. a batch downloads what is ready and reports the rest not_ready -------------------------


async def test_a_batch_downloads_what_is_ready(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    done = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip())))
    queued = fake_ssemble.add_job(FakeJob(reads_per_step=1000))
    result = await ssemble("download", done, queued, "-o", str(tmp_path), fake=fake_ssemble)
    assert result.code == 1
    assert len(list((tmp_path / done).glob("*.mp4"))) == 2
    assert not (tmp_path / queued).exists()
    assert f"ssemble: not_ready: request {queued} is queued" in result.err
    assert "add --wait" in result.err
    assert_cli_terms(result)

    ids = tmp_path / "ids.txt"
    ids.write_text(f"{queued}\n{done}\n")
    as_json = await ssemble(
        "download", "-i", str(ids), "-o", str(tmp_path / "j"), "--json", fake=fake_ssemble
    )
    assert as_json.code == 1
    report = as_json.json()
    assert isinstance(report, dict)
    assert report["counts"]["downloaded"] == 2
    assert report["request_errors"][queued]["state"] == "not_ready"
    assert report["request_errors"][queued]["error"] == "RequestNotReadyError"
    assert "--wait" in report["request_errors"][queued]["message"]


async def test_a_batch_with_wait_waits_for_the_rest(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    done = fake_ssemble.add_job(FakeJob(steps=()))
    later = fake_ssemble.add_job(FakeJob(reads_per_step=1))
    with anyio.fail_after(60):
        result = await ssemble(
            "download",
            done,
            later,
            "--wait",
            "--poll-interval",
            "0.05",
            "-o",
            str(tmp_path),
            fake=fake_ssemble,
        )
    assert result.code == 0, result.err
    assert len(list((tmp_path / later).glob("*.mp4"))) == 3


@pytest.mark.parametrize("output", ["/proc/ssemble-nope", "/proc/ssemble-nope/clips", "/proc"])
async def test_a_folder_no_one_can_write_is_refused_even_as_root(
    fake_ssemble: FakeSsembleAPI, output: str
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    result = await ssemble("download", rid, "-o", output, fake=fake_ssemble)
    assert result.code == 2, result.err
    assert_one_line_error(result, f"-o {output}: cannot ")
    assert fake_ssemble.api_requests == []
    # a dry run writes nothing, so it does not try: it says where the clips would go
    dry = await ssemble("download", rid, "-o", output, "--dry-run", fake=fake_ssemble)
    assert dry.code == 0, dry.err
    assert f"into {output}" in dry.out
