"""``ssemble auth``: the saved API key (a 0600 file in the user's config folder), where the
commands find a key (``--api-key``, then ``SSEMBLE_API_KEY``, then that file), and the key
never shown whole nor put in the command line. Real subprocesses, files and a real pty."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssemble_async._cli._auth import FoundKey, find_key, key_problem, mask
from ssemble_async._cli._parser import UsageError
from ssemble_async.testing import FakeSsembleAPI

from ._support import Result, assert_one_line_error, environment, ssemble

KEY = "sk_ssemble_" + "Zq8xW2vB7nR4tY6uK1pL3mJ9hG5fD0sA"  # 43 characters, like a real one
OTHER = "sk_ssemble_" + "other0other1other2other3other4ot"
BOUND = 60.0  # seconds any one process may take


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The HOME of the processes a test starts (XDG_CONFIG_HOME comes from conftest)."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def saved_file(config_home: Path) -> Path:
    return config_home / "ssemble" / "credentials"


def env_for(home: Path, fake: FakeSsembleAPI | None = None, **extra: str) -> dict[str, str]:
    """No SSEMBLE_API_KEY; the fake's base URL when given."""
    base = {} if fake is None else {"SSEMBLE_BASE_URL": fake.base_url}
    return environment(None, HOME=str(home), **base, **extra)


def run(*args: str, env: dict[str, str], stdin: bytes = b"", umask: int = -1) -> Result:
    """``ssemble`` in a subprocess, without an event loop (for tests that need no fake)."""
    done = subprocess.run(
        [sys.executable, "-m", "ssemble_async", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=BOUND,
        check=False,
        umask=umask,
    )
    return Result(done)


def assert_never_shown(*results: Result, key: str = KEY) -> None:
    for result in results:
        assert key not in result.out
        assert key not in result.err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- login ----------------------------------------------------------------------------------


def test_login_from_stdin_saves_the_key_in_a_file_only_its_owner_reads(
    home: Path, saved_file: Path
) -> None:
    # with no umask to help: the modes are the program's own
    result = run("auth", "login", env=env_for(home), stdin=f"{KEY}\n".encode(), umask=0)
    assert result.code == 0, result.err
    assert saved_file.read_text(encoding="utf-8") == KEY + "\n"
    assert mode(saved_file) == 0o600
    assert mode(saved_file.parent) == 0o700
    assert sorted(os.listdir(saved_file.parent)) == ["credentials"]  # no temporary file left
    assert f"sk_ssemble_…{KEY[-4:]}" in result.out
    assert str(saved_file) in result.out
    assert_never_shown(result)


def test_login_replaces_a_saved_key_and_tightens_the_folder(home: Path, saved_file: Path) -> None:
    saved_file.parent.mkdir(mode=0o755)
    saved_file.parent.chmod(0o755)
    assert run("auth", "login", env=env_for(home), stdin=OTHER.encode()).code == 0
    result = run("auth", "login", env=env_for(home), stdin=KEY.encode())
    assert result.code == 0, result.err
    assert saved_file.read_text(encoding="utf-8") == KEY + "\n"
    assert mode(saved_file.parent) == 0o700
    assert sorted(os.listdir(saved_file.parent)) == ["credentials"]


def test_login_without_xdg_config_home_saves_under_home(home: Path) -> None:
    env = env_for(home)
    env.pop("XDG_CONFIG_HOME")
    result = run("auth", "login", env=env, stdin=KEY.encode())
    assert result.code == 0, result.err
    assert (home / ".config" / "ssemble" / "credentials").read_text(encoding="utf-8") == KEY + "\n"


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b"secret-but-no-key-4711\n", "keys start with sk_ssemble_"),
        (b"sk_ssemble_\n", "keys start with sk_ssemble_"),
        (f"{KEY} {KEY}\n".encode(), "spaces"),
        (f"{KEY}\n{KEY}\n".encode(), "spaces"),
        (b"sk_ssemble_" + b"x" * 400, "too long"),
        (b"sk_ssemble_\xff\xfe\n", "is not text"),
    ],
)
def test_login_refuses_what_is_no_key_without_repeating_it(
    home: Path, saved_file: Path, given: bytes, needle: str
) -> None:
    result = run("auth", "login", env=env_for(home), stdin=given)
    assert result.code == 2
    assert_one_line_error(result, needle)
    assert "nothing was saved" in result.err
    secret = given.decode(errors="ignore").strip()
    if secret and secret != "sk_ssemble_":
        assert_never_shown(result, key=secret)
    assert not saved_file.exists()


