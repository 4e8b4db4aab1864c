"""The on-disk state of one request folder: manifest, journal, sidecars and the folder lock.

A request folder holds, beside the clips:

```text
manifest.json       the last compacted state of every clip (replaced whole, atomically)
manifest.journal    one JSON line per clip event since then (appended; replayed on open)
<clip>.mp4.json     a sidecar per complete clip (replaced whole, atomically)
.ssemble.lock       the lock that makes one run at a time the folder's only writer
```

Records are typed attrs values structured by the package's one cattrs converter. Reading
is forgiving (an unreadable manifest, a torn last journal line or an entry of the wrong
shape only makes the clips concerned be checked afresh); nothing read from disk can make
a clip count as present unless its size and modification time still match.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import attrs
import filelock

from ssemble_async import _clock
from ssemble_async._converter import converter
from ssemble_async._models import Short, ShortsRequest

__all__ = [
    "JOURNAL",
    "LOCK_FILE",
    "MANIFEST",
    "FolderLock",
    "Manifest",
    "ManifestEntry",
    "Partial",
    "RequestStore",
    "Sidecar",
    "decode_manifest",
    "encode_manifest",
    "encode_sidecar",
    "journal_line",
    "load_manifest",
    "replay",
    "sentence_texts",
]

MANIFEST = "manifest.json"
JOURNAL = "manifest.journal"
LOCK_FILE = ".ssemble.lock"
#: A journal longer than this many lines per clip (plus a constant) is compacted mid-run.
_JOURNAL_LINES_PER_CLIP = 4
_JOURNAL_SLACK = 256
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_LOCK_POLL_FIRST = 0.05
_LOCK_POLL_MAX = 1.0
_T = TypeVar("_T")


@attrs.frozen(kw_only=True)
class Partial:
    """What makes a ``.part`` file resumable: the validator its bytes came with.

    Attributes:
        validator: the strong ETag (or Last-Modified) of the response the bytes came from.
        total: the full size of the file, when the host said it.
    """

    validator: str | None = None
    total: int | None = None


@attrs.frozen(kw_only=True)
class ManifestEntry:
    """What the manifest knows of one clip.

    Attributes:
        file: the clip's file name inside the request folder.
        state: the last outcome's state (``downloaded``, ``failed``...).
        complete: True when the file was verified and renamed into place.
        size: the complete file's size, as verified.
        mtime_ns: the complete file's modification time right after the rename.
        etag: the host's ETag for the complete file.
        last_modified: the host's Last-Modified for the complete file.
        title: the clip's title.
        viral_score: the clip's score.
        message: why it failed or was skipped.
        partial: set while a resumable ``.part`` exists.
    """

    file: str | None = None
    state: str | None = None
    complete: bool = False
    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    title: str | None = None
    viral_score: float | None = None
    message: str | None = None
    partial: Partial | None = None

    def matches_file(self, size: int, mtime_ns: int) -> bool:
        """True when this entry records a complete file that is still the same on disk.

        The validator is the size and modification time recorded right after the file was
        verified and renamed into place; a file touched since is downloaded again.
        """
        return self.complete and self.size == size and self.mtime_ns == mtime_ns


@attrs.frozen(kw_only=True)
class Manifest:
    """The state of one request folder.

    Attributes:
        request_id: the request.
        title: its title.
        source_url: the source video.
        status: the request's status when last read.
        written_at: when this state was written (ISO 8601, UTC).
        generation: how many times the journal was compacted into this file; journal lines
            of another generation (left by a run killed mid-compaction) are not replayed.
        clip_ids: every clip of the request, as last read (a re-run that finds each of them
            complete does not read the request again).
        clips: clip id -> its entry.
    """

    request_id: str | None = None
    title: str | None = None
    source_url: str | None = None
    status: str | None = None
    written_at: str | None = None
    generation: int = 0
    clip_ids: tuple[str, ...] = ()
    clips: dict[str, ManifestEntry] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Sidecar:
    """The metadata written beside each complete clip (``<clip>.mp4.json``)."""

    request_id: str
    clip_id: str
    title: str | None = None
    description: str | None = None
    reason: str | None = None
    viral_score: float | None = None
    start_timestamp: float | None = None
    end_timestamp: float | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    sentences: tuple[str, ...] = ()
    source_url: str | None = None
    source_title: str | None = None

    @classmethod
    def from_short(
        cls, request: ShortsRequest, short: Short, texts: Mapping[int, str] | None = None
    ) -> Sidecar:
        """The sidecar of ``short``, one of ``request``'s clips.

        ``texts`` (sentence index -> text) is `sentence_texts()` of ``request``, when the
        caller keeps it for all of the request's clips.
        """
        if texts is None:
            texts = sentence_texts(request)
        return cls(
            request_id=request.request_id,
            clip_id=short.id,
            title=short.title,
            description=short.description,
            reason=short.reason,
            viral_score=short.viral_score,
            start_timestamp=short.start_timestamp,
            end_timestamp=short.end_timestamp,
            duration=short.duration,
            width=short.width,
            height=short.height,
            sentences=tuple(texts[i] for i in short.sentence_indexes if i in texts),
            source_url=request.url or request.file_url,
            source_title=request.title,
        )


def sentence_texts(request: ShortsRequest) -> dict[int, str]:
    """The request's sentences by index (what a sidecar quotes)."""
    return {sentence.index: sentence.text for sentence in request.sentences}


