"""The ``ssemble`` command through real subprocesses against the fake API."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest

from ssemble_async._manifest import FolderLock
from ssemble_async.testing import ClipFault, FakeClip, FakeJob, FakeSsembleAPI

from ._support import (
    ESC,
    assert_one_line_error,
    environment,
    run_in_pty,
    ssemble,
    take_retries,
)

pytestmark = pytest.mark.anyio

COMMANDS = (
    "download",
    "get",
    "status",
    "wait",
    "create",
    "list",
    "delete",
    "templates",
    "music",
    "game-videos",
    "meme-hooks",
    "quota",
    "fake-server",
    "demo",
)


async def test_help_of_every_command() -> None:
    top = await ssemble("--help")
    assert top.code == 0
    for name in COMMANDS:
        assert name in top.out
        sub = await ssemble(name, "--help")
        assert sub.code == 0, name
        assert "example: ssemble" in sub.out
        assert "--json" in sub.out


async def test_python_m_and_version() -> None:
    result = await ssemble("--version")
    assert result.code == 0
    assert result.out.startswith("ssemble ")


async def test_usage_errors_exit_2() -> None:
    assert (await ssemble("frobnicate")).code == 2
    assert (await ssemble("create", "--start", "0", "--end", "60")).code == 2


async def test_missing_key_is_one_clear_line() -> None:
    result = await ssemble("templates", env=environment(None))
    assert result.code == 2
    assert_one_line_error(result, "SSEMBLE_API_KEY")


@pytest.mark.parametrize("command", ["get", "status", "wait", "delete", "download"])
async def test_malformed_id_exits_2_before_any_call(
    fake_ssemble: FakeSsembleAPI, command: str
) -> None:
    result = await ssemble(command, "not-an-id", fake=fake_ssemble)
    assert result.code == 2
    assert_one_line_error(result, "24 hexadecimal")
    assert fake_ssemble.api_requests == []


async def test_api_errors_are_one_line_and_exit_1(fake_ssemble: FakeSsembleAPI) -> None:
    missing = await ssemble("get", "0123456789abcdef01234567", fake=fake_ssemble)
    assert missing.code == 1
    assert_one_line_error(missing, "resource_not_found")
    bad_key = await ssemble(
        "templates", env=environment(fake_ssemble, SSEMBLE_API_KEY="sk_ssemble_wrong")
    )
    assert bad_key.code == 1
    assert_one_line_error(bad_key, "invalid_api_key")


async def test_quota_exhausted_names_the_reset_time(fake_ssemble: FakeSsembleAPI) -> None:
    fake_ssemble.set_quota(remaining_hour=0)
    result = await ssemble("templates", fake=fake_ssemble)
    assert result.code == 1
    assert_one_line_error(result, f"run again after {fake_ssemble.quota_reset:%H:%M} UTC")
    assert len(fake_ssemble.api_requests) == 1


async def test_network_down(tmp_path: Path) -> None:
    env = environment(
        None, SSEMBLE_API_KEY="sk_ssemble_x", SSEMBLE_BASE_URL="http://127.0.0.1:9/api/v1"
    )
    result = await ssemble("status", "0123456789abcdef01234567", env=env)
    assert result.code == 1
    assert [line.split(" in ")[0] for line in take_retries(result)] == [
        f"ssemble: retry {n}/4" for n in range(1, 5)
    ]
    assert_one_line_error(result, "cannot connect")


async def test_debug_shows_the_traceback_but_never_the_key(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("--debug", "get", "0123456789abcdef01234567", fake=fake_ssemble)
    assert result.code == 1
    assert "Traceback" in result.err
    assert "DEBUG" in result.err
    assert fake_ssemble.api_key not in result.out + result.err
    passed = await ssemble(
        "--debug", "--api-key", fake_ssemble.api_key, "templates", fake=fake_ssemble
    )
    assert passed.code == 0, passed.err[-2000:]
    assert fake_ssemble.api_key not in passed.out + passed.err


@pytest.mark.parametrize("where", ["before", "after"])
async def test_json_before_or_after_the_command(fake_ssemble: FakeSsembleAPI, where: str) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    args = ["--json", "get", rid] if where == "before" else ["get", rid, "--json"]
    result = await ssemble(*args, fake=fake_ssemble)
    assert result.code == 0
    data = result.json()
    assert isinstance(data, dict)
    assert data["request_id"] == rid
    assert data["status"] == "completed"
    assert len(data["shorts"]) == 3
    assert {"viral_score", "video_url", "recompiling", "error"} <= data["shorts"][0].keys()


async def test_every_read_command_as_json(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    status = (await ssemble("status", rid, "--json", fake=fake_ssemble)).json()
    assert isinstance(status, dict) and status["status"] == "completed"
    listed = (await ssemble("list", "--json", "--limit", "5", fake=fake_ssemble)).json()
    assert isinstance(listed, list) and listed[0]["request_id"] == rid
    templates = (await ssemble("templates", "--json", fake=fake_ssemble)).json()
    assert isinstance(templates, list) and len(templates) == 9
    for kind, count in (("music", 45), ("game-videos", 30), ("meme-hooks", 159)):
        items = (await ssemble(kind, "--json", fake=fake_ssemble)).json()
        assert isinstance(items, list) and len(items) == count
        assert all("name" in item for item in items)


async def test_tables_without_escape_codes_when_piped(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=()))
    for args in (("get", rid), ("status", rid), ("list",), ("templates",), ("music",)):
        result = await ssemble(*args, fake=fake_ssemble)
        assert result.code == 0, args
        assert result.out.strip()
        assert ESC not in result.out


async def test_create_sends_every_option(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble(
        "create",
        "--url=https://www.youtube.com/watch?v=AbCdEfGhIjK",
        "--start=120",
        "--end=900",
        "--preferred-length=under90sec",
        "--language=en",
        "--caption-language=es",
        "--template-id=66fcc4c67769688a1d5ad08a",
        "--no-clipping",
        "--hook-title",
        "--meme-hook",
        "--meme-hook-name=Dramatic Zoom",
        "--game-video",
        "--game-video-name=Minecraft Parkour",
        "--cta-text=Full episode on our channel",
        "--music",
        "--music-name=Night Drive",
        "--music-volume=12",
        "--layout=fill",
        "--webhook-url=https://hooks.example.org/ssemble",
        "--json",
        fake=fake_ssemble,
    )
    assert result.code == 0, result.err
    data = result.json()
    assert isinstance(data, dict) and data["request_id"] in fake_ssemble.jobs
    body = fake_ssemble.api_requests[-1].json
    assert body == {
        "url": "https://www.youtube.com/watch?v=AbCdEfGhIjK",
        "start": 120,
        "end": 900,
        "preferredLength": "under90sec",
        "language": "en",
        "captionLanguage": "es",
        "templateId": "66fcc4c67769688a1d5ad08a",
        "noClipping": True,
        "hookTitle": True,
        "memeHook": True,
        "memeHookName": "Dramatic Zoom",
        "gameVideo": True,
        "gameVideoName": "Minecraft Parkour",
        "ctaEnabled": True,
        "ctaText": "Full episode on our channel",
        "music": True,
        "musicName": "Night Drive",
        "musicVolume": 12,
        "layout": "fill",
        "webhookUrl": "https://hooks.example.org/ssemble",
    }


async def test_create_validation_is_a_usage_error(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble("create", "--url=u", "--start=0", "--end=5000", fake=fake_ssemble)
    assert result.code == 2
    assert_one_line_error(result, "1 to 1200")
    assert fake_ssemble.api_requests == []


async def test_wait_and_delete(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1))
    waited = await ssemble("wait", rid, "--poll-interval", "0.05", fake=fake_ssemble)
    assert waited.code == 0, waited.err
    assert "finding_highlights" in waited.out
    assert ESC not in waited.out
    failed = fake_ssemble.add_job(FakeJob(steps=(), outcome="failed", failure_reason="Too dark"))
    result = await ssemble("wait", failed, "--poll-interval", "0.05", fake=fake_ssemble)
    assert result.code == 1
    assert "Too dark" in result.err
    deleted = await ssemble("delete", rid, fake=fake_ssemble)
    assert deleted.code == 0 and rid not in fake_ssemble.jobs
    again = await ssemble("delete", rid, "--missing-ok", fake=fake_ssemble)
    assert again.code == 0


async def test_download_json_report(fake_ssemble: FakeSsembleAPI, tmp_path: Path) -> None:
    rid = fake_ssemble.add_job(
        FakeJob(steps=(), clips=(FakeClip(), FakeClip(error=True, error_message="nope")))
    )
    result = await ssemble("download", rid, "-o", str(tmp_path), "--json", fake=fake_ssemble)
    assert result.code == 0, result.err
    report = result.json()
    assert isinstance(report, dict)
    assert report["ok"] is True
    assert report["counts"]["downloaded"] == 1
    assert report["counts"]["skipped_error"] == 1
    states = sorted(o["state"] for o in report["outcomes"])
    assert states == ["downloaded", "skipped_error"]
    downloaded = next(o for o in report["outcomes"] if o["state"] == "downloaded")
    assert Path(downloaded["path"]).read_bytes() == fake_ssemble.clip_bytes(
        rid, downloaded["clip_id"]
    )


async def test_download_plain_lines_ids_from_file_and_stdin(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    first, second = (fake_ssemble.add_job(FakeJob(steps=())) for _ in range(2))
    id_file = tmp_path / "ids.txt"
    id_file.write_text(f"# my jobs\n{first}\n\n")
    result = await ssemble(
        "download", "-i", str(id_file), "-o", str(tmp_path / "a"), fake=fake_ssemble
    )
    assert result.code == 0, result.err
    assert ESC not in result.out
    assert result.out.count("downloaded ") >= 3
    piped = await ssemble(
        "download",
        "-i",
        "-",
        "-o",
        str(tmp_path / "b"),
        stdin=f"{second}\n".encode(),
        fake=fake_ssemble,
    )
    assert piped.code == 0, piped.err
    assert len(list((tmp_path / "b" / second).glob("*.mp4"))) == 3
    quiet = await ssemble("download", first, "-o", str(tmp_path / "a"), "-q", fake=fake_ssemble)
    assert quiet.code == 0
    # quiet: the essential result only, the paths of the files on disk, one per line
    assert sorted(quiet.out.splitlines()) == sorted(
        str(p) for p in (tmp_path / "a" / first).glob("*.mp4")
    )


async def test_download_exit_codes(fake_ssemble: FakeSsembleAPI, tmp_path: Path) -> None:
    bad = FakeClip()
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(bad, FakeClip())))
    fake_ssemble.inject_clip_fault(ClipFault(clip_id=bad.clip_id, status=500, times=100))
    failed = await ssemble("download", rid, "-o", str(tmp_path), fake=fake_ssemble)
    assert failed.code == 1
    assert "failed" in failed.out
    running = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    not_ready = await ssemble("download", running, "-o", str(tmp_path), fake=fake_ssemble)
    assert not_ready.code == 1
    assert not_ready.err.startswith(f"ssemble: not_ready: request {running} is queued")
    assert "add --wait" in not_ready.err and len(not_ready.err.splitlines()) == 1
    none = await ssemble("download", "-o", str(tmp_path), fake=fake_ssemble)
    assert none.code == 2


async def test_demo_runs_offline(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9"  # a proxy in the environment must not carry the demo
    env = environment(
        None, SSEMBLE_API_KEY="", SSEMBLE_BASE_URL=unreachable, HTTP_PROXY=unreachable
    )
    with anyio.fail_after(60):
        result = await ssemble("demo", cwd=tmp_path, env=env)
    assert result.code == 0, result.err
    assert ESC not in result.out
    assert "skipped_error" in result.out
    clips = list((tmp_path / "ssemble-demo").rglob("*.mp4"))
    assert len(clips) == 7
    assert all(clip.read_bytes()[4:8] == b"ftyp" for clip in clips)


async def test_demo_webhooks_runs_offline_without_polling(tmp_path: Path) -> None:
    unreachable = "http://127.0.0.1:9"
    env = environment(
        None, SSEMBLE_API_KEY="", SSEMBLE_BASE_URL=unreachable, HTTP_PROXY=unreachable
    )
    with anyio.fail_after(60):
        result = await ssemble("demo", "--webhooks", cwd=tmp_path, env=env)
    assert result.code == 0, result.err
    assert "a receiver listens at http://127.0.0.1:" in result.out
    assert "confirmed" in result.out and "with one call" in result.out
    clips = list((tmp_path / "ssemble-demo").rglob("*.mp4"))
    assert len(clips) == 7
    assert all(clip.read_bytes()[4:8] == b"ftyp" for clip in clips)


async def test_fake_server_serves_until_interrupted(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "ssemble_async", "fake-server", "--jobs", "1"]
    async with await anyio.open_process(command, env=environment(None)) as process:
        assert process.stdout is not None
        text = ""
        with anyio.fail_after(20):
            async for chunk in process.stdout:
                text += chunk.decode()
                if "Ctrl-C" in text:
                    break
        exports = [line for line in text.splitlines() if line.startswith("export ")]
        assert len(exports) == 2  # one export per variable
        settings = dict(line.split()[1].split("=", 1) for line in exports)
        rid = next(line for line in text.splitlines() if line.startswith("completed"))
        env = environment(None, **settings)
        result = await ssemble("download", rid.split()[-1], "-o", str(tmp_path), "--json", env=env)
        assert result.code == 0, result.err
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await process.wait() == 0


async def test_live_display_on_a_real_terminal(tmp_path: Path) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=2_000_000) as fake:
        rid = fake.add_job(
            FakeJob(steps=(), clips=tuple(FakeClip(size=1_500_000) for _ in range(3)))
        )
        env = environment(fake, TERM="xterm-256color", COLUMNS="120", LINES="40")
        code, drawn = await anyio.to_thread.run_sync(
            run_in_pty, ["download", rid, "-o", str(tmp_path)], env
        )
    assert code == 0, drawn
    assert ESC in drawn  # a live display, drawn with escape codes
    assert "all clips" in drawn
    assert "The Most Viral Moment" in drawn  # a bar per active clip
    assert "downloaded 3" in drawn


async def test_ctrl_c_keeps_finished_clips_and_resumes(tmp_path: Path) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=1_000_000) as fake:
        rid = fake.add_job(
            FakeJob(
                steps=(),
                clips=(FakeClip(size=100_000), FakeClip(size=3_000_000), FakeClip(size=3_000_000)),
            )
        )
        command = [sys.executable, "-m", "ssemble_async", "download", rid, "-o", str(tmp_path)]
        async with await anyio.open_process(command, env=environment(fake)) as process:
            await anyio.sleep(1.5)
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await process.wait()
            assert process.stderr is not None
            err = (await process.stderr.receive()).decode()
        assert code == 130
        assert "resume" in err
        for path in tmp_path.rglob("*.mp4"):
            assert path.read_bytes() == fake.clip_bytes(rid, path.stem)
        assert list(tmp_path.rglob("*.part"))
        fake.clip_bytes_per_second = None
        again = await ssemble("download", rid, "-o", str(tmp_path), "--json", fake=fake)
    assert again.code == 0, again.err
    report = again.json()
    assert isinstance(report, dict)
    assert report["ok"]
    assert report["transferred"] < 100_000 + 2 * 3_000_000


async def test_download_into_a_folder_another_run_writes_waits_and_says_so(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(), FakeClip())))
    (tmp_path / rid).mkdir()
    other_run = FolderLock(tmp_path / rid)
    assert other_run.try_acquire()
    command = [sys.executable, "-m", "ssemble_async", "download", rid, "-o", str(tmp_path)]
    async with await anyio.open_process(command, env=environment(fake_ssemble)) as process:
        assert process.stderr is not None
        with anyio.fail_after(20):
            said = b""
            async for chunk in process.stderr:
                said += chunk
                if b"waiting for it to finish" in said:
                    break
        assert f"another download is writing into {tmp_path / rid}".encode() in said
        assert not fake_ssemble.clip_requests  # nothing fetched while the folder is busy
        other_run.release()
        with anyio.fail_after(20):
            assert await process.wait() == 0
    assert len([r for r in fake_ssemble.clip_requests if r.method == "GET"]) == 2
