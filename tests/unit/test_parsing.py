"""Recorded payloads (the seed's example first, then each variant of section 6) parse right."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemble_async import (
    CreatedRequest,
    GameVideo,
    MemeHook,
    MusicTrack,
    RequestState,
    RequestSummary,
    ResponseValidationError,
    Sentence,
    Short,
    ShortsRequest,
    TimeRange,
)
from ssemble_async._converter import (
    _ALIASES,
    _SLOW_PATHS,
    MAX_BODY_BYTES,
    MAX_PAGES,
    Page,
    PageStep,
    _camel,
    converter,
    parse_created,
    parse_page,
    parse_shorts_request,
    parse_status,
    parse_templates,
    step_after_page,
)
from ssemble_async._models import Pagination

PAYLOADS = Path(__file__).parent.parent / "payloads"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def test_seed_example_of_get_shorts() -> None:
    request = parse_shorts_request(payload("get_shorts_seed.json"))
    assert request.request_id == request.id == "665a1b2c3d4e5f6a7b8c9d0e"
    assert request.status is RequestState.COMPLETED
    assert request.status == "completed"
    assert request.progress == 100
    assert request.user_email == "user@example.com"
    assert (request.start, request.end) == (0, 600)
    assert request.template == "hormozi1"
    assert request.caption_language == ""
    assert request.heatmap == ()
    assert request.project_id is None
    assert request.created_at is None
    assert [s.text for s in request.sentences] == [
        "This is the first transcribed sentence.",
        "This is the second transcribed sentence with more content.",
    ]
    assert request.sentences[1].start == 15.3
    first, second = request.shorts
    assert first.id == "f2c713ff-865f-4cd5-98ab-f6aa696a3620"
    assert first.viral_score == 85
    assert first.video_url == (
        "https://cf.ssemble.com/ssemble-shortsmaker-plugin/export/file_example.mp4"
    )
    assert (first.start_timestamp, first.end_timestamp, first.duration) == (12.5, 55.3, 43)
    assert (first.width, first.height) == (1080, 1920)
    assert first.sentence_indexes == (0, 1)
    assert first.recompiling is False
    assert first.error is False
    assert first.error_message is None  # the key is absent in the seed (D6)
    assert first.is_downloadable
    assert second.viral_score == 72


def test_reference_example_with_error_clip_and_timestamps() -> None:
    request = parse_shorts_request(payload("get_shorts_reference.json"))
    ok, failed = request.shorts
    assert ok.error_message is None  # explicit null (D6)
    assert failed.error is True
    assert failed.error_message == "Render failed"
    assert failed.video_url is None  # "" means no URL
    assert not failed.is_downloadable
    assert request.created_at == dt.datetime(2025, 3, 2, 9, 14, 5, tzinfo=dt.timezone.utc)
    assert ok.duration == 60.8


def test_plan_variant_of_get_shorts() -> None:
    request = parse_shorts_request(payload("get_shorts_plan.json"))
    assert request.request_id == "67d1f0a2b3c4d5e6f7a8b9c1"  # requestId (D1)
    assert request.status is RequestState.COMPLETED  # legacy TASK_COMPLETE (D17)
    assert request.status_raw == "TASK_COMPLETE"
    assert request.url == ""
    assert request.file_url == "https://files.example.org/talk.mp4"  # D23
    assert request.progress is None and request.user_email is None  # D14
    assert request.template == "Karaoke"  # opaque (D7)
    assert request.extra == {"workerNode": "w-17"}  # unknown keys kept
    recompiling, square = request.shorts
    assert recompiling.id == "65f0a1b2c3d4e5f6a7b8c9d0"  # 24-hex clip id (D12)
    assert recompiling.viral_score == 8.5  # not rescaled (D11)
    assert recompiling.recompiling is True
    assert not recompiling.is_downloadable
    assert recompiling.error is False  # missing means false (D6)
    assert recompiling.end_timestamp == 36.62  # numeric string coerced
    assert (recompiling.width, recompiling.height) == (1080, 1920)  # defaults when missing
    assert (square.width, square.height) == (1080, 1080)
    assert request.updated_at == dt.datetime(2025, 3, 2, 8, 31, 40, tzinfo=dt.timezone.utc)
    assert [s.viral_score for s in request.shorts_by_score()] == [100, 8.5]


def test_missing_request_id_falls_back_to_the_one_asked_for() -> None:
    body = b'{"data": {"status": "queued"}}'
    assert parse_shorts_request(body, request_id="a" * 24).request_id == "a" * 24
    assert parse_status(body, request_id="b" * 24).request_id == "b" * 24


def test_status_variants() -> None:
    processing = parse_status(payload("status_processing.json"))
    assert processing.status is RequestState.PROCESSING
    assert processing.step == "transcribing_audio"
    assert processing.display_message == "Transcribing audio..."
    assert processing.progress == 34
    assert processing.is_demo is False
    assert processing.failure_reason is None
    failed = parse_status(payload("status_failed.json"))
    assert failed.status is RequestState.FAILED
    assert failed.failure_reason == "Source file could not be downloaded (HTTP 403)"
    plan = parse_status(payload("status_plan.json"))
    assert plan.request_id == "67d1f0a2b3c4d5e6f7a8b9c0"
    assert plan.display_message == "Finding interesting segments..."
    assert plan.estimated_time_remaining == "4 minutes"


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("queued", RequestState.QUEUED),
        ("processing", RequestState.PROCESSING),
        ("completed", RequestState.COMPLETED),
        ("TASK_COMPLETE", RequestState.COMPLETED),
        ("failed", RequestState.FAILED),
        ("error", RequestState.FAILED),
        ("cancelled", RequestState.CANCELLED),
        ("rendering_v2", RequestState.UNKNOWN),
    ],
)
def test_status_words_map_to_an_open_enum(word: str, state: RequestState) -> None:
    status = parse_status(json.dumps({"data": {"_id": "x", "status": word}}).encode())
    assert status.status is state
    assert status.status_raw == word
    assert str(status.status) == state.value


def test_created_variants() -> None:
    mcode = parse_created(payload("created_mcode.json"))
    assert mcode == CreatedRequest(
        request_id="67d1f0a2b3c4d5e6f7a8b9c0",
        status=RequestState.QUEUED,
        status_raw="queued",
        message="Request accepted and waiting for a worker",
        estimated_time="10-20 minutes",
        credits_used=1,
        time_adjustment=mcode.time_adjustment,
    )
    assert mcode.time_adjustment is not None
    assert mcode.time_adjustment.adjusted == TimeRange(start=300, end=1187.4)
    assert mcode.time_adjustment.original == TimeRange(start=300, end=1400)
    assert mcode.time_adjustment.video_duration == 1187.4
    plan = parse_created(payload("created_plan.json"))
    assert plan.estimated_time == "5-10 minutes"
    assert plan.credits_used is None and plan.time_adjustment is None


def test_list_pagination_in_both_styles() -> None:
    docs = parse_page(payload("list_docs.json"), RequestSummary)
    (item,) = docs.items
    assert isinstance(item, RequestSummary)
    assert item.request_id == "67d1f0a2b3c4d5e6f7a8b9c0"
    assert item.duration == 780
    assert (docs.pagination.page, docs.pagination.limit) == (1, 20)
    assert (docs.pagination.total_pages, docs.pagination.total_count) == (3, 47)
    plan = parse_page(payload("list_plan.json"), RequestSummary)
    assert plan.items[0].status is RequestState.CANCELLED
    assert plan.items[0].url is None
    assert (plan.pagination.page, plan.pagination.limit) == (2, 10)
    assert plan.pagination.total_count == 11
    assert plan.pagination.total_pages == 2  # derived: ceil(11 / 10)


def test_templates_default_from_top_level_and_from_flags() -> None:
    docs = parse_templates(payload("templates_docs.json"))
    assert [(t.name, t.is_default) for t in docs] == [("ali", False), ("karaoke", True)]
    assert docs[0].preview == docs[0].thumbnail
    assert docs[0].gif is not None and docs[0].order == 3
    assert docs[1].preview == docs[1].thumbnail  # preview falls back to thumbnail
    plan = parse_templates(payload("templates_plan.json"))
    assert [t.is_default for t in plan] == [False, True]
    assert plan[0].preview == "https://cf.ssemble.com/h1.png"  # previewUrl (D8)
    bare = parse_templates(
        b'{"data": {"templates": [{"templateId": "660b8531aedb346bbe26eb43"},'
        b' {"templateId": "66e386d23b11d1a71b755e44", "name": "KARAOKE2"}]}}'
    )
    assert [t.is_default for t in bare] == [True, False]
    by_name = parse_templates(
        b'{"data": {"templates": [{"templateId": "66e386d23b11d1a71b755e44", "name": "Box"}],'
        b' "defaultTemplateName": "box"}}'
    )
    assert by_name[0].is_default


def test_asset_variants() -> None:
    music = parse_page(payload("music.json"), MusicTrack)
    assert music.items == (
        MusicTrack(name="Night Drive", duration=142),
        MusicTrack(
            name="Sunny Loop", duration=98.5, url="https://cf.ssemble.com/music/sunny_loop.mp3"
        ),
    )
    games = parse_page(payload("game_videos_mcode.json"), GameVideo)
    assert games.items[0].video_duration == 612
    assert games.items[0].video == "https://cf.ssemble.com/game/minecraft_parkour.mp4"
    plan = parse_page(payload("game_videos_plan.json"), GameVideo)
    assert plan.items[0].preview == "https://cf.ssemble.com/game/gta.jpg"
    assert plan.items[0].extra == {"tags": ["cars"]}  # D9
    hooks = parse_page(payload("meme_hooks.json"), MemeHook)
    assert hooks.items[0].name == "Dramatic Zoom"
    assert hooks.pagination.total_count == 159


def test_page_without_pagination_object() -> None:
    page = parse_page(b'{"data": {"music": [{"name": "A"}]}}', MusicTrack)
    assert page.pagination.total_pages is None
    assert [t.name for t in page.items] == ["A"]


# -- pagination: what a page says, and when a listing goes on -------------------------------


def test_page_ids_are_the_request_ids_or_the_asset_names() -> None:
    assert parse_page(payload("list_docs.json"), RequestSummary).ids == (
        "67d1f0a2b3c4d5e6f7a8b9c0",
    )
    assert parse_page(payload("music.json"), MusicTrack).ids == ("Night Drive", "Sunny Loop")


@pytest.mark.parametrize(
    ("pagination", "expected"),
    [
        ('{"hasMore": true}', Pagination(has_more=True)),
        ('{"hasNextPage": "false", "page": 2}', Pagination(page=2, has_more=False)),
        ('{"total": 45, "limit": 20}', Pagination(limit=20, total_count=45, total_pages=3)),
        ('{"totalItems": 45}', Pagination(total_count=45)),
        (  # exact, where dividing as floats would be 22 pages short
            f'{{"totalCount": {2**60}, "limit": 3}}',
            Pagination(limit=3, total_count=2**60, total_pages=(2**60 + 2) // 3),
        ),
    ],
)
def test_pagination_variants(pagination: str, expected: Pagination) -> None:
    body = f'{{"data": {{"music": [], "pagination": {pagination}}}}}'.encode()
    assert parse_page(body, MusicTrack).pagination == expected


def make_page(ids: tuple[str, ...], **figures: Any) -> Page:
    return Page(items=ids, ids=ids, pagination=Pagination(**figures))


TWENTY = tuple(f"i{n}" for n in range(20))
FIVE = TWENTY[:5]


@pytest.mark.parametrize(
    ("page", "number", "seen", "expected"),
    [
        # the server caps its pages at 20 of the 50 asked for; its totals say 45 items
        (make_page(TWENTY, limit=20, total_pages=3, total_count=45), 1, 0, PageStep.NEXT),
        (make_page(TWENTY, limit=20, total_pages=3, total_count=45), 2, 20, PageStep.NEXT),
        (make_page(FIVE, limit=20, total_pages=3, total_count=45), 3, 40, PageStep.LAST),
        (make_page(FIVE, total_pages=3), 1, 0, PageStep.NEXT),
        (make_page(FIVE, total_pages=3), 3, 40, PageStep.LAST),
        # a total count without a page size: go on until that many were listed
        (make_page(TWENTY, total_count=45), 2, 20, PageStep.NEXT),
        (make_page(FIVE, total_count=45), 3, 40, PageStep.LAST),
        # the totals win over hasMore, in both directions
        (make_page(FIVE, total_pages=3, has_more=False), 2, 20, PageStep.NEXT),
        (make_page(FIVE, total_pages=1, total_count=5, has_more=True), 1, 0, PageStep.LAST),
        # hasMore alone
        (make_page(FIVE, has_more=True), 1, 0, PageStep.NEXT),
        (make_page(TWENTY + TWENTY + FIVE, has_more=False), 1, 0, PageStep.LAST),
        # no figures at all: a short page is the last, by the server's limit echo if any
        (make_page(TWENTY + TWENTY + TWENTY[:10]), 1, 0, PageStep.NEXT),
        (make_page(TWENTY), 1, 0, PageStep.LAST),
        (make_page(TWENTY, limit=20), 1, 0, PageStep.NEXT),
        (make_page(FIVE, limit=20), 1, 0, PageStep.LAST),
        # an empty page ends it whatever the figures say
        (make_page((), total_pages=9, total_count=99, has_more=True), 2, 20, PageStep.LAST),
        # and so does the page cap
        (make_page(TWENTY, total_pages=MAX_PAGES * 2), MAX_PAGES, 0, PageStep.LAST),
        (make_page(TWENTY, total_pages=MAX_PAGES * 2), MAX_PAGES - 1, 0, PageStep.NEXT),
    ],
)
def test_step_after_page(page: Page, number: int, seen: int, expected: PageStep) -> None:
    previous = tuple(f"p{n}" for n in range(20)) if number > 1 else None
    assert step_after_page(page, number=number, requested=50, seen=seen, previous_ids=previous) == (
        expected
    )


def test_a_page_repeating_the_one_before_is_dropped_whatever_its_figures() -> None:
    page = make_page(TWENTY, limit=20, total_pages=3, total_count=45, has_more=True)
    step = step_after_page(page, number=2, requested=20, seen=20, previous_ids=TWENTY)
    assert step is PageStep.REPEAT
    other = step_after_page(page, number=2, requested=20, seen=20, previous_ids=TWENTY[::-1])
    assert other is PageStep.NEXT


Server = Callable[[int], Page]


def list_all(serve: Server, requested: int) -> tuple[list[str], int]:
    """Page through ``serve`` as ``Client._paginate`` does: (ids listed, pages fetched)."""
    number, seen, previous = 1, 0, None
    listed: list[str] = []
    while True:
        assert number <= MAX_PAGES, "went past the page cap"
        page = serve(number)
        step = step_after_page(
            page, number=number, requested=requested, seen=seen, previous_ids=previous
        )
        if step is not PageStep.NEXT and page.items and page.ids != previous:
            # it stopped on a page that is not empty nor a repeat: the figures must agree
            paging = page.pagination
            assert (
                number >= MAX_PAGES or paging.total_pages is None or (number >= paging.total_pages)
            )
            assert (
                number >= MAX_PAGES
                or paging.total_count is None
                or (seen + len(page.items) >= paging.total_count)
            )
        if step is PageStep.REPEAT:
            return listed, number
        listed.extend(page.ids)
        if step is PageStep.LAST:
            return listed, number
        number, seen, previous = number + 1, seen + len(page.items), page.ids


STYLES = ("docs", "count", "has_more", "limit_echo", "none")


@given(
    count=st.integers(0, 120),
    requested=st.integers(1, 100),
    cap=st.integers(1, 100),
    style=st.sampled_from(STYLES),
)
def test_an_honest_server_of_any_style_and_page_cap_is_listed_whole(
    count: int, requested: int, cap: int, style: str
) -> None:
    # a server without any figures can only be followed when it serves full pages
    size = requested if style == "none" else min(requested, cap)
    pages = -(-count // size)
    ids = tuple(f"item{n}" for n in range(count))

    def serve(number: int) -> Page:
        chunk = ids[(number - 1) * size : number * size]
        figures: dict[str, Pagination] = {
            "docs": Pagination(page=number, limit=size, total_pages=pages, total_count=count),
            "count": Pagination(total_count=count),
            "has_more": Pagination(has_more=number < pages),
            "limit_echo": Pagination(page=number, limit=size),
            "none": Pagination(),
        }
        return Page(items=chunk, ids=chunk, pagination=figures[style])

    listed, fetched = list_all(serve, requested)
    assert tuple(listed) == ids
    assert fetched <= max(pages, 1) + 1


pagination_figures = st.builds(
    Pagination,
    page=st.none() | st.integers(-2, 10),
    limit=st.none() | st.integers(-1, 120),
    total_pages=st.none() | st.integers(-1, 12) | st.just(10**9),
    total_count=st.none() | st.integers(-1, 500) | st.just(10**9),
    has_more=st.none() | st.booleans(),
)
ids_of_a_page = st.lists(st.sampled_from("abcdef"), max_size=6).map(tuple)


@given(
    head=st.lists(st.tuples(ids_of_a_page, pagination_figures), max_size=12),
    then=st.sampled_from(("repeat", "empty", "fresh", "cycle")),
    figures=pagination_figures,
    requested=st.integers(1, 100),
)
def test_any_server_is_listed_to_an_end_and_never_left_while_its_totals_say_more(
    head: list[tuple[tuple[str, ...], Pagination]],
    then: str,
    figures: Pagination,
    requested: int,
) -> None:
    """Pages as scripted, then the last one again, or empty ones, or new items forever."""

    def serve(number: int) -> Page:
        if number <= len(head):
            ids, paging = head[number - 1]
        elif then == "repeat" and head:
            ids, paging = head[-1]
        elif then == "empty":
            ids, paging = (), figures
        elif then == "cycle":
            ids, paging = (("x",), ("y",))[number % 2], figures
        else:
            ids, paging = (f"new{number}",), figures
        return Page(items=ids, ids=ids, pagination=paging)

    list_all(serve, requested)


def test_unwrapped_payload_is_accepted() -> None:
    created = parse_created(b'{"requestId": "67d1f0a2b3c4d5e6f7a8b9c0", "status": "queued"}')
    assert created.request_id == "67d1f0a2b3c4d5e6f7a8b9c0"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"<html>502</html>", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[1, 2]", "'data' object"),
        (b'{"data": [1]}', "'data' object"),
        (b'{"error": {"code": "x"}}', "'data' object"),
        (b'{"data": {"status": "completed"}}', "required field missing @ $.data.request_id"),
        (b'{"data": {"_id": "x", "status": "completed", "shorts": "none"}}', "$.data.shorts"),
        (
            b'{"data": {"_id": "x", "status": "ok", "shorts": [{"id": "a", "viral_score": "hi"}]}}',
            "$.data.shorts[0].viral_score",
        ),
        (b'{"data": {"_id": "x", "status": {"a": 1}}}', "$.data.status"),
        (b'{"data": {"_id": "x", "status": "ok", "progress": true}}', "$.data.progress"),
        (b'{"data": {"_id": "x", "status": "ok", "createdAt": "yesterday"}}', "$.data.created_at"),
        (
            b'{"data": {"_id": "x", "status": "ok", "shorts": [{"id": "a", "width": 10.5}]}}',
            "width",
        ),
        (
            b'{"data": {"_id": "x", "status": "ok", "shorts": [{"id": "a", "error": "maybe"}]}}',
            "error",
        ),
        (b'{"data": {"_id": "x", "status": "ok", "shorts": [7]}}', "$.data.shorts[0]"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_bad_bodies_raise_a_readable_validation_error(body: bytes, needle: str) -> None:
    with pytest.raises(ResponseValidationError) as info:
        parse_shorts_request(body)
    assert needle in str(info.value)
    assert "GET /shorts/:id" in str(info.value)


def test_oversized_body_is_refused_before_parsing() -> None:
    with pytest.raises(ResponseValidationError, match="cap"):
        parse_created(b" " * (MAX_BODY_BYTES + 1))


def test_lenient_scalars() -> None:
    body = json.dumps(
        {
            "data": {
                "_id": 12345,
                "status": "completed",
                "progress": "99.5",
                "start": 3,
                "shorts": [
                    {
                        "id": "a",
                        "recompiling": "false",
                        "error": 0,
                        "width": "720",
                        "height": 1280.0,
                    }
                ],
                "createdAt": 1740906845,
                "updatedAt": 1740906845000,
            }
        }
    ).encode()
    request = parse_shorts_request(body)
    assert request.request_id == "12345"
    assert request.progress == 99.5
    (short,) = request.shorts
    assert (short.recompiling, short.error, short.width, short.height) == (False, False, 720, 1280)
    assert request.created_at == request.updated_at
    assert request.created_at == dt.datetime(2025, 3, 2, 9, 14, 5, tzinfo=dt.timezone.utc)


def test_a_server_that_always_has_more_new_items_is_left_at_the_page_cap() -> None:
    def serve(number: int) -> Page:
        return make_page((f"new{number}",), total_pages=10**9, has_more=True)

    listed, fetched = list_all(serve, requested=1)
    assert fetched == len(listed) == MAX_PAGES


_WIRE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -0.0, 1.5, 7]),
    st.sampled_from(["", "1", "2.5", " 3 ", "true", "no", "x", "nan", "2024-05-01T10:00:00Z"]),
    st.text(max_size=8),
    st.lists(st.integers(0, 5), max_size=3),
)


@pytest.mark.parametrize("model", [Sentence, Short, ShortsRequest])
@settings(max_examples=500)
@given(data=st.data())
def test_the_fast_path_agrees_with_cattrs_on_any_payload(model: type, data: st.DataObject) -> None:
    """Each model's straight-line reader gives what cattrs' generated function gives, or
    both refuse the payload."""
    keys = sorted({key for keys in _wire_keys(model) for key in keys} | {"unknown"})
    payload = data.draw(st.fixed_dictionaries({}, optional=dict.fromkeys(keys, _WIRE_VALUES)))
    fast: object
    slow: object
    try:
        fast = converter.structure(payload, model)
    except Exception as exc:
        fast = type(exc)
    try:
        slow = _SLOW_PATHS[model](payload)
    except Exception as exc:
        slow = type(exc)
    if isinstance(fast, type) or isinstance(slow, type):
        assert isinstance(fast, type) and isinstance(slow, type), (fast, slow)
    else:
        assert fast == slow


def _wire_keys(model: type) -> list[tuple[str, ...]]:
    """The keys each field of ``model`` may come under (its aliases, camelCase, its name)."""
    aliases = _ALIASES.get(model, {})
    return [
        (*aliases.get(field.name, ()), _camel(field.name), field.name)
        for field in attrs.fields(model)
        if field.name != "extra"
    ]