def _encode(value: object) -> bytes:
    return _dump(converter.unstructure(value))


def _dump(raw: object) -> bytes:
    # no indent: that keeps json on its C encoder, several times faster
    return (json.dumps(raw, ensure_ascii=False) + "\n").encode()


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest as the bytes of ``manifest.json``."""
    return _encode(manifest)


def encode_sidecar(sidecar: Sidecar) -> bytes:
    """The sidecar as the bytes of ``<clip>.mp4.json``."""
    return _encode(sidecar)


def _structure_or_none(raw: object, cls: type[Any]) -> Any:
    try:
        return converter.structure(raw, cls)
    except Exception:  # any shape we cannot read: the entry is as good as absent
        return None


def decode_manifest(data: bytes) -> Manifest | None:
    """Parse ``manifest.json``; None when it is not a manifest.

    An entry of the wrong shape is dropped on its own (that clip is checked afresh); the
    rest of the manifest is kept.
    """
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    clips = raw.get("clips")
    entries: dict[str, ManifestEntry] = {}
    if isinstance(clips, dict):
        for clip_id, entry in clips.items():
            structured = _structure_or_none(entry, ManifestEntry)
            if isinstance(clip_id, str) and structured is not None:
                entries[clip_id] = structured
    header = _structure_or_none({k: v for k, v in raw.items() if k != "clips"}, Manifest)
    if not isinstance(header, Manifest):
        return Manifest(clips=entries)
    return attrs.evolve(header, clips=entries)


def journal_line(clip_id: str, entry: ManifestEntry, generation: int = 0) -> bytes:
    """One journal line: the whole new entry of one clip, for the manifest of ``generation``."""
    # the entry is unstructured once; the dict around it needs no converter
    return _dump({"clip": clip_id, "gen": generation, "entry": converter.unstructure(entry)})


def replay(manifest: Manifest, lines: Iterable[bytes]) -> Manifest:
    """``manifest`` with the journal ``lines`` applied in order (the last entry wins).

    A line that is not a complete journal record (the torn tail of a killed run, junk) is
    skipped, and so is a line of another generation than the manifest's (already in it).
    """
    clips = dict(manifest.clips)
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("clip"), str):
            continue
        if record.get("gen", 0) != manifest.generation:
            continue
        entry = _structure_or_none(record.get("entry"), ManifestEntry)
        if entry is not None:
            clips[record["clip"]] = entry
    return attrs.evolve(manifest, clips=clips)


def load_manifest(directory: Path) -> Manifest:
    """The state of a request folder: ``manifest.json`` with its journal replayed.

    Blocking (call it in a thread). A folder without either file has an empty manifest.
    """
    try:
        manifest = decode_manifest((directory / MANIFEST).read_bytes()) or Manifest()
    except FileNotFoundError:
        manifest = Manifest()
    except OSError:
        manifest = Manifest()  # unreadable: every file is checked afresh
    try:
        journal = (directory / JOURNAL).read_bytes()
    except OSError:
        return manifest
    return replay(manifest, journal.splitlines())


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _replace_file(path: Path, data: bytes, *, durable: bool) -> None:
    """Write ``path`` whole: a temporary file, (fsync,) then an atomic rename."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o666)
        try:
            _write_all(descriptor, data)
            if durable:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk leaves no half-written .tmp
        raise


def _write_sidecar(path: Path, data: bytes) -> OSError | None:
    """Write a clip's sidecar; return the error that kept it from being written, if any."""
    try:
        _replace_file(path, data, durable=False)
    except OSError as exc:
        return exc
    return None


