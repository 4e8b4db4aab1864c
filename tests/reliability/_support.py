"""Helpers shared by the reliability tests: watching final names, snapshots, digests."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

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
