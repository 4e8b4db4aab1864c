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
    parse_content_range,
    safe_name,
)

ids = st.text(min_size=0, max_size=120)

# Listed here independently of the code under test: Windows opens these devices for any
# name whose part before the first dot is one of them, in any case (CONIN$ and CONOUT$ too).
WINDOWS_DEVICES = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    *(f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]),
}


def device_name(value: str) -> st.SearchStrategy[str]:
    """``value`` in a random mix of upper and lower case."""
    return st.tuples(*(st.sampled_from(sorted({c.lower(), c.upper()})) for c in value)).map("".join)


# A device name in any case, then any extensions, dots, spaces or other characters.
reserved_ids = st.builds(
    lambda name, tail: name + tail,
    st.sampled_from(sorted(WINDOWS_DEVICES)).flatmap(device_name),
    st.one_of(
        st.just(""),
        st.text(alphabet=". ", min_size=1, max_size=4),
        st.lists(st.sampled_from([".mp4", ".part", ".tar", ".", " ", ".gz", ".."])).map("".join),
        st.text(max_size=110).map(lambda rest: "." + rest),
    ),
)
any_ids = st.one_of(
    ids,
    reserved_ids,
    st.text(alphabet="0a._-/", min_size=70, max_size=130),
    st.text(alphabet="nulNUL.mp4 ", max_size=12),
)


def is_portable(name: str) -> bool:
    """Usable as a file name on Windows, macOS and Linux, and not renamed by any of them."""
    return (
        0 < len(name) <= 100
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in name)
        and not name.startswith(".")
        and not name.endswith((".", " "))
        and name.split(".", 1)[0].upper() not in WINDOWS_DEVICES
    )


@given(any_ids)
def test_safe_name_is_idempotent_and_safe(value: str) -> None:
    name = safe_name(value)
    assert safe_name(name) == name
    assert is_portable(name)
    for file_name in (f"{name}.mp4", f"{name}.mp4.part", f"{name}.json"):
        assert file_name.split(".", 1)[0].upper() not in WINDOWS_DEVICES


@given(reserved_ids)
def test_device_names_in_any_case_and_with_any_extension_are_changed(value: str) -> None:
    name = safe_name(value)
    assert name != value
    assert is_portable(name)
    assert safe_name(name) == name


@given(any_ids, any_ids)
def test_different_ids_get_different_stems(one: str, other: str) -> None:
    if one != other:
        assert safe_name(one) != safe_name(other)


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
        ("nul.mp4", True),
        ("NuL", True),
        ("Com1.tar.gz", True),
        ("lpt0", True),
        ("aux.", True),
        ("prn..", True),
        ("CONIN$", True),
        ("conout$.log", True),
        ("CONSOLE", False),
        ("con-1", False),
        ("nul_x.mp4", False),
        ("COM10", False),
        ("LPT", False),
        ("a.b", False),
        ("a.", True),
        ("a..", True),
        ("clip.", True),
        ("", True),
        ("x" * 100, False),
        ("x" * 101, True),
        ("0" * 81, False),
        ("ümlaut", True),
    ],
)
def test_safe_name_examples(value: str, changed: bool) -> None:
    assert (safe_name(value) != value) is changed


def test_nul_mp4_becomes_a_name_whose_first_part_is_no_device() -> None:
    name = safe_name("nul.mp4")
    assert name.split(".", 1)[0].upper() != "NUL"
    assert name.startswith("_nul.mp4-")
    assert is_portable(name)


def test_trailing_dots_of_two_ids_do_not_make_them_collide_on_windows() -> None:
    stems = {safe_name(value) for value in ("clip", "clip.", "clip..")}
    assert len({stem.rstrip(". ").casefold() for stem in stems}) == 3


def test_clashes_that_differ_only_in_case_get_distinct_names() -> None:
    names = clip_file_names(["Clip", "clip", "CLIP"])
    assert len({n.casefold() for n in names.values()}) == 3
    assert names["Clip"] == "Clip.mp4"


def test_a_stem_made_by_a_clash_is_not_reused_when_an_id_already_has_it() -> None:
    made = clip_file_names(["Clip", "clip"])["clip"].removesuffix(".mp4")
    names = clip_file_names([made, "Clip", "clip"])
    assert len({n.casefold() for n in names.values()}) == 3
    assert names[made] == f"{made}.mp4"


def test_clashing_ids_of_100_characters_keep_stems_within_100() -> None:
    names = clip_file_names(["A" * 100, "a" * 100, "a" * 99 + "A"])
    assert len({n.casefold() for n in names.values()}) == 3
    assert all(is_portable(n.removesuffix(".mp4")) for n in names.values())


def with_clash_stems(base: list[str]) -> st.SearchStrategy[list[str]]:
    """``base`` plus the stems its clashes produce (in both cases), in any order."""
    stems = [name.removesuffix(".mp4") for name in clip_file_names(base).values()]
    return st.permutations([*base, *stems, *(stem.swapcase() for stem in stems)])


# Ids that clash in case with each other and with the stems that clashes produce.
clashing_ids = st.lists(
    st.one_of(st.text(alphabet="aA", min_size=1, max_size=2), reserved_ids), max_size=8
).flatmap(with_clash_stems)


@given(st.one_of(clashing_ids, st.lists(any_ids, max_size=30)))
def test_clip_file_names_are_distinct_in_any_case_and_portable(clip_ids: list[str]) -> None:
    names = clip_file_names(clip_ids)
    assert set(names) == set(clip_ids)
    assert len({n.casefold() for n in names.values()}) == len(names)
    assert all(is_portable(name.removesuffix(".mp4")) for name in names.values())
    if clip_ids:
        assert names[clip_ids[0]] == f"{safe_name(clip_ids[0])}.mp4"


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