def _open_journal(path: Path) -> int:
    """Open the journal for appending; end a torn last line first, so that the next line
    is not glued to it (and lost with it)."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _BINARY, 0o666)
    try:
        size = os.fstat(descriptor).st_size
        if size:
            os.lseek(descriptor, size - 1, os.SEEK_SET)
            if os.read(descriptor, 1) != b"\n":
                _write_all(descriptor, b"\n")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


class FolderLock:
    """The lock that makes one run at a time the writer of a request folder.

    An OS file lock (``flock`` on POSIX, ``msvcrt`` on Windows, through ``filelock``) on
    ``.ssemble.lock``: it is released when its holder releases it or dies, so a crashed
    run never leaves a stale lock. Two holders in one process exclude each other too.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._lock = filelock.FileLock(self.path, thread_local=False, is_singleton=False)

    def try_acquire(self) -> bool:
        """Take the lock if it is free (no waiting)."""
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    async def acquire(self, on_wait: Callable[[], None]) -> None:
        """Take the lock, calling ``on_wait`` once if another writer holds it first.

        Polls with a growing interval (real time, whatever
        [`instant_waits()`][ssemble_async.instant_waits] says: the other writer is a real process).
        Cancellable.
        """
        if self.try_acquire():
            return
        on_wait()
        interval = _LOCK_POLL_FIRST
        while not self.try_acquire():
            await anyio.sleep(interval)
            interval = min(interval * 2, _LOCK_POLL_MAX)

    @property
    def held(self) -> bool:
        """True while this lock is taken."""
        return self._lock.is_locked

    def release(self) -> None:
        """Let the next writer in."""
        self._lock.release()


