"""``ssemble completion bash|zsh|fish``: scripts written from the parser, run in the real
shells. bash's function is called as bash calls it (``COMP_WORDS``/``COMP_CWORD`` set);
fish answers ``complete -C``; zsh runs the script with the completion system's builtins
replaced by ones that print what they are given (they only work inside a TAB widget).
A test of a shell skips only when that shell is not installed."""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ssemble_async._cli._completion import command_tree, completion_script
from ssemble_async._cli._parser import build_parser

BOUND = 60.0
HEAVY = {"aiohttp", "rich", "anyio", "cattrs", "attrs", "aiofiles"}

#: (words before and at the cursor, the candidates every shell offers)
CASES: list[tuple[list[str], list[str]]] = [
    (["dow"], ["download"]),
    (["download", "--con"], ["--concurrency"]),
    (["list", "--status", ""], ["cancelled", "completed", "failed", "processing", "queued"]),
    (["list", "--sort-order", ""], ["asc", "desc"]),
    (["auth", ""], ["login", "logout", "status"]),
    (["auth", "lo"], ["login", "logout"]),
    (["auth", "login", "--ver"], ["--verify"]),
    (["--api-key", "k", "cre"], ["create"]),  # the value of --api-key is no command
    (["create", "--layout", ""], ["auto", "fill", "fit", "square"]),
    (["create", "--preferred-length", "under1"], ["under10min"]),
    (["create", "--url", "x", "--lay"], ["--layout"]),
    (["completion", ""], ["bash", "fish", "zsh"]),
    (["download", "665a1b2c3d4e5f6a7b8c9d0e", "--wa"], ["--wait", "--wait-for-quota"]),
]


