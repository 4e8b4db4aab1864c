"""The end of a download: a flushed ``.part`` recorded, renamed and given its sidecar, and the
batch writes and decisions that lead there."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import RequestState, Sentence, Short, ShortsRequest
from ssemble_async._fetch import may_resume, resume_state
from ssemble_async._manifest import (
    JOURNAL,
    ManifestEntry,
    Partial,
    RequestStore,
    encode_sidecar,
    load_manifest,
)
from ssemble_async._transfer import _PartFile
from ssemble_async.testing import make_mp4

REQUEST = ShortsRequest(request_id="a" * 24, status=RequestState.COMPLETED, status_raw="completed")


@given(
    file=st.sampled_from(["a.mp4", "b.mp4", None]),
    validator=st.sampled_from([None, "", '"v1"']),
    total=st.none() | st.integers(min_value=0, max_value=100),
    part_size=st.none() | st.integers(min_value=0, max_value=100),
    overwrite=st.booleans(),
)
def test_a_part_is_resumed_only_when_its_entry_may_resume_it(
    file: str | None,
    validator: str | None,
    total: int | None,
    part_size: int | None,
    overwrite: bool,
) -> None:
    # the pipeline asks for the .part's size only when may_resume() says it could matter
    entry = ManifestEntry(file=file, partial=Partial(validator=validator, total=total))
    state = resume_state(entry, "a.mp4", part_size, overwrite=overwrite)
    if not may_resume(entry, "a.mp4", overwrite=overwrite):
        assert (state.offset, state.validator) == (0, None)
    assert (
        resume_state(ManifestEntry(file="a.mp4"), "a.mp4", part_size, overwrite=False).offset == 0
    )


async def _opened(folder: Path) -> RequestStore:
    store = RequestStore(folder, REQUEST)
    assert await store.try_open()
    return store


@pytest.mark.anyio
async def test_a_file_is_recorded_complete_before_it_is_renamed_into_place(tmp_path: Path) -> None:
    store = await _opened(tmp_path)
    part, path = tmp_path / "c.mp4.part", tmp_path / "c.mp4"
    part.write_bytes(make_mp4(640, "c"))
    vouched = ManifestEntry(file="c.mp4", partial=Partial(validator='"v"', total=640))
    (tmp_path / JOURNAL).mkdir()  # the record cannot be written: nothing may be renamed
    with pytest.raises(IsADirectoryError):
        store.commit("c", vouched, part, path, b"{}\n")
    assert part.exists()
    assert not path.exists()
    assert store.entry("c") == ManifestEntry()
    (tmp_path / JOURNAL).rmdir()

    size, unsaved = store.commit("c", vouched, part, path, b'{"clip": "c"}\n')
    assert (size, unsaved) == (640, None)
    assert not part.exists()
    stat = path.stat()
    recorded = load_manifest(tmp_path).clips["c"]
    assert recorded.matches_file(stat.st_size, stat.st_mtime_ns)
    assert recorded.partial is None  # the file is in place: nothing left to resume
    assert store.entry("c") == recorded
    assert (tmp_path / "c.mp4.json").read_bytes() == b'{"clip": "c"}\n'
    await store.close()
    assert load_manifest(tmp_path).clips["c"] == recorded


@pytest.mark.anyio
async def test_a_sidecar_that_cannot_be_written_leaves_the_clip_in_place(tmp_path: Path) -> None:
    store = await _opened(tmp_path)
    part, path = tmp_path / "d.mp4.part", tmp_path / "d.mp4"
    part.write_bytes(make_mp4(64, "d"))
    (tmp_path / "d.mp4.json").mkdir()  # a folder in the sidecar's place
    (tmp_path / "d.mp4.json" / "keep").touch()
    size, unsaved = store.commit("d", ManifestEntry(file="d.mp4"), part, path, b"{}\n")
    assert size == 64
    assert isinstance(unsaved, OSError)
    stat = path.stat()
    assert load_manifest(tmp_path).clips["d"].matches_file(stat.st_size, stat.st_mtime_ns)
    assert not list(tmp_path.glob("*.tmp"))
    await store.close()


@pytest.mark.anyio
async def test_sidecars_quote_the_request_as_last_read(tmp_path: Path) -> None:
    short = Short(id="c" * 24, sentence_indexes=(0, 2))
    first = attrs.evolve(
        REQUEST,
        shorts=(short,),
        sentences=(Sentence(index=0, text="a"), Sentence(index=2, text="c")),
    )
    store = RequestStore(tmp_path, first)
    assert store.sidecar_of(short).sentences == ("a", "c")
    store.request = attrs.evolve(first, sentences=(Sentence(index=0, text="A"),))  # read again
    assert store.sidecar_of(short).sentences == ("A",)
    assert json.loads(encode_sidecar(store.sidecar_of(short)))["sentences"] == ["A"]


@pytest.mark.parametrize("offset", [0, 5])
def test_a_batch_of_more_buffers_than_one_system_call_takes_is_written_whole(
    tmp_path: Path, offset: int
) -> None:
    # IOV_MAX is 1024 on Linux and macOS: this batch needs several pwritev calls
    chunks = [bytes([i % 251]) * (i % 7) for i in range(3000)]
    part = tmp_path / "x.part"
    part.write_bytes(b"old bytes, longer than the offset")
    file = _PartFile(part, offset)
    file.write_at(offset, chunks)
    file.close()
    assert part.read_bytes() == b"old bytes, longer than the offset"[:offset] + b"".join(chunks)