def test_login_never_takes_the_key_from_the_command_line(home: Path, saved_file: Path) -> None:
    result = run("auth", "login", "--api-key", KEY, env=env_for(home), stdin=KEY.encode())
    assert result.code == 2
    assert_one_line_error(result, "never from --api-key")
    assert_never_shown(result)
    assert not saved_file.exists()


def test_the_key_is_not_in_the_process_listing_while_login_waits(
    home: Path, saved_file: Path
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ssemble_async", "auth", "login"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(home),
    )
    try:
        proc = Path("/proc") / str(process.pid)
        deadline = time.monotonic() + BOUND
        command_line = b""
        while b"ssemble_async" not in command_line:  # until the exec shows the command
            assert time.monotonic() < deadline, "the process never showed its command line"
            command_line = (proc / "cmdline").read_bytes()
            time.sleep(0.01)
        assert command_line.split(b"\0")[-3:-1] == [b"auth", b"login"]
        assert process.poll() is None  # waiting for the key on stdin
        assert KEY.encode() not in command_line
        assert KEY.encode() not in (proc / "environ").read_bytes()
        out, err = process.communicate(f"{KEY}\n".encode(), timeout=BOUND)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=BOUND)
    assert process.returncode == 0, err
    assert KEY.encode() not in out + err
    assert saved_file.read_text(encoding="utf-8") == KEY + "\n"


def _read_until(fd: int, needle: bytes, seen: bytearray) -> None:
    """Read the pty into ``seen`` until ``needle`` shows, or it closes (bounded)."""
    deadline = time.monotonic() + BOUND
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other end closed (EIO)
            return
        if not chunk:
            return
        seen.extend(chunk)


def login_on_a_terminal(home: Path, typed: bytes, until: bytes) -> tuple[int, bytes]:
    """``ssemble auth login`` on a real pty: wait for its prompt, type, read until ``until``."""
    import pty

    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ssemble_async", "auth", "login"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env_for(home, TERM="xterm"),
            start_new_session=True,
        )
        os.close(slave)
        slave = -1
        seen = bytearray()
        _read_until(master, b"(typing is hidden): ", seen)
        os.write(master, typed)
        _read_until(master, until, seen)
        return process.wait(timeout=BOUND), bytes(seen)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def test_login_on_a_terminal_reads_the_key_at_a_hidden_prompt(home: Path, saved_file: Path) -> None:
    code, seen = login_on_a_terminal(home, f"{KEY}\n".encode(), b"readable by you alone")
    assert code == 0, seen
    assert KEY.encode() not in seen  # the terminal did not echo it, nor did the program
    assert saved_file.read_text(encoding="utf-8") == KEY + "\n"


def test_ctrl_d_at_the_prompt_saves_nothing(home: Path, saved_file: Path) -> None:
    code, seen = login_on_a_terminal(home, b"\x04", b"nothing was saved")
    assert code == 2
    assert b"ssemble: error: the key typed is empty; nothing was saved" in seen
    assert not saved_file.exists()


# -- where the commands find the key --------------------------------------------------------


@pytest.mark.anyio
async def test_the_key_comes_from_the_flag_then_the_environment_then_the_saved_file(
    fake_ssemble: FakeSsembleAPI, home: Path, saved_file: Path
) -> None:
    fake = fake_ssemble
    env = env_for(home, fake)
    login = await ssemble("auth", "login", env=env, stdin=fake.api_key.encode())
    assert login.code == 0, login.err
    assert fake.api_requests == []  # no --verify: no call

    def sent_key() -> str:
        return fake.api_requests[-1].headers["X-API-Key"]

    from_file = await ssemble("templates", "--json", env=env)
    assert from_file.code == 0, from_file.err
    assert sent_key() == fake.api_key

    wrong = {**env, "SSEMBLE_API_KEY": OTHER}
    from_env = await ssemble("templates", env=wrong)
    assert from_env.code == 1  # the environment came first, and the fake refuses that key
    assert sent_key() == OTHER
    assert "ssemble auth status" in from_env.err  # the hint says how to see which key

    from_flag = await ssemble("templates", "--api-key", fake.api_key, env=wrong)
    assert from_flag.code == 0, from_flag.err
    assert sent_key() == fake.api_key

    statuses = [
        await ssemble("auth", "status", env=env),
        await ssemble("auth", "status", env=wrong),
        await ssemble("auth", "status", "--api-key", fake.api_key, env=wrong),
    ]
    assert [s.code for s in statuses] == [0, 0, 0]
    assert f"from {saved_file} (saved by ssemble auth login)" in statuses[0].out
    assert "from SSEMBLE_API_KEY" in statuses[1].out
    assert f"the key saved in {saved_file} is not used: SSEMBLE_API_KEY" in statuses[1].err
    assert "from --api-key" in statuses[2].out
    assert f"sk_ssemble_…{fake.api_key[-4:]}" in statuses[0].out
    assert f"sk_ssemble_…{OTHER[-4:]}" in statuses[1].out
    assert_never_shown(login, from_file, from_env, from_flag, *statuses, key=fake.api_key)
    assert_never_shown(*statuses, key=OTHER)