class RequestStore:
    """The state of one request folder while a run writes it.

    Made by `open()` (which takes the folder's lock, then reads its state), changed by
    `record()` (one journal line, and a sidecar, per clip event) and `commit()` (a
    downloaded file recorded, renamed into place and given its sidecar, in the thread
    trip that flushed it), finished by `close()` (a compacted ``manifest.json``, the
    journal removed, the lock released).
    """

    def __init__(self, directory: Path, request: ShortsRequest) -> None:
        self.directory = directory
        self.request = request
        self.lock = FolderLock(directory)
        self.clips: dict[str, ManifestEntry] = {}
        self.generation = 0
        self._journal: int | None = None
        self._journal_lines = 0
        # Records are written from worker threads (a clip's is written in the trip that
        # flushed it): one writer of the journal at a time, and of `clips`.
        self._mutex = threading.Lock()
        self._texts: tuple[ShortsRequest, dict[int, str]] | None = None

    def entry(self, clip_id: str) -> ManifestEntry:
        """The clip's entry (an empty one when the manifest does not know it)."""
        return self.clips.get(clip_id) or ManifestEntry()

    def sidecar_of(self, short: Short) -> Sidecar:
        """The sidecar of one of the request's clips (the request's sentences are indexed
        once per read of the request, not once per clip)."""
        request = self.request
        if self._texts is None or self._texts[0] is not request:
            self._texts = (request, sentence_texts(request))
        return Sidecar.from_short(request, short, self._texts[1])

    async def open(self, on_wait: Callable[[], None]) -> None:
        """Create the folder, take its lock (calling ``on_wait`` if that means waiting),
        then read its state.

        Raises:
            OSError: the folder cannot be made or its lock file cannot be opened.
        """
        await anyio.to_thread.run_sync(self._make_folder)
        await self.lock.acquire(on_wait)
        await self._locked(anyio.to_thread.run_sync(self._load))

    async def try_open(self) -> bool:
        """Like `open()` when the lock is free; False (nothing read) when it is not.

        One thread trip: the folder, the lock (never waited for) and the state.
        """
        return await self._locked(anyio.to_thread.run_sync(self._try_open))

    async def _locked(self, opening: Awaitable[_T]) -> _T:
        """Await ``opening``; let the lock go again when it fails or is cancelled."""
        try:
            return await opening
        except BaseException:
            if self.lock.held:
                self.lock.release()
            raise

    def _try_open(self) -> bool:
        self._make_folder()
        if not self.lock.try_acquire():
            return False
        self._load()
        return True

    def _load(self) -> None:
        state = load_manifest(self.directory)
        self.clips = dict(state.clips)
        self.generation = state.generation

    def _make_folder(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    async def record(
        self, clip_id: str, entry: ManifestEntry, *, sidecar: tuple[Path, Sidecar] | None = None
    ) -> None:
        """Store a clip's new entry: one journal line (and the sidecar), in one thread trip.

        Shielded from cancellation: a record that was started is written whole.

        Raises:
            OSError: the entry (then nothing changed) or the sidecar (then the entry is
                stored) could not be written.
        """
        side = None if sidecar is None else (sidecar[0], encode_sidecar(sidecar[1]))
        write = functools.partial(self.write, clip_id, entry, sidecar=side)
        with anyio.CancelScope(shield=True):
            sidecar_error = await anyio.to_thread.run_sync(write)
        if sidecar_error is not None:
            raise sidecar_error

    def write(
        self, clip_id: str, entry: ManifestEntry, *, sidecar: tuple[Path, bytes] | None = None
    ) -> OSError | None:
        """`record()` in the calling thread (blocking), with the sidecar's path and bytes
        (`encode_sidecar()`); return the sidecar's error, if any.

        The entry first: it is what the next run trusts, and once it is written it must be
        kept even when the sidecar cannot be (a sidecar can be written again).

        Raises:
            OSError: the entry could not be written (then nothing changed).
        """
        with self._mutex:
            if self._journal_lines >= _JOURNAL_LINES_PER_CLIP * len(self.clips) + _JOURNAL_SLACK:
                clips = {**self.clips, clip_id: entry}
                self._compact(self._snapshot(clips))
                self.clips = clips
            else:
                self._append(journal_line(clip_id, entry, self.generation))
                self.clips[clip_id] = entry
        if sidecar is None:
            return None
        return _write_sidecar(*sidecar)

    def commit(
        self, clip_id: str, entry: ManifestEntry, part: Path, path: Path, sidecar: bytes
    ) -> tuple[int, OSError | None]:
        """Record a verified, flushed ``part`` complete, rename it to ``path``, write its
        ``sidecar`` (`encode_sidecar()`; blocking, one thread trip for all of it).

        ``entry`` is recorded complete, with the file's size and modification time, *before*
        the rename (which keeps both): a kill after the rename finds the file present; a
        kill before it, or a record that cannot be written (a full disk: then nothing is
        renamed), leaves the ``.part`` to the next run, which confirms it with one range
        request when ``entry.partial`` vouches for its bytes, else fetches it again. Once
        the file is in place its entry drops ``partial``.

        Returns the file's size, and the error that kept its sidecar (or the entry without
        ``partial``) from being written, if any.

        Raises:
            OSError: the file could not be recorded or renamed: it is not in place.
        """
        stat = os.stat(part)
        complete = attrs.evolve(entry, complete=True, size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        self.write(clip_id, complete)
        os.replace(part, path)
        side = (path.with_name(path.name + ".json"), sidecar)
        try:
            if complete.partial is None:
                return stat.st_size, _write_sidecar(*side)
            return stat.st_size, self.write(
                clip_id, attrs.evolve(complete, partial=None), sidecar=side
            )
        except OSError as exc:
            return stat.st_size, exc

    def _snapshot(self, clips: Mapping[str, ManifestEntry]) -> bytes:
        request = self.request
        return encode_manifest(
            Manifest(
                request_id=request.request_id,
                title=request.title,
                source_url=request.url or request.file_url,
                status=request.status_raw,
                written_at=_clock.utcnow().isoformat(),
                generation=self.generation + 1,
                clip_ids=tuple(dict.fromkeys(short.id for short in request.shorts)),
                clips=dict(clips),
            )
        )

    def _append(self, line: bytes) -> None:
        if self._journal is None:
            self._journal = _open_journal(self.directory / JOURNAL)
        try:
            _write_all(self._journal, line)  # one write: a kill leaves a torn line at most
        except OSError:
            os.close(self._journal)  # reopened (and its torn tail ended) next time
            self._journal = None
            raise
        self._journal_lines += 1

    def _compact(self, snapshot: bytes) -> None:
        """Replace the manifest with ``snapshot`` (durably), then drop the journal.

        The snapshot is of the next generation: a kill before the journal is gone leaves
        lines that the next load knows to skip.
        """
        _replace_file(self.directory / MANIFEST, snapshot, durable=True)
        self.generation += 1
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
        (self.directory / JOURNAL).unlink(missing_ok=True)
        self._journal_lines = 0

    async def close(self) -> None:
        """Compact the state into ``manifest.json`` and release the folder's lock.

        Shielded from cancellation. When the compaction fails (a full disk), the journal
        stays and the next run replays it.
        """
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._mutex:
            try:
                self._compact(self._snapshot(self.clips))
            except OSError:
                pass  # the journal keeps every event; the next run replays it
            finally:
                if self._journal is not None:
                    os.close(self._journal)
                    self._journal = None
                self.lock.release()
