"""Every endpoint through the public Client against the fake API on loopback."""

from __future__ import annotations

import anyio
import pytest

from ssemble_async import (
    BadRequestError,
    Client,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    RequestState,
)
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio


def finished_job(**kwargs: object) -> FakeJob:
    return FakeJob(steps=(), **kwargs)  # type: ignore[arg-type]


async def test_get_shorts_of_a_completed_job(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    clips = (
        FakeClip(viral_score=40, title="low"),
        FakeClip(viral_score=90, title="high"),
        FakeClip(error=True, error_message="Render failed", viral_score=99),
    )
    rid = fake_ssemble.add_job(finished_job(clips=clips))
    request = await client.get_shorts(rid)
    assert request.request_id == rid
    assert request.status is RequestState.COMPLETED
    assert len(request.shorts) == 3
    assert len(request.sentences) > 0
    by_title = {s.title: s for s in request.shorts}
    assert by_title["high"].video_url == fake_ssemble.clip_url(rid, by_title["high"].id)
    failed = next(s for s in request.shorts if s.error)
    assert failed.error_message == "Render failed"
    assert failed.video_url is None
    assert [s.title for s in request.shorts_by_score() if s.is_downloadable] == ["high", "low"]


async def test_requestid_style_server(client: Client) -> None:
    async with (
        FakeSsembleAPI(id_key_style="requestId") as fake,
        Client(fake.api_key, base_url=fake.base_url) as other,
    ):
        rid = fake.add_job(FakeJob(reads_per_step=1))
        status = await other.get_status(rid)
        assert status.request_id == rid
        assert status.display_message
        request = await other.get_shorts(rid)
        assert request.request_id == rid
    del client


async def test_get_status_walks_the_lifecycle(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob(reads_per_step=1))
    states = []
    for _ in range(8):
        status = await client.get_status(rid)
        states.append((status.status, status.step))
    assert states[0] == (RequestState.QUEUED, "queued")
    assert (RequestState.PROCESSING, "finding_highlights") in states
    assert states[-1][0] is RequestState.COMPLETED


async def test_create_short_sends_only_set_options(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    created = await client.create_short(
        url="https://www.youtube.com/watch?v=AbCdEfGhIjK",
        start=120,
        end=900,
        preferred_length="under90sec",
        template_id="66fcc4c67769688a1d5ad08a",
        cta_enabled=True,
        cta_text="Full episode on our channel",
        music=True,
        music_volume=12,
        layout="fill",
    )
    assert created.status is RequestState.QUEUED
    assert created.credits_used == 1
    assert created.request_id in fake_ssemble.jobs
    body = fake_ssemble.api_requests[-1].json
    assert body == {
        "url": "https://www.youtube.com/watch?v=AbCdEfGhIjK",
        "start": 120,
        "end": 900,
        "preferredLength": "under90sec",
        "templateId": "66fcc4c67769688a1d5ad08a",
        "ctaEnabled": True,
        "ctaText": "Full episode on our channel",
        "music": True,
        "musicVolume": 12,
        "layout": "fill",
    }
    assert fake_ssemble.api_requests[-1].headers["Content-Type"].startswith("application/json")


async def test_create_short_reports_time_adjustment(client: Client) -> None:
    created = await client.create_short(
        file_url="https://files.example.org/a.mp4", start=3000, end=4000
    )
    assert created.time_adjustment is not None
    assert created.time_adjustment.adjusted is not None
    assert created.time_adjustment.adjusted.end < 4000


async def test_create_short_plan_style() -> None:
    async with (
        FakeSsembleAPI(create_style="plan") as fake,
        Client(fake.api_key, base_url=fake.base_url) as client,
    ):
        created = await client.create_short(url="https://youtu.be/x", start=0, end=60)
        assert created.estimated_time
        assert created.credits_used is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"start": 0, "end": 60}, "exactly one source"),
        ({"url": "u", "file_url": "https://f", "start": 0, "end": 60}, "exactly one source"),
        ({"file_url": "ftp://host/x.mp4", "start": 0, "end": 60}, "http"),
        ({"url": "u", "start": -1, "end": 60}, "start must be >= 0"),
        ({"url": "u", "start": 10, "end": 10}, "1 to 1200"),
        ({"url": "u", "start": 10, "end": 10.5}, "1 to 1200"),
        ({"url": "u", "start": 0, "end": 1200.5}, "1 to 1200"),
        ({"url": "u", "start": 0, "end": 60, "template_id": "karaoke"}, "template_id"),
        ({"url": "u", "start": 0, "end": 60, "music_volume": 101}, "music_volume"),
        ({"url": "u", "start": 0, "end": 60, "music_volume": -1}, "music_volume"),
        ({"url": "u", "start": 0, "end": 60, "cta_enabled": True}, "cta_text is required"),
        ({"url": "u", "start": 0, "end": 60, "cta_text": "x" * 201}, "at most 200"),
    ],
)
async def test_create_short_validates_before_sending(
    fake_ssemble: FakeSsembleAPI, client: Client, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=needle):
        await client.create_short(**kwargs)  # type: ignore[arg-type]
    assert fake_ssemble.api_requests == []


