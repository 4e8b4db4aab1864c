"""Helpers shared by the reliability tests: watching final names, snapshots, digests.

:func:`resumable_parts` and :func:`complete_clips` are the only places in the tests that
read the download's bookkeeping (today ``manifest.json`` in each request folder); every
other check looks at the files and at what the fake clip host served.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from ssemble_async._fetch import resume_state
from ssemble_async._manifest import load_manifest
from ssemble_async.testing import FakeSsembleAPI, RecordedRequest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clip_gets(fake: FakeSsembleAPI, clip_id: str | None = None) -> list[RecordedRequest]:
    """The GETs the clip host received (for one clip, when given), in order."""
    return [
        r
        for r in fake.clip_requests
        if r.method == "GET" and (clip_id is None or r.path.endswith(f"/{clip_id}.mp4"))
    ]


def api_reads(fake: FakeSsembleAPI, request_id: str) -> int:
    """How many ``GET /shorts/:id`` of ``request_id`` reached the API."""
    return sum(
        1
        for r in fake.api_requests
        if r.method == "GET" and r.path.endswith(f"/shorts/{request_id}")
    )


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int] | None]:
    """Every entry under ``root`` but the ``skip`` subtree: files with size and mtime."""
    entries: dict[str, tuple[int, int] | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [name for name in dirnames if here / name != skip]
        for name in dirnames:
            entries[str(here / name)] = None
        for name in filenames:
            path = here / name
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            entries[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return entries


class FinalNameWatch:
    """Watch ``dest`` from a thread while a download runs: any ``*.mp4`` seen under a
    final name must be byte-identical to the clip it is named after, at every moment.

    A thread, not a task: it looks at the files at moments the event loop does not choose,
    so a file written in place (instead of renamed into place) would be caught half-done.
    """

    def __init__(self, dest: Path, expected: Mapping[Path, bytes]) -> None:
        self.dest = dest
        self.expected = {path: sha(data) for path, data in expected.items()}
        self.sizes = {path: len(data) for path, data in expected.items()}
        self.problems: list[str] = []
        self.scans = 0
        self._seen: dict[Path, tuple[int, int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="final-name-watch", daemon=True)

    def __enter__(self) -> FinalNameWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(10)
        self.scan()  # and once more, on the final state

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(0.001)

    def scan(self) -> None:
        self.scans += 1
        try:
            found = [p for p in self.dest.rglob("*.mp4") if p.is_file()]
        except OSError:
            return
        for path in found:
            try:
                stat = path.stat()
                key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if self._seen.get(path) == key:
                    continue
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            self._seen[path] = key
            want = self.expected.get(path)
            if want is None:
                self.problems.append(f"{path}: a final name that belongs to no clip")
            elif sha(data) != want:
                self.problems.append(
                    f"{path}: {len(data)} bytes under its final name, not the"
                    f" {self.sizes[path]} bytes served"
                )


def resumable_parts(dest: Path) -> dict[Path, int]:
    """The ``.part`` files under ``dest`` that the next run must resume, with the offset
    it must resume from (their size).

    The one rule of the tests for "which ``.part`` is resumable": its request folder's
    state (``manifest.json`` with its journal replayed) recorded the validator its bytes
    came with, and the file is there, not empty and not larger than the recorded total. A
    ``.part`` without one (a clip no larger than the chunk size, or a transfer that had not
    started) is fetched again from zero.
    """
    found: dict[Path, int] = {}
    for request_dir in {p.parent for p in dest.rglob("*.part")}:
        state = load_manifest(request_dir)
        for entry in state.clips.values():
            if entry.file is None:
                continue
            part = request_dir / f"{entry.file}.part"
            try:
                size = part.stat().st_size
            except FileNotFoundError:
                continue
            offset = resume_state(entry, entry.file, size, overwrite=False).offset
            if offset:
                found[part] = offset
    return found


def complete_clips(request_dir: Path) -> set[str]:
    """The clip ids that a request folder's state marks complete."""
    return {
        clip_id for clip_id, entry in load_manifest(request_dir).clips.items() if entry.complete
    }


def bytes_sent(fake: FakeSsembleAPI) -> dict[tuple[str, str], int]:
    """A snapshot of the clip host's per-clip byte counter."""
    return dict(fake.clip_bytes_sent)


def sent_since(
    fake: FakeSsembleAPI, before: Mapping[tuple[str, str], int]
) -> dict[tuple[str, str], int]:
    """Body bytes the clip host sent per clip since the snapshot ``before``."""
    return {
        key: count - before.get(key, 0)
        for key, count in fake.clip_bytes_sent.items()
        if count != before.get(key, 0)
    }


def environment(fake: FakeSsembleAPI) -> dict[str, str]:
    """The environment of an ``ssemble`` subprocess that talks to ``fake``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    env.update(
        SSEMBLE_API_KEY=fake.api_key,
        SSEMBLE_BASE_URL=fake.base_url,
        PYTHONUNBUFFERED="1",
        TERM="dumb",
    )
    return env
