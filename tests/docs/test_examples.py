"""Every example of README.md, docs/ and examples/ runs against the fake API: the docs cannot
drift from the code.

Each fenced block of a page is run in order, unless an HTML comment on the line before its
fence (blank lines between allowed) says otherwise:

- ``<!-- not-run: why -->``: not run; the reason is required (a fragment that cannot stand
  alone, a real API key, a package that is not a dependency, a server that runs until
  Ctrl-C...).
- ``<!-- run-as: NAME.py -->`` (python): written to NAME.py in the page's project folder (a
  second block for the same NAME is appended to it); when the page has ``test_*.py`` files,
  pytest runs on that folder after the page's last block, and must pass.
- ``<!-- exit-code: N -->`` (console): every command of the block exits N (default 0).

Without a marker:

- a ``python`` block that calls ``asyncio.run(...)`` is a program: it runs in a thread of its
  own, with ``__name__ == "__main__"``;
- any other ``python`` block is a fragment: it runs with top-level ``await`` in the page's
  event loop and one namespace per page, that starts with ``client`` (a ``Client`` of the
  fake), ``fake`` and ``fake_ssemble`` (the fake), ``request_id`` and ``request_ids``
  (completed requests: ``665a1b2c3d4e5f6a7b8c9d0e`` and ``665a1b2c3d4e5f6a7b8c9d0f``) and
  ``source_url``;
- a ``console`` (or ``bash``, ``shell``, ``sh``) block is a terminal session: each line that
  starts with ``$ `` is a command, run by bash in the page's folder, with ``ssemble`` on the
  PATH and the fake's ``SSEMBLE_BASE_URL`` and ``SSEMBLE_API_KEY``; the lines after a command
  are its output, and each must be among the lines it printed (stdout and stderr), once
  request ids, clip ids, keys, ports, times and speeds are made neutral (and the test's home
  folder is shown as ``~``); a line ``...`` stands for lines left out. ``$ ssemble fake-server``
  starts in the background, as in a second terminal, and the page's next console block (the
  second terminal) uses the URL and key it prints, as its reader pastes them.

Python blocks run under ``instant_waits()``; commands do not (they are other processes).
Blocks in other languages (``text``, ``json``...) are not code. A fence without a language
fails the test: every block says what it is.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from anyio.abc import Process

from ssemble_async import Client, instant_waits
from ssemble_async.testing import FakeJob, FakeSsembleAPI

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
EXAMPLES_DIR = ROOT / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
REQUEST_IDS = ["665a1b2c3d4e5f6a7b8c9d0e", "665a1b2c3d4e5f6a7b8c9d0f"]
SHELLS = frozenset({"console", "bash", "shell", "sh"})
COLUMNS = "88"  # the width the pages' terminal output was taken at
TIMEOUT = 120  # seconds any one block may take

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<key>not-run|run-as|exit-code):\s*(?P<value>.*?)\s*-->\s*$")
NEUTRAL = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<clip>"),
    (re.compile(r"\b[0-9a-fA-F]{24}\b"), "<request>"),
    (re.compile(r"sk_ssemble_(…)?\w+"), "<key>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d(:\d\d)? UTC\b"), "<time> UTC"),
    (re.compile(r"\b\d+(\.\d+)? [KMG]?i?B/s\b"), "<rate>"),
    (re.compile(r"\b\d+:\d\d(:\d\d)?\b"), "<duration>"),
    (re.compile(r"\bin \d+(\.\d+)? (s|min)\b"), "in <duration>"),
    (re.compile(r"[─━│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼╇╈╋┳┻]+"), "|"),
    (re.compile(r"\s+"), " "),
]


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: tuple[str, str] | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        found = MARKER.match(lines[before]) if before >= 0 else None
        marker = (found["key"], found["value"]) if found else None
        yield Block(page, index + 1, opening["lang"], "\n".join(body) + "\n", marker)
        index = end + 1


def neutral(text: str) -> str:
    for pattern, replacement in NEUTRAL:
        text = pattern.sub(replacement, text)
    return text.strip()


@dataclass
class Command:
    line: str
    output: list[str]


def terminal_session(code: str) -> list[Command]:
    """The commands of a console block (``$ ...``, ``\\`` continues), each with its output."""
    commands: list[Command] = []
    lines = code.splitlines()
    index = 0
    while index < len(lines):
        text = lines[index]
        index += 1
        if text.startswith("$ "):
            command = text[2:]
            while command.endswith("\\") and index < len(lines):
                command = command[:-1] + " " + lines[index].strip()
                index += 1
            commands.append(Command(command, []))
        elif commands:
            commands[-1].output.append(text)
        elif text.strip():
            raise AssertionError(f"output before any '$ ' command: {text!r}")
    return commands


@dataclass
class PageRun:
    """What the blocks of one page share: the fake, a folder, a namespace, the environment."""

    fake: FakeSsembleAPI
    folder: Path
    env: dict[str, str]
    namespace: dict[str, Any] = field(default_factory=dict)
    servers: list[Process] = field(default_factory=list)
    pasted: dict[str, str] = field(default_factory=dict)  # the exports of a fake-server
    clients: dict[int, Client] = field(default_factory=dict)  # made by fragments, to close

    @property
    def home(self) -> Path:
        return self.folder.parent

    @property
    def project(self) -> Path:
        return self.folder / "project"

    async def run(self, block: Block) -> None:
        if block.marker is not None and block.marker[0] == "not-run":
            assert block.marker[1], f"{block.where}: not-run needs a reason"
            return
        if block.lang == "python":
            await self.python(block)
        elif block.lang in SHELLS:
            code = int(block.marker[1]) if block.marker and block.marker[0] == "exit-code" else 0
            env, self.pasted = {**self.env, **self.pasted}, {}
            for command in terminal_session(block.code):
                await self.command(block, command, code, env)
        else:
            assert block.lang, (
                f"{block.where}: a fence without a language (python, console, text...)"
            )

    async def python(self, block: Block) -> None:
        if block.marker is not None and block.marker[0] == "run-as":
            await self.project_file(block, block.marker[1])
            return
        # blank lines first, so that a traceback gives the line in the page
        source = "\n" * block.line + block.code
        with instant_waits():
            if "asyncio.run(" in block.code:
                program = compile(source, str(block.page), "exec")
                namespace = {"__name__": "__main__"}
                with anyio.fail_after(TIMEOUT):
                    await anyio.to_thread.run_sync(exec, program, namespace, abandon_on_cancel=True)
            else:
                fragment = compile(
                    source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
                )
                with anyio.fail_after(TIMEOUT):
                    result = eval(fragment, self.namespace)
                    if inspect.iscoroutine(result):
                        await result
                self.clients.update(
                    (id(value), value)
                    for value in self.namespace.values()
                    if isinstance(value, Client)
                )

    async def project_file(self, block: Block, name: str) -> None:
        self.project.mkdir(exist_ok=True)
        with (self.project / name).open("a", encoding="utf-8") as file:
            file.write(block.code + "\n")

    async def run_project_tests(self) -> None:
        """pytest on the page's test files (with its conftest.py), once all are written."""
        if not list(self.project.glob("test_*.py")):
            return
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                cwd=self.project,
                env=self.env,
                check=False,
                stderr=subprocess.STDOUT,
            )
        assert done.returncode == 0, f"pytest on the page's tests failed:\n{done.stdout.decode()}"

    async def command(
        self, block: Block, command: Command, expected_code: int, env: dict[str, str]
    ) -> None:
        if command.line.split("#")[0].split()[:2] == ["ssemble", "fake-server"]:
            printed = await self.start_fake_server(command.line)
        else:
            with anyio.fail_after(TIMEOUT):
                done = await anyio.run_process(
                    ["bash", "-c", command.line],
                    cwd=self.folder,
                    env=env,
                    check=False,
                    stderr=subprocess.STDOUT,
                )
            printed = done.stdout.decode().replace(str(self.home), "~")
            assert done.returncode == expected_code, (
                f"{block.where}: $ {command.line}\nexit {done.returncode},"
                f" not {expected_code}:\n{printed}"
            )
        seen = {neutral(line) for line in printed.splitlines()}
        missing = [
            line
            for line in command.output
            if neutral(line) not in ("", "...") and neutral(line) not in seen
        ]
        assert not missing, (
            f"{block.where}: $ {command.line}\nthe page shows lines it did not print:\n"
            + "\n".join(missing)
            + f"\n--- it printed:\n{printed}"
        )

    async def start_fake_server(self, command: str) -> str:
        """Start ``ssemble fake-server`` in the background; use the settings it prints."""
        process = await anyio.open_process(
            ["bash", "-c", f"exec {command}"],
            cwd=self.folder,
            env=self.env,
            stderr=subprocess.STDOUT,
        )
        self.servers.append(process)
        assert process.stdout is not None
        printed = b""
        with anyio.fail_after(TIMEOUT):
            while b"Ctrl-C stops it." not in printed:
                printed += await process.stdout.receive()
        text = printed.decode()
        for name, value in re.findall(r"^export (SSEMBLE_\w+)=(\S+)$", text, re.MULTILINE):
            self.pasted[name] = value
        return text

    async def close(self) -> None:
        for process in self.servers:
            process.send_signal(signal.SIGINT)
            with anyio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
        for client in self.clients.values():
            await client.close()