async def test_create_short_accepts_the_edges(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    await client.create_short(url="https://youtu.be/x", start=0, end=1)
    await client.create_short(url="https://youtu.be/x", start=100, end=1300, music_volume=0)
    await client.create_short(
        url="https://youtu.be/x", start=0, end=60, cta_enabled=True, cta_text="x" * 200
    )
    assert len(fake_ssemble.api_requests) == 3


async def test_server_side_validation_error(client: Client) -> None:
    with pytest.raises(BadRequestError) as info:
        await client.create_short(url="https://www.youtube.com/shorts/abc", start=0, end=60)
    assert info.value.code == "invalid_youtube_url"
    assert info.value.status == 400


@pytest.mark.parametrize(
    "bad_id", ["", "123", "../../etc/passwd", "g" * 24, "a" * 25, "a" * 23 + "\n", 42, None]
)
async def test_malformed_ids_fail_before_any_request(
    fake_ssemble: FakeSsembleAPI, client: Client, bad_id: object
) -> None:
    for call in (
        client.get_shorts,
        client.get_status,
        client.delete_request,
        client.wait_for_completion,
    ):
        with pytest.raises(InvalidRequestIdError) as info:
            await call(bad_id)  # type: ignore[operator]
        assert isinstance(info.value, ValueError)
        assert "24 hexadecimal" in str(info.value)
    assert fake_ssemble.api_requests == []


async def test_unknown_id_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        await client.get_shorts("0123456789abcdef01234567")
    assert info.value.code == "resource_not_found"


@pytest.mark.parametrize("style", ["200", "204"])
async def test_delete_in_both_styles(style: str) -> None:
    async with (
        FakeSsembleAPI(delete_style=style) as fake,
        Client(  # type: ignore[arg-type]
            fake.api_key, base_url=fake.base_url
        ) as client,
    ):
        rid = fake.add_job(FakeJob())
        assert await client.delete_request(rid) is None
        assert rid not in fake.jobs
        with pytest.raises(NotFoundError):
            await client.delete_request(rid)
        await client.delete_request(rid, missing_ok=True)


async def test_missing_ok_never_hides_a_wrong_base_url(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    wrong = fake_ssemble.base_url.removesuffix("/api/v1")  # the API root forgotten
    async with Client(fake_ssemble.api_key, base_url=wrong) as client:
        with pytest.raises(NotFoundError, match="base_url"):
            await client.delete_request(rid, missing_ok=True)
    assert rid in fake_ssemble.jobs


@pytest.mark.parametrize("style", ["docs", "plan"])
async def test_list_requests_pages_through_everything(style: str) -> None:
    async with (
        FakeSsembleAPI(pagination_style=style) as fake,
        Client(  # type: ignore[arg-type]
            fake.api_key, base_url=fake.base_url
        ) as client,
    ):
        done = {fake.add_job(finished_job()) for _ in range(7)}
        running = {fake.add_job(FakeJob()) for _ in range(3)}
        seen = [item.request_id async for item in client.list_requests(page_size=3)]
        assert sorted(seen) == sorted(done | running)
        pages = [r for r in fake.api_requests if r.path.endswith("/shorts")]
        assert len(pages) == 4
        assert [r.query["limit"] for r in pages] == ["3"] * 4
        completed = [
            item.request_id
            async for item in client.list_requests(
                RequestState.COMPLETED, sort_by="updatedAt", sort_order="asc"
            )
        ]
        assert set(completed) == done
        query = fake.api_requests[-1].query
        assert (query["status"], query["sortBy"], query["sortOrder"]) == (
            "completed",
            "updatedAt",
            "asc",
        )


@pytest.mark.parametrize("style", ["docs", "plan"])
async def test_a_server_capping_its_page_size_is_paged_by_its_own_figures(style: str) -> None:
    async with (
        FakeSsembleAPI(pagination_style=style, max_page_size=20) as fake,  # type: ignore[arg-type]
        Client(fake.api_key, base_url=fake.base_url) as client,
    ):
        rids = {fake.add_job(finished_job()) for _ in range(45)}
        with anyio.fail_after(10):
            listed = [item.request_id async for item in client.list_requests(page_size=50)]
            music = [track.name async for track in client.list_music(page_size=50)]
        assert len(listed) == 45 and set(listed) == rids
        assert len(music) == len(set(music)) == 45
        calls = [r for r in fake.api_requests if r.path.endswith(("/shorts", "/music"))]
        assert [(r.query["page"], r.query["limit"]) for r in calls] == [
            (str(page), "50") for page in (1, 2, 3)
        ] * 2


@pytest.mark.parametrize("page_size", [20, 45, 100])
async def test_a_server_ignoring_page_without_pagination_ends_and_lists_once(
    page_size: int,
) -> None:
    async with (
        FakeSsembleAPI(pagination_style="none", ignore_page=True) as fake,
        Client(fake.api_key, base_url=fake.base_url) as client,
    ):
        with anyio.fail_after(10):
            music = [track.name async for track in client.list_music(page_size=page_size)]
        assert len(music) == len(set(music)) == min(page_size, 45)
        calls = [r for r in fake.api_requests if r.path.endswith("/music")]
        assert len(calls) == (2 if page_size <= 45 else 1)


async def test_a_server_ignoring_page_with_totals_stops_at_the_repeat() -> None:
    async with (
        FakeSsembleAPI(ignore_page=True) as fake,
        Client(fake.api_key, base_url=fake.base_url) as client,
    ):
        with anyio.fail_after(10):
            hooks = [hook.name async for hook in client.list_meme_hooks(page_size=50)]
        assert len(hooks) == len(set(hooks)) == 50
        assert len([r for r in fake.api_requests if r.path.endswith("/meme-hooks")]) == 2


async def test_list_requests_empty(client: Client) -> None:
    assert [item async for item in client.list_requests()] == []


async def test_page_size_is_checked_at_the_call(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="page_size"):
        client.list_music(page_size=0)
    with pytest.raises(InvalidArgumentError, match="page_size"):
        client.list_requests(page_size=101)


async def test_templates(client: Client) -> None:
    templates = await client.list_templates()
    assert len(templates) == 9
    (default,) = [t for t in templates if t.is_default]
    assert default.template_id == "660b8531aedb346bbe26eb43"
    assert all(t.display_name and t.preview for t in templates)


@pytest.mark.parametrize("style", ["docs", "plan"])
async def test_assets_page_to_the_end(style: str) -> None:
    async with (
        FakeSsembleAPI(pagination_style=style) as fake,
        Client(  # type: ignore[arg-type]
            fake.api_key, base_url=fake.base_url
        ) as client,
    ):
        music = [t async for t in client.list_music()]
        games = [g async for g in client.list_game_videos(page_size=100)]
        hooks = [h async for h in client.list_meme_hooks(page_size=50)]
        assert (len(music), len(games), len(hooks)) == (45, 30, 159)
        assert len({t.name for t in music}) == 45
        assert all(g.video_duration for g in games)
        assert len([r for r in fake.api_requests if r.path.endswith("/meme-hooks")]) == 4
