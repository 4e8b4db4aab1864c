"""Path planning and response checks of the downloader (pure; Hypothesis)."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async._plan import (
    ContentRange,
    clip_file_names,
    is_clip_content_type,
    looks_like_mp4,
    manifest_entry_matches,
    parse_content_range,
    safe_name,
)

ids = st.text(min_size=0, max_size=120)


@given(st.one_of(ids, st.text(alphabet="0a._-/", min_size=70, max_size=130)))
def test_safe_name_is_idempotent_and_safe(value: str) -> None:
    name = safe_name(value)
    assert safe_name(name) == name
    assert name and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..")
    assert len(name) <= 100
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


@given(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=60))
def test_ordinary_ids_are_kept_as_they_are(value: str) -> None:
    assert safe_name(value) == value


@given(st.lists(ids, max_size=30))
def test_no_two_clips_share_a_path(clip_ids: list[str]) -> None:
    names = clip_file_names(clip_ids)
    assert set(names) == set(clip_ids)
    folded = [name.casefold() for name in names.values()]
    assert len(folded) == len(set(folded))
    root = PurePosixPath("/dest/request")
    for name in names.values():
        path = root / name
        assert path.parent == root
        assert name.endswith(".mp4")


@pytest.mark.parametrize(
    ("value", "changed"),
    [
        ("f2c713ff-865f-4cd5-98ab-f6aa696a3620", False),
        ("665a1b2c3d4e5f6a7b8c9d0e", False),
        ("../x", True),
        ("..", True),
        (".hidden", True),
        ("a/b", True),
        ("CON", True),
        ("con.txt", True),
        ("", True),
        ("x" * 100, False),
        ("x" * 101, True),
        ("0" * 81, False),
        ("ümlaut", True),
    ],
)
def test_safe_name_examples(value: str, changed: bool) -> None:
    assert (safe_name(value) != value) is changed


def test_clashes_that_differ_only_in_case_get_distinct_names() -> None:
    names = clip_file_names(["Clip", "clip", "CLIP"])
    assert len({n.casefold() for n in names.values()}) == 3
    assert names["Clip"] == "Clip.mp4"


@pytest.mark.parametrize(
    ("content_type", "ok"),
    [
        (None, True),
        ("", True),
        ("video/mp4", True),
        ("VIDEO/MP4; charset=binary", True),
        ("application/octet-stream", True),
        ("binary/octet-stream", True),
        ("text/html", False),
        ("application/json", False),
        ("application/xml", False),
    ],
)
def test_clip_content_types(content_type: str | None, ok: bool) -> None:
    assert is_clip_content_type(content_type) is ok


def test_mp4_signature() -> None:
    assert looks_like_mp4(b"\x00\x00\x00\x20ftypisom")
    assert not looks_like_mp4(b"<html><bo")
    assert not looks_like_mp4(b"\x00\x00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", ContentRange(0, 99, 100)),
        ("bytes 100-199/*", ContentRange(100, 199, None)),
        (" BYTES 5-5/6 ", ContentRange(5, 5, 6)),
        ("bytes 10-5/100", None),
        ("bytes 0-100/100", None),
        ("bytes */100", None),
        ("items 0-1/2", None),
        (None, None),
    ],
)
def test_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


def test_manifest_entry_matches() -> None:
    entry = {"complete": True, "size": 10, "mtime_ns": 5}
    assert manifest_entry_matches(entry, 10, 5)
    assert not manifest_entry_matches(entry, 11, 5)
    assert not manifest_entry_matches(entry, 10, 6)
    assert not manifest_entry_matches({**entry, "complete": False}, 10, 5)
    assert not manifest_entry_matches(None, 10, 5)