@asynccontextmanager
async def page_run(tmp_path: Path) -> AsyncIterator[PageRun]:
    async with FakeSsembleAPI() as fake:
        for request_id in REQUEST_IDS:
            fake.add_job(FakeJob(request_id=request_id, steps=()))
        folder = tmp_path / "work"
        folder.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
        env.update(
            SSEMBLE_BASE_URL=fake.base_url,
            SSEMBLE_API_KEY=fake.api_key,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(tmp_path),  # printed as ~
            XDG_CACHE_HOME=str(tmp_path / ".cache"),
            XDG_CONFIG_HOME=str(tmp_path / ".config"),
            COLUMNS=COLUMNS,
            TERM="dumb",
            PYTHONUNBUFFERED="1",
        )
        run = PageRun(fake, folder, env)
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            run.namespace.update(
                __name__="docs_example",
                client=client,
                fake=fake,
                fake_ssemble=fake,
                request_id=REQUEST_IDS[0],
                request_ids=list(REQUEST_IDS),
                source_url="https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            )
            try:
                yield run
            finally:
                await run.close()


@pytest.mark.anyio
@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
async def test_the_examples_of_a_page_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # programs write clips/ and the like here
    for name in ("SSEMBLE_BASE_URL", "SSEMBLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    async with page_run(tmp_path) as run:
        monkeypatch.setenv("SSEMBLE_BASE_URL", run.fake.base_url)
        monkeypatch.setenv("SSEMBLE_API_KEY", run.fake.api_key)
        monkeypatch.chdir(run.folder)
        for block in fenced_blocks(page):
            await run.run(block)
        await run.run_project_tests()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_an_example_script_runs(example: Path, tmp_path: Path) -> None:
    text = example.read_text(encoding="utf-8")
    skipped = re.search(r"^# not-run: (.+)$", text, re.MULTILINE)
    if skipped:
        pytest.skip(skipped[1])
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def finished(folder: Path) -> bool:
    """A download into this request folder has ended: its journal is compacted away."""
    return (folder / "manifest.json").exists() and not (folder / "manifest.journal").exists()


@pytest.mark.anyio
async def test_the_aiohttp_webhook_example_downloads_a_finished_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/webhooks_aiohttp.py, served on a free port: the fake's delivery of a finished
    job puts its clips on disk."""
    spec = importlib.util.spec_from_file_location(
        "webhooks_aiohttp", EXAMPLES_DIR / "webhooks_aiohttp.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    async with FakeSsembleAPI() as fake:
        monkeypatch.setenv("SSEMBLE_BASE_URL", fake.base_url)
        monkeypatch.setenv("SSEMBLE_API_KEY", fake.api_key)
        runner = web.AppRunner(await example.make_app())
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            url = f"http://127.0.0.1:{port}/hooks/ssemble/webhook/{example.TOKEN}"
            request_id = fake.add_job(FakeJob(seconds_per_step=0.05, webhook_url=url))
            folder = tmp_path / "clips" / request_id
            with anyio.fail_after(TIMEOUT):
                # the clips on disk are what the example promises: look until they are
                while not finished(folder):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        finally:
            await runner.cleanup()
    assert sorted(path.read_bytes() for path in folder.glob("*.mp4")) == sorted(
        fake.clip_bytes(request_id, clip_id) for clip_id in fake.jobs[request_id].clips
    )