def needs(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed")
    return found


def script(shell: str, tmp_path: Path) -> Path:
    """The script as ``ssemble completion SHELL`` prints it, in a file."""
    done = subprocess.run(
        [sys.executable, "-m", "ssemble_async", "completion", shell],
        capture_output=True,
        timeout=BOUND,
        check=True,
    )
    assert done.stderr == b""
    path = tmp_path / f"ssemble.{shell}"
    path.write_bytes(done.stdout)
    return path


BASH_HARNESS = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
_ssemble
printf '%s\\n' "${COMPREPLY[@]}"
"""


def bash_complete(bash: str, path: Path, words: Sequence[str]) -> list[str]:
    done = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", BASH_HARNESS, "bash", str(path), "ssemble", *words],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert done.stderr == ""
    return sorted(line for line in done.stdout.splitlines() if line)


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    bash = needs("bash")
    return bash, script("bash", tmp_path_factory.mktemp("bash"))


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_bash_completes_commands_options_and_values(
    bash_script: tuple[str, Path], words: list[str], offered: list[str]
) -> None:
    assert bash_complete(*bash_script, words) == offered


def test_bash_completes_a_value_after_the_equals_sign(bash_script: tuple[str, Path]) -> None:
    # bash splits "--status=c" at "=" (COMP_WORDBREAKS); a shell that does not, keeps one word
    assert bash_complete(*bash_script, ["list", "--status", "=", "c"]) == [
        "cancelled",
        "completed",
    ]
    assert bash_complete(*bash_script, ["list", "--status", "="]) == [
        "cancelled",
        "completed",
        "failed",
        "processing",
        "queued",
    ]
    assert bash_complete(*bash_script, ["list", "--status=c"]) == [
        "--status=cancelled",
        "--status=completed",
    ]


def test_bash_completes_folders_for_an_output_folder(
    bash_script: tuple[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clip-list.txt").write_text("x", encoding="utf-8")
    prefix = str(tmp_path / "cli")
    assert bash_complete(*bash_script, ["download", "-o", prefix]) == [str(tmp_path / "clips")]
    assert bash_complete(*bash_script, ["download", "--input", prefix]) == [
        str(tmp_path / "clip-list.txt"),
        str(tmp_path / "clips"),
    ]


def test_bash_offers_every_option_of_every_command(bash_script: tuple[str, Path]) -> None:
    for command in command_tree(build_parser()):
        flags = sorted(flag for option in command.options for flag in option.flags)
        assert bash_complete(*bash_script, [*command.path, "-"]) == flags, command.path
        if command.words:
            words = sorted(word for word, _ in command.words)
            assert bash_complete(*bash_script, [*command.path, ""]) == words, command.path


def test_a_flag_added_to_the_parser_completes_with_no_other_edit(tmp_path: Path) -> None:
    bash = needs("bash")
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands.choices["list"].add_argument("--flavour", choices=("sweet", "sour"))
    path = tmp_path / "ssemble.bash"
    path.write_text(completion_script(parser, "bash"), encoding="utf-8")
    assert bash_complete(bash, path, ["list", "--fla"]) == ["--flavour"]
    assert bash_complete(bash, path, ["list", "--flavour", "s"]) == ["sour", "sweet"]


# -- fish -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fish_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    fish = needs("fish")
    return fish, script("fish", tmp_path_factory.mktemp("fish"))


def fish_complete(fish: str, path: Path, words: Sequence[str]) -> list[str]:
    line = " ".join(["ssemble", *(word or "" for word in words)])
    done = subprocess.run(
        [fish, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", str(path), line],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert done.stderr == ""
    return sorted(row.split("\t", 1)[0] for row in done.stdout.splitlines() if row)


def test_fish_script_is_valid(fish_script: tuple[str, Path]) -> None:
    fish, path = fish_script
    subprocess.run([fish, "--no-execute", str(path)], check=True, timeout=BOUND)


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_fish_completes_commands_options_and_values(
    fish_script: tuple[str, Path], words: list[str], offered: list[str]
) -> None:
    assert fish_complete(*fish_script, words) == offered


def test_fish_describes_commands_and_completes_values_after_equals(
    fish_script: tuple[str, Path],
) -> None:
    fish, path = fish_script
    line = "ssemble aut"
    done = subprocess.run(
        [fish, "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", str(path), line],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert done.stdout == "auth\tSave, show or remove the API key the commands use\n"
    assert fish_complete(fish, path, ["list", "--status=c"]) == [
        "--status=cancelled",
        "--status=completed",
    ]
    assert fish_complete(fish, path, ["download", ""]) == []  # ids: no file names offered


# -- zsh ------------------------------------------------------------------------------------

#: The completion system's builtins, as plain functions that print the candidates they get
#: (filtered by the word at the cursor, as zsh does).
ZSH_HARNESS = """
compdef() { print -r -- "compdef $*" >&2 }
compadd() { [[ $1 == -- ]] && shift; local w; for w in "$@"; do
    [[ $w == ${PREFIX}* ]] && print -r -- $w; done; return 0 }
_describe() { local -a got; got=("${(@P)4}"); local w; for w in "${got[@]%%:*}"; do
    [[ $w == ${PREFIX}* ]] && print -r -- $w; done; return 0 }
_files() { print -r -- "(files $*)" }
compset() { [[ $1 == -P ]] && PREFIX=${PREFIX#*=} }
source "$1"; shift
words=("$@"); CURRENT=$#; PREFIX=${words[CURRENT]}
_ssemble_complete
"""


@pytest.fixture(scope="module")
def zsh_script(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    zsh = needs("zsh")
    return zsh, script("zsh", tmp_path_factory.mktemp("zsh"))


def zsh_complete(zsh: str, path: Path, words: Sequence[str]) -> list[str]:
    done = subprocess.run(
        [zsh, "-f", "-c", ZSH_HARNESS, "zsh", str(path), "ssemble", *words],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert done.stderr == "compdef _ssemble_complete ssemble\n"  # registered when sourced
    return sorted(line for line in done.stdout.splitlines() if line)


def test_zsh_script_is_valid(zsh_script: tuple[str, Path]) -> None:
    zsh, path = zsh_script
    subprocess.run([zsh, "-n", str(path)], check=True, timeout=BOUND)
    assert path.read_text(encoding="utf-8").startswith("#compdef ssemble\n")


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_zsh_completes_commands_options_and_values(
    zsh_script: tuple[str, Path], words: list[str], offered: list[str]
) -> None:
    assert zsh_complete(*zsh_script, words) == offered


def test_zsh_completes_paths_and_values_after_equals(zsh_script: tuple[str, Path]) -> None:
    assert zsh_complete(*zsh_script, ["download", "-o", ""]) == ["(files -/)"]
    assert zsh_complete(*zsh_script, ["download", "-i", ""]) == ["(files )"]
    assert zsh_complete(*zsh_script, ["list", "--status=c"]) == ["cancelled", "completed"]


def _read_until(fd: int, needles: Sequence[bytes], seen: bytearray) -> None:
    """Read the terminal into ``seen`` until every needle shows after what it held (bounded)."""
    start = len(seen)
    deadline = time.monotonic() + BOUND
    while not all(needle in seen[start:] for needle in needles):
        left = deadline - time.monotonic()
        assert left > 0, f"no {needles} in {bytes(seen[start:])!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen.extend(os.read(fd, 65536))


def test_zsh_completes_on_a_real_terminal(zsh_script: tuple[str, Path], tmp_path: Path) -> None:
    """The whole of it once, as a person gets it: compinit, the eval'd script, a TAB."""
    zsh, path = zsh_script
    (tmp_path / ".zshrc").write_text(
        f"autoload -U compinit && compinit -u -d {tmp_path}/.zcompdump\n"
        f'eval "$(cat {path})"\n'
        "PS1='zsh-ready> '\n",
        encoding="utf-8",
    )
    master, slave = pty.openpty()
    shell = subprocess.Popen(
        [zsh, "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={"PATH": os.environ["PATH"], "ZDOTDIR": str(tmp_path), "TERM": "dumb"},
        start_new_session=True,
    )
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, [b"zsh-ready> "], seen)
        for line, shown in (
            (b"ssemble list --status ", [b"cancelled", b"completed", b"processing", b"queued"]),
            (b"ssemble auth ", [b"login", b"logout", b"status", b"-- Delete the saved API key"]),
            (b"ssemble list --status=c", [b"cancelled", b"completed"]),
            (b"ssemble dow", [b"ssemble download "]),  # one candidate: put in the line
        ):
            os.write(master, line + b"\t")
            _read_until(master, shown, seen)
            os.write(master, b"\x15")  # Ctrl-U: a clean line for the next one
    finally:
        shell.kill()
        shell.wait(timeout=BOUND)
        os.close(master)
    assert b"command not found" not in seen


# -- the command ----------------------------------------------------------------------------


def test_completion_loads_no_http_or_terminal_stack() -> None:
    code = (
        "import sys; from ssemble_async._cli import main; main(['completion', 'bash']);"
        " print(' '.join(sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND, check=True
    )
    assert "complete -F _ssemble ssemble" in done.stdout
    assert not set(done.stderr.split()) & HEAVY


def test_completion_wants_a_known_shell() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ssemble_async", "completion", "tcsh"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice: 'tcsh'" in done.stderr
    assert len(done.stderr.splitlines()) == 1
