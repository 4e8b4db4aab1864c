"""make_mp4: box structure, exact sizes, and a payload in which no block repeats."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemble_async.testing import make_mp4

BLOCK = 4096


def top_level_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """(type, size) of each top-level box, walking the 32-bit size headers to the end."""
    boxes: list[tuple[bytes, int]] = []
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        assert size >= 8, f"box {kind!r} at {offset} claims {size} bytes"
        boxes.append((kind, size))
        offset += size
    assert offset == len(data), "the last box runs past the end of the file"
    return boxes


def test_no_aligned_block_of_a_several_mib_clip_repeats() -> None:
    data = make_mp4(6 * 1024 * 1024 + 123, seed="req/clip")
    blocks = [data[i : i + BLOCK] for i in range(0, len(data) - BLOCK + 1, BLOCK)]
    assert len(blocks) == 1536
    assert len(set(blocks)) == len(blocks)


def test_a_payload_block_occurs_nowhere_but_at_its_own_offset() -> None:
    data = make_mp4(3 * 1024 * 1024, seed="shift")
    for start in (40, 64 * 1024 + 40, 2 * 1024 * 1024 + 17):
        block = data[start : start + BLOCK]
        assert data.find(block) == start
        assert data.find(block, start + 1) == -1


@pytest.mark.parametrize("size", [40, 41, 4096, 64 * 1024 + 40, 8 * 1024 * 1024 + 1])
def test_boxes_are_ftyp_then_mdat_and_fill_the_file_exactly(size: int) -> None:
    data = make_mp4(size, seed="s")
    assert len(data) == size
    assert top_level_boxes(data) == [(b"ftyp", 32), (b"mdat", size - 32)]
    assert data[8:16] == b"isom" + struct.pack(">I", 0x200)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=40, max_value=200_000), seed=st.text(max_size=20))
def test_any_size_gives_two_boxes_summing_to_the_file_size(size: int, seed: str) -> None:
    data = make_mp4(size, seed=seed)
    boxes = top_level_boxes(data)
    assert [kind for kind, _ in boxes] == [b"ftyp", b"mdat"]
    assert sum(box_size for _, box_size in boxes) == len(data) == size


def test_equal_seeds_give_equal_bytes_and_other_seeds_other_payloads() -> None:
    one = make_mp4(256 * 1024, seed="a")
    assert one == make_mp4(256 * 1024, seed="a")
    other = make_mp4(256 * 1024, seed="b")
    assert one[:40] == other[:40]
    assert one[40:] != other[40:]