@pytest.mark.anyio
async def test_status_as_json_and_quiet(home: Path, saved_file: Path) -> None:
    env = env_for(home)
    assert (await ssemble("auth", "login", env=env, stdin=KEY.encode())).code == 0
    as_json = await ssemble("auth", "status", "--json", env=env)
    assert as_json.code == 0
    assert as_json.json() == {
        "source": "file",
        "path": str(saved_file),
        "key": f"sk_ssemble_…{KEY[-4:]}",
        "problem": None,
        "unused_saved_key": None,
    }
    quiet = await ssemble("auth", "status", "-q", env={**env, "SSEMBLE_API_KEY": "not-a-key"})
    assert (quiet.code, quiet.out) == (0, "SSEMBLE_API_KEY\n")
    odd = await ssemble("auth", "status", env={**env, "SSEMBLE_API_KEY": "not-a-key"})
    assert "warning: this key does not look like an API key" in odd.err
    assert_never_shown(as_json, quiet, odd)


@pytest.mark.anyio
async def test_status_without_any_key_exits_1_and_says_how_to_give_one(home: Path) -> None:
    result = await ssemble("auth", "status", env=env_for(home))
    assert result.code == 1
    assert_one_line_error(result, "no API key: run ssemble auth login")
    assert result.out == ""


@pytest.mark.anyio
@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660])
async def test_a_saved_file_others_may_read_is_refused_like_ssh_does(
    fake_ssemble: FakeSsembleAPI, home: Path, saved_file: Path, loose: int
) -> None:
    env = env_for(home, fake_ssemble)
    assert (await ssemble("auth", "login", env=env, stdin=fake_ssemble.api_key.encode())).code == 0
    saved_file.chmod(loose)
    for args in (["templates"], ["auth", "status"]):
        result = await ssemble(*args, env=env)
        assert result.code == 2, args
        assert_one_line_error(result, f"run chmod 600 {saved_file}")
        assert f"mode {loose:03o}" in result.err
        assert_never_shown(result, key=fake_ssemble.api_key)
    assert fake_ssemble.api_requests == []  # refused before any call
    # an explicit key needs no file: the loose one is not read
    flagged = await ssemble("templates", "--api-key", fake_ssemble.api_key, env=env)
    assert flagged.code == 0, flagged.err


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "why"),
    [(b"hunter2-not-a-key\n", "keys start with sk_ssemble_"), (b"hunter2\xff\xfe", "not text")],
)
async def test_a_saved_file_that_holds_no_key_is_refused(
    home: Path, saved_file: Path, content: bytes, why: str
) -> None:
    saved_file.parent.mkdir(mode=0o700)
    saved_file.write_bytes(content)
    saved_file.chmod(0o600)
    result = await ssemble("auth", "status", env=env_for(home))
    assert result.code == 2, result.err
    assert_one_line_error(result, "holds no API key")
    assert why in result.err
    assert "run ssemble auth login again" in result.err
    assert "hunter2" not in result.err


@pytest.mark.anyio
async def test_a_saved_key_that_is_no_file_or_not_yours_is_refused(
    home: Path, saved_file: Path
) -> None:
    saved_file.mkdir(mode=0o700, parents=True)
    folder = await ssemble("auth", "status", env=env_for(home))
    assert folder.code == 2
    assert_one_line_error(folder, f"{saved_file} is not a file: remove it")
    if os.getuid() != 0:
        return  # only root can give a file away
    saved_file.rmdir()
    saved_file.write_text(KEY + "\n", encoding="utf-8")
    saved_file.chmod(0o600)
    os.chown(saved_file, 65534, -1)  # nobody's
    theirs = await ssemble("auth", "status", env=env_for(home))
    assert theirs.code == 2
    assert_one_line_error(theirs, "belongs to another user")
    assert_never_shown(theirs)


