"""The help a person reads: every ``create`` option explained, the values ``--layout`` and
``--preferred-length`` allow (from the API reference), the defaults of ``fake-server``, and
a bare ``ssemble`` showing the help. Real subprocesses."""

from __future__ import annotations

import inspect
import re

import pytest

from ssemble_async import Client
from ssemble_async.testing import FakeSsembleAPI

from ._support import assert_one_line_error, environment, ssemble

pytestmark = pytest.mark.anyio

#: From /shared/api/ssemble-api-v1.md, 2.1 (section 6 names no aliases for either).
LAYOUTS = ["auto", "fill", "fit", "square"]
LENGTHS = ["under30sec", "under60sec", "under90sec", "under3min", "under5min", "under10min"]
#: Wide enough that argparse never wraps a help text (one line per option).
WIDE = environment(None, COLUMNS="400")


def option_help(text: str, section: str) -> dict[str, str]:
    """Each option of a ``--help`` section with its help text ("" when it has none)."""
    helps: dict[str, str] = {}
    flags: list[str] = []
    body = text.split(f"\n{section}:\n", 1)[1].split("\n\n", 1)[0]
    for line in body.splitlines():
        found = re.match(r"  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if found is None:  # the help of a long option, on the lines below it
            assert flags, line
            for flag in flags:
                helps[flag] = f"{helps[flag]} {line.strip()}".strip()
            continue
        flags = [word.strip(",") for word in found[1].split() if word.startswith("-")]
        for flag in flags:
            helps[flag] = (found[2] or "").strip()
    return helps


async def test_every_option_of_create_says_what_it_does() -> None:
    result = await ssemble("create", "--help", env=WIDE)
    assert result.code == 0
    helps = option_help(result.out, "options")
    # a flag for every option of the library's create_short, and -h
    keywords = inspect.signature(Client.create_short).parameters
    flags = {"--" + name.replace("_", "-") for name in keywords if name != "self"}
    assert set(helps) == {*flags, "-h", "--help"}
    for flag, text in helps.items():
        assert text, f"{flag} has no help"
    assert "API default: auto" in helps["--layout"]
    assert "ssemble templates" in helps["--template-id"]


async def test_layout_and_preferred_length_list_the_values_the_api_allows() -> None:
    result = await ssemble("create", "--help", env=WIDE)
    helps = option_help(result.out, "options")
    for value in LAYOUTS:
        assert value in helps["--layout"]
    assert helps["--preferred-length"].startswith("clip length: " + ", ".join(LENGTHS))


@pytest.mark.parametrize(
    ("flag", "value"), [("--layout", "vertical"), ("--preferred-length", "60sec")]
)
async def test_a_value_the_api_does_not_allow_is_a_usage_error(
    fake_ssemble: FakeSsembleAPI, flag: str, value: str
) -> None:
    result = await ssemble(
        "create", "--url", "https://youtu.be/x", "--start", "0", "--end", "60", flag, value,
        fake=fake_ssemble,
    )  # fmt: skip
    assert result.code == 2
    assert_one_line_error(result, f"argument {flag}: invalid choice: '{value}'")
    assert "'square'" in result.err or "'under10min'" in result.err  # the choices are named
    assert fake_ssemble.api_requests == []


async def test_allowed_values_reach_the_api(fake_ssemble: FakeSsembleAPI) -> None:
    result = await ssemble(
        "create", "--url", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "--start", "0",
        "--end", "60", "--layout", "square", "--preferred-length", "under3min", "-q",
        fake=fake_ssemble,
    )  # fmt: skip
    assert result.code == 0, result.err
    body = fake_ssemble.api_requests[-1].json
    assert isinstance(body, dict)
    assert (body["layout"], body["preferredLength"]) == ("square", "under3min")


async def test_fake_server_help_shows_every_default() -> None:
    result = await ssemble("fake-server", "--help", env=WIDE)
    assert result.code == 0
    helps = option_help(result.out, "options")
    assert set(helps) == {"-h", "--help", "--port", "--clip-port", "--jobs", "--api-key"}
    for flag in ("--port", "--clip-port", "--jobs", "--api-key"):
        assert "(default: " in helps[flag], flag
    assert "(default: 2)" in helps["--jobs"]
    assert "random sk_ssemble_ key" in helps["--api-key"]
    # the options of commands that talk to the API are not offered to the fake
    assert "--base-url" not in result.out
    assert "--quota-url" not in result.out


async def test_a_bare_ssemble_prints_the_full_help_and_exits_0() -> None:
    bare = await ssemble(env=WIDE)
    helped = await ssemble("--help", env=WIDE)
    assert bare.code == 0
    assert bare.err == ""
    assert bare.out == helped.out
    for name in ("download", "create", "auth", "completion", "fake-server"):
        assert f"    {name} " in bare.out


async def test_auth_help_names_the_file_and_the_ways_to_give_the_key() -> None:
    result = await ssemble("auth", "login", "--help", env=WIDE)
    assert result.code == 0
    assert "$XDG_CONFIG_HOME/ssemble/credentials" in result.out
    assert "never from the command line" in result.out
    assert "--verify" in result.out
    missing = await ssemble("auth", env=WIDE)
    assert missing.code == 2
    assert_one_line_error(missing, "ssemble auth --help")
