"""The pure decisions of S3 destinations (``ssemble_async._s3``): no server needed."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async._plan import safe_name
from ssemble_async._s3 import (
    S3Location,
    UploadedPart,
    holds_clip,
    is_s3_url,
    is_stale,
    parse_s3_url,
    part_checksum,
    resumable_parts,
    upload_metadata,
)

PART = 8


def part(number: int, size: int = PART) -> UploadedPart:
    return UploadedPart(number=number, size=size, etag=f'"e{number}"')


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://clips", "clips", ""),
        ("s3://clips/", "clips", ""),
        ("S3://clips/a/b/", "clips", "a/b"),
        ("s3://clips//a//b", "clips", "a/b"),
    ],
)
def test_parse_s3_url(url: str, bucket: str, prefix: str) -> None:
    assert is_s3_url(url)
    assert parse_s3_url(url) == S3Location(bucket=bucket, prefix=prefix)


@pytest.mark.parametrize("url", ["s3://", "s3:///a", "s3://a b/c", "s3://a?b", "clips/"])
def test_parse_s3_url_refuses(url: str) -> None:
    with pytest.raises(ValueError, match="s3://"):
        parse_s3_url(url)


def test_keys_follow_the_folder_layout() -> None:
    assert S3Location(bucket="b", prefix="p/q").request_key("665a", "c.mp4") == "p/q/665a/c.mp4"
    assert S3Location(bucket="b").request_key("665a", "manifest.json") == "665a/manifest.json"
    hostile = S3Location(bucket="b").request_key("../x", "c.mp4")
    assert hostile == f"{safe_name('../x')}/c.mp4"
    assert ".." not in hostile.split("/")
    assert S3Location(bucket="b", prefix="p").url == "s3://b/p"
    assert S3Location(bucket="b").url == "s3://b"


def test_a_path_is_never_an_s3_url() -> None:
    from pathlib import Path

    assert not is_s3_url(Path("s3://b/p"))


def test_part_checksum_is_base64_sha256() -> None:
    data = b"x" * 1000
    assert part_checksum(data) == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_resumable_parts_keep_whole_parts_without_gaps() -> None:
    assert resumable_parts([part(1), part(2), part(3)], part_size=PART, total=100) == [
        part(1),
        part(2),
        part(3),
    ]
    # listed out of order: sorted; a gap ends the run
    assert resumable_parts([part(2), part(1), part(4)], part_size=PART, total=100) == [
        part(1),
        part(2),
    ]
    # a short part (cut when its run was killed) and anything after it are not kept
    assert resumable_parts([part(1), part(2, 5), part(3)], part_size=PART, total=100) == [part(1)]
    assert resumable_parts([part(2), part(3)], part_size=PART, total=100) == []


def test_resumable_parts_leave_at_least_one_byte_to_fetch() -> None:
    # every byte uploaded: the last part is sent again, so the clip host is asked
    assert resumable_parts([part(1), part(2)], part_size=PART, total=16) == [part(1)]
    assert resumable_parts([part(1), part(2)], part_size=PART, total=17) == [part(1), part(2)]
    assert resumable_parts([part(1)], part_size=PART, total=8) == []


@given(
    numbers=st.lists(st.integers(1, 12), max_size=12),
    short=st.sets(st.integers(1, 12)),
    total=st.integers(1, 120),
)
def test_resumable_parts_invariants(numbers: list[int], short: set[int], total: int) -> None:
    parts = [part(n, PART - 1 if n in short else PART) for n in numbers]
    kept = resumable_parts(parts, part_size=PART, total=total)
    assert [p.number for p in kept] == list(range(1, len(kept) + 1))
    assert all(p.size == PART for p in kept)
    assert len(kept) * PART < total


def test_holds_clip() -> None:
    assert holds_clip(100, {}, recorded=100)
    assert not holds_clip(100, {}, recorded=99)
    assert not holds_clip(100, {}, recorded=None)
    assert holds_clip(100, {"ssemble-size": "100"}, recorded=None)
    assert not holds_clip(100, {"ssemble-size": "101"}, recorded=None)


def test_upload_metadata() -> None:
    assert upload_metadata(total=5, validator='"abc"') == {
        "ssemble-size": "5",
        "ssemble-source": '"abc"',
    }
    assert upload_metadata(total=None, validator="caf\u00e9") == {}


def test_is_stale() -> None:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    day = dt.timedelta(hours=24)
    assert is_stale(now - day, now, day)
    assert not is_stale(now - day + dt.timedelta(seconds=1), now, day)
    assert is_stale(now, now, dt.timedelta(0))