# -- login --verify and logout --------------------------------------------------------------


@pytest.mark.anyio
async def test_login_verify_asks_the_api_once_and_saves_only_a_key_it_accepts(
    fake_ssemble: FakeSsembleAPI, home: Path, saved_file: Path
) -> None:
    env = env_for(home, fake_ssemble)
    refused = await ssemble("auth", "login", "--verify", env=env, stdin=OTHER.encode())
    assert refused.code == 1
    assert_one_line_error(refused, "the key was not saved: ")
    assert "invalid_api_key" in refused.err
    assert not saved_file.exists()
    assert [(r.method, r.path) for r in fake_ssemble.api_requests] == [("GET", "/api/v1/templates")]

    accepted = await ssemble(
        "auth", "login", "--verify", env=env, stdin=fake_ssemble.api_key.encode()
    )
    assert accepted.code == 0, accepted.err
    assert "checked with the API" in accepted.out
    assert len(fake_ssemble.api_requests) == 2
    assert fake_ssemble.api_requests[-1].headers["X-API-Key"] == fake_ssemble.api_key
    assert saved_file.read_text(encoding="utf-8") == fake_ssemble.api_key + "\n"
    assert_never_shown(refused, key=OTHER)
    assert_never_shown(accepted, key=fake_ssemble.api_key)


@pytest.mark.anyio
async def test_logout_deletes_the_saved_key_and_the_commands_ask_for_one(
    home: Path, saved_file: Path
) -> None:
    env = env_for(home)
    assert (await ssemble("auth", "login", env=env, stdin=KEY.encode())).code == 0
    logout = await ssemble("auth", "logout", env=env)
    assert logout.code == 0
    assert f"removed the API key saved in {saved_file}" in logout.out
    assert not saved_file.exists()
    again = await ssemble("auth", "logout", "--json", env=env)
    assert (again.code, again.json()) == (0, {"removed": None})
    missing = await ssemble("templates", env=env)
    assert missing.code == 2
    assert_one_line_error(missing, "run ssemble auth login, pass --api-key or set SSEMBLE_API_KEY")


# -- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (KEY, f"sk_ssemble_…{KEY[-4:]}"),
        ("sk_ssemble_test", "sk_ssemble_…"),  # too short to show any of it
        ("0123456789abcdefXYZW", "…XYZW"),  # no prefix is made up
        ("short", "…"),
    ],
)
def test_mask_shows_the_prefix_and_the_last_four_of_a_long_key(key: str, shown: str) -> None:
    assert mask(key) == shown


def test_key_problem_accepts_the_shape_of_a_key_only() -> None:
    assert key_problem(KEY) is None
    assert key_problem("sk_ssemble_test") is None  # the fake server's keys
    for bad in (
        "",
        "sk_ssemble_",
        "sk_other_abc",
        f"{KEY}é",
        f"{KEY}\t",
        "sk_ssemble_" + "x" * 300,
    ):
        assert key_problem(bad) is not None, bad


def test_find_key_reads_the_saved_file_only_when_nothing_comes_first(tmp_path: Path) -> None:
    folder = tmp_path / "ssemble"
    folder.mkdir()
    (folder / "credentials").write_text("not a key at all\n", encoding="utf-8")
    (folder / "credentials").chmod(0o600)
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    # the broken file is never read while a flag or the environment gives a key
    assert find_key(KEY, {**environ, "SSEMBLE_API_KEY": OTHER}) == FoundKey(KEY, "--api-key")
    assert find_key(" ", {**environ, "SSEMBLE_API_KEY": OTHER}) == FoundKey(
        OTHER, "SSEMBLE_API_KEY"
    )
    with pytest.raises(UsageError, match="holds no API key"):
        find_key(None, {**environ, "SSEMBLE_API_KEY": "  "})
    assert find_key(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")}) is None
    (folder / "credentials").write_text(f"{KEY}\n", encoding="utf-8")
    assert find_key(None, environ) == FoundKey(KEY, "file", folder / "credentials")
