"""The on-disk state of a request folder, the MP4 box check and the fetch loop's decisions."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import RequestState, ShortsRequest
from ssemble_async._fetch import made_progress, resume_state
from ssemble_async._manifest import (
    JOURNAL,
    MANIFEST,
    FolderLock,
    Manifest,
    ManifestEntry,
    Partial,
    RequestStore,
    decode_manifest,
    encode_manifest,
    journal_line,
    load_manifest,
    replay,
)
from ssemble_async._mp4 import Mp4Layout, mp4_layout
from ssemble_async.testing import make_mp4

texts = st.text(max_size=20)
maybe_int = st.none() | st.integers(min_value=0, max_value=2**63 - 1)
partials = st.none() | st.builds(Partial, validator=st.none() | texts, total=maybe_int)
entries = st.builds(
    ManifestEntry,
    file=st.none() | texts,
    state=st.none() | st.sampled_from(["downloaded", "failed", "not_ready"]),
    complete=st.booleans(),
    size=maybe_int,
    mtime_ns=maybe_int,
    etag=st.none() | texts,
    last_modified=st.none() | texts,
    title=st.none() | texts,
    viral_score=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    message=st.none() | texts,
    partial=partials,
)
manifests = st.builds(
    Manifest,
    request_id=st.none() | texts,
    title=st.none() | texts,
    source_url=st.none() | texts,
    status=st.none() | texts,
    written_at=st.none() | texts,
    clips=st.dictionaries(texts, entries, max_size=5),
)


@given(manifests)
def test_a_manifest_round_trips(manifest: Manifest) -> None:
    assert decode_manifest(encode_manifest(manifest)) == manifest


@given(manifests, st.lists(st.tuples(texts, entries), max_size=8), st.binary(max_size=30))
def test_replay_applies_the_last_entry_per_clip_and_skips_a_torn_tail(
    manifest: Manifest, events: list[tuple[str, ManifestEntry]], torn: bytes
) -> None:
    lines = [journal_line(clip_id, entry) for clip_id, entry in events]
    tail = lines[-1][: len(lines[-1]) // 2] if lines else torn  # a line cut by a kill
    result = replay(manifest, [*lines, tail])
    expected = dict(manifest.clips)
    for clip_id, entry in events:
        expected[clip_id] = entry
    assert result.clips == expected


def test_a_manifest_entry_of_the_wrong_shape_is_dropped_alone() -> None:
    good = ManifestEntry(file="a.mp4", complete=True, size=3, mtime_ns=4)
    raw = json.loads(encode_manifest(Manifest(request_id="r", clips={"a": good})))
    raw["clips"].update(b={"complete": "perhaps"}, c=7)
    decoded = decode_manifest(json.dumps(raw).encode())
    assert decoded is not None
    assert decoded.request_id == "r"
    assert decoded.clips == {"a": good}
    assert decode_manifest(b"{not json") is None
    assert decode_manifest(b"[1, 2]") is None


def test_matches_file_needs_complete_size_and_mtime() -> None:
    entry = ManifestEntry(complete=True, size=10, mtime_ns=5)
    assert entry.matches_file(10, 5)
    assert not entry.matches_file(11, 5)
    assert not entry.matches_file(10, 6)
    assert not ManifestEntry(complete=False, size=10, mtime_ns=5).matches_file(10, 5)


def test_load_manifest_replays_the_journal_over_the_snapshot(tmp_path: Path) -> None:
    old = ManifestEntry(file="a.mp4", state="failed")
    new = ManifestEntry(file="a.mp4", complete=True, size=1, mtime_ns=2)
    (tmp_path / MANIFEST).write_bytes(encode_manifest(Manifest(request_id="r", clips={"a": old})))
    (tmp_path / JOURNAL).write_bytes(journal_line("a", new) + journal_line("b", old)[:9])
    state = load_manifest(tmp_path)
    assert state.request_id == "r"
    assert state.clips == {"a": new}
    assert load_manifest(tmp_path / "missing") == Manifest()


def test_two_folder_locks_exclude_each_other_in_one_process(tmp_path: Path) -> None:
    first, second = FolderLock(tmp_path), FolderLock(tmp_path)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_a_lock_held_by_a_killed_process_is_free(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from ssemble_async._manifest import FolderLock
        lock = FolderLock(Path({str(tmp_path)!r}))
        assert lock.try_acquire()
        print("held", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"held\n"
            assert not FolderLock(tmp_path).try_acquire()
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    lock = FolderLock(tmp_path)
    assert lock.try_acquire()  # the kernel let go with the process: no stale lock
    lock.release()


# -- the MP4 box check -----------------------------------------------------------------------


def layout_of(data: bytes) -> Mp4Layout:
    return mp4_layout(lambda offset, count: data[offset : offset + count], len(data))


@given(st.integers(min_value=40, max_value=5000), st.data())
def test_a_whole_clip_is_complete_and_any_cut_is_short(size: int, data: st.DataObject) -> None:
    clip = make_mp4(size, "layout") + struct.pack(">I4s", 8, b"moov")
    assert layout_of(clip) is Mp4Layout.COMPLETE
    cut = data.draw(st.integers(min_value=1, max_value=len(clip) - 1))
    assert layout_of(clip[:cut]) is Mp4Layout.SHORT


def test_layout_edge_cases() -> None:
    moov = struct.pack(">I4s", 8, b"moov")
    clip = make_mp4(100, "edge") + moov
    assert layout_of(clip) is Mp4Layout.COMPLETE
    assert layout_of(clip[:-8]) is Mp4Layout.SHORT  # media, no index: a cut before moov
    assert layout_of(clip + b"x") is Mp4Layout.SHORT  # a trailing byte opens a box it lacks
    large = struct.pack(">I4sQ", 1, b"mdat", 24) + b"\0" * 8 + moov
    assert layout_of(large) is Mp4Layout.COMPLETE  # a 64-bit size
    assert layout_of(clip[:32]) is Mp4Layout.SHORT  # a cut between boxes, before the media
    assert layout_of(large[:12]) is Mp4Layout.SHORT
    assert layout_of(struct.pack(">I4s", 0, b"mdat") + b"x" * 10) is Mp4Layout.UNKNOWN
    assert layout_of(struct.pack(">I4s", 4, b"mdat") + b"x" * 10) is Mp4Layout.UNKNOWN
    assert layout_of(struct.pack(">I4s", 16, b"\0\0\0\0") + b"x" * 8) is Mp4Layout.UNKNOWN
    assert layout_of(struct.pack(">I4sQ", 1, b"mdat", 8)) is Mp4Layout.UNKNOWN
    many = struct.pack(">I4s", 8, b"free") * 5000
    assert layout_of(many) is Mp4Layout.UNKNOWN  # bounded walk


# -- the fetch loop's decisions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("partial", "size", "overwrite", "offset"),
    [
        (Partial(validator='"e"', total=100), 40, False, 40),
        (Partial(validator='"e"', total=None), 40, False, 40),
        (Partial(validator='"e"', total=100), 100, False, 100),  # complete: a 416 confirms
        (Partial(validator='"e"', total=100), 101, False, 0),  # larger than the file
        (Partial(validator=None, total=100), 40, False, 0),  # nothing to ask If-Range with
        (Partial(validator='"e"', total=100), 40, True, 0),
        (Partial(validator='"e"', total=100), None, False, 0),  # no .part
        (Partial(validator='"e"', total=100), 0, False, 0),
        (None, 40, False, 0),
    ],
)
def test_resume_state(
    partial: Partial | None, size: int | None, overwrite: bool, offset: int
) -> None:
    entry = ManifestEntry(file="a.mp4", partial=partial)
    state = resume_state(entry, "a.mp4", size, overwrite=overwrite)
    assert state.offset == offset
    assert (state.validator is None) is (offset == 0)
    # a .part recorded under another name (names can change between runs) is not this one
    assert resume_state(entry, "b.mp4", size, overwrite=overwrite).offset == 0


def test_journal_lines_of_an_older_generation_are_not_replayed(tmp_path: Path) -> None:
    old = ManifestEntry(file="a.mp4", partial=Partial(validator='"v1"', total=9))
    new = ManifestEntry(file="a.mp4", partial=Partial(validator='"v2"', total=9))
    # killed after the compaction to generation 1, before the journal of generation 0 went
    (tmp_path / MANIFEST).write_bytes(encode_manifest(Manifest(generation=1, clips={"a": new})))
    (tmp_path / JOURNAL).write_bytes(journal_line("a", old, 0))
    assert load_manifest(tmp_path).clips == {"a": new}
    (tmp_path / JOURNAL).write_bytes(journal_line("a", old, 0) + journal_line("b", old, 1))
    assert load_manifest(tmp_path).clips == {"a": new, "b": old}


@pytest.mark.anyio
async def test_a_torn_journal_line_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    request = ShortsRequest(request_id="a" * 24, status=RequestState.COMPLETED, status_raw="x")
    entry = ManifestEntry(file="c.mp4", complete=True, size=1, mtime_ns=1)
    (tmp_path / JOURNAL).write_bytes(journal_line("b", entry)[:15])  # a kill mid-write
    store = RequestStore(tmp_path, request)
    assert await store.try_open()
    await store.record("c", entry)
    assert load_manifest(tmp_path).clips == {"c": entry}
    await store.close()
    assert load_manifest(tmp_path).clips == {"c": entry}
    assert not (tmp_path / JOURNAL).exists()
    assert load_manifest(tmp_path).generation == 1


@given(st.integers(min_value=0), st.integers(min_value=0))
def test_progress_means_past_the_start(start: int, now: int) -> None:
    assert made_progress(start, now) is (now > start)
