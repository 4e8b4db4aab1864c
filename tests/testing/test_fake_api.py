"""The fake API and clip host themselves, driven with a raw aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from ssemble_async.testing import ApiFault, ClipFault, FakeClip, FakeJob, FakeSsembleAPI, make_mp4

from ._api import UNKNOWN_ID, VALID_BODY, Api, running

pytestmark = pytest.mark.anyio

RATE_HEADERS = (
    "X-RateLimit-Limit-Hour",
    "X-RateLimit-Remaining-Hour",
    "X-RateLimit-Limit-Day",
    "X-RateLimit-Remaining-Day",
    "X-RateLimit-Reset",
)


@pytest.fixture
async def api(fake_ssemble: FakeSsembleAPI) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(fake_ssemble, session)


def done(**kwargs: Any) -> FakeJob:
    return FakeJob(steps=(), **kwargs)


# -- servers -------------------------------------------------------------------------------


async def test_fixture_serves_on_loopback_with_a_valid_looking_key(api: Api) -> None:
    fake = api.fake
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", fake.base_url)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.clip_base_url)
    assert re.fullmatch(r"sk_ssemble_[A-Za-z0-9]{32}", fake.api_key)
    assert (await api.call("GET", "/templates")).status == 200


async def test_instances_run_side_by_side_and_stop_cleanly() -> None:
    async with FakeSsembleAPI() as one, FakeSsembleAPI(api_key="sk_ssemble_x") as two:
        assert len({one.base_url, two.base_url, one.clip_base_url, two.clip_base_url}) == 4
        assert one.api_key != two.api_key == "sk_ssemble_x"
    with pytest.raises(RuntimeError, match="not running"):
        _ = one.base_url
    manual = FakeSsembleAPI()
    await manual.start()
    with pytest.raises(RuntimeError, match="already started"):
        await manual.start()
    await manual.close()
    await manual.close()


def test_scripting_errors() -> None:
    fake = FakeSsembleAPI()
    rid = fake.add_job(FakeJob())
    with pytest.raises(ValueError, match="already exists"):
        fake.add_job(FakeJob(request_id=rid))
    with pytest.raises(ValueError, match="distinct"):
        fake.add_job(FakeJob(clips=[FakeClip(clip_id="a"), FakeClip(clip_id="a")]))
    with pytest.raises(ValueError, match="must match"):
        FakeJob(request_id="not-an-object-id")
    with pytest.raises(ValueError, match="reads_per_step"):
        FakeJob(reads_per_step=0)


# -- auth, ids, routing --------------------------------------------------------------------


async def test_auth_headers(api: Api) -> None:
    missing = await api.call("GET", "/templates", headers={})
    wrong = await api.call("GET", "/templates", headers={"X-API-Key": "sk_ssemble_nope"})
    not_bearer = await api.call("GET", "/templates", headers={"Authorization": "Basic abc"})
    bearer = await api.call(
        "GET", "/templates", headers={"Authorization": f"Bearer {api.fake.api_key}"}
    )
    assert (missing.status, missing.code) == (401, "missing_api_key")
    assert (wrong.status, wrong.code) == (401, "invalid_api_key")
    assert (not_bearer.status, not_bearer.code) == (401, "missing_api_key")
    assert set(missing.body["error"]) == {"code", "message", "details"}
    assert bearer.status == 200
    for reply in (missing, wrong, bearer):
        assert all(name in reply.headers for name in RATE_HEADERS)
    # Only the authenticated call spent quota.
    assert int(bearer.headers["X-RateLimit-Remaining-Hour"]) == 100_000 - 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/shorts/{}/status"), ("GET", "/shorts/{}"), ("DELETE", "/shorts/{}")],
)
async def test_request_ids_are_validated(api: Api, method: str, path: str) -> None:
    malformed = await api.call(method, path.format("665a1b2c3d4e5f6a7b8c9d0"))
    unknown = await api.call(method, path.format(UNKNOWN_ID.upper()))
    assert (malformed.status, malformed.code) == (400, "invalid_request")
    assert (unknown.status, unknown.code) == (404, "resource_not_found")


async def test_unknown_routes_get_the_error_envelope(api: Api) -> None:
    no_route = await api.call("GET", "/nothing-here")
    wrong_method = await api.call("PUT", "/templates")
    assert (no_route.status, no_route.code) == (404, "resource_not_found")
    assert (wrong_method.status, wrong_method.code) == (405, "invalid_request")


async def test_requests_are_recorded(api: Api) -> None:
    await api.call("POST", "/shorts/create", json=VALID_BODY, params={"x": "1"})
    await api.call("POST", "/shorts/create", data=b"{oops", headers={"X-Trace": "t"})
    first, second = api.fake.api_requests
    assert (first.method, first.path, first.query) == ("POST", "/api/v1/shorts/create", {"x": "1"})
    assert first.json == VALID_BODY
    assert first.headers["x-api-key"] == api.fake.api_key
    assert second.json is None
    assert second.headers["X-TRACE"] == "t"


# -- lifecycle -----------------------------------------------------------------------------


async def test_a_job_advances_one_step_per_read(api: Api) -> None:
    rid = api.fake.add_job(FakeJob())
    assert await api.statuses(rid, 7) == [
        ("queued", "queued"),
        ("processing", "fetching_video"),
        ("processing", "transcribing_audio"),
        ("processing", "finding_highlights"),
        ("processing", "finalizing"),
        ("completed", "completed"),
        ("completed", "completed"),
    ]


async def test_status_body_in_docs_style(api: Api) -> None:
    rid = api.fake.add_job(FakeJob(reads_per_step=2, user_email="dev@example.org"))
    bodies = [await api.data("GET", f"/shorts/{rid}/status") for _ in range(3)]
    assert bodies[0] == {
        "_id": rid,
        "status": "queued",
        "step": "queued",
        "stepMessage": "Waiting in queue...",
        "progress": 0,
        "userEmail": "dev@example.org",
        "isDemo": False,
    }
    assert bodies[1]["step"] == "queued"
    assert bodies[2]["step"] == "fetching_video"
    assert bodies[2]["progress"] == 15


async def test_reads_of_the_full_request_count_too(api: Api) -> None:
    rid = api.fake.add_job(FakeJob(steps=(("finalizing", 90, "Rendering clips..."),)))
    running_job = await api.data("GET", f"/shorts/{rid}")
    finished = await api.data("GET", f"/shorts/{rid}")
    assert (running_job["status"], running_job["shorts"], running_job["sentences"]) == (
        "processing",
        [],
        [],
    )
    assert finished["status"] == "completed"
    assert len(finished["shorts"]) == 3
    assert api.fake.jobs[rid].status == "completed"


async def test_a_failed_job_reports_its_reason_only_when_failed(api: Api) -> None:
    rid = api.fake.add_job(FakeJob(steps=FakeJob().steps[:2], outcome="failed"))
    bodies = [await api.data("GET", f"/shorts/{rid}/status") for _ in range(3)]
    assert ["failureReason" in b for b in bodies] == [False, False, True]
    failed = {k: bodies[2][k] for k in ("status", "step", "stepMessage", "progress")}
    assert failed == {
        "status": "failed",
        "step": "failed",
        "stepMessage": "Processing failed",
        "progress": 0,
    }
    assert bodies[2]["failureReason"] == "Source file could not be downloaded (HTTP 403)"
    full = await api.data("GET", f"/shorts/{rid}")
    assert (full["status"], full["shorts"]) == ("failed", [])


async def test_cancelled_and_legacy_completed_words(api: Api) -> None:
    cancelled = api.fake.add_job(done(outcome="cancelled"))
    legacy = api.fake.add_job(done(status_word_completed="TASK_COMPLETE"))
    assert await api.statuses(cancelled, 1) == [("cancelled", "cancelled")]
    assert await api.statuses(legacy, 1) == [("TASK_COMPLETE", "completed")]
    full = await api.data("GET", f"/shorts/{legacy}")
    assert full["status"] == "TASK_COMPLETE"
    assert len(full["shorts"]) == 3
    listed = await api.data("GET", "/shorts", params={"status": "completed"})
    assert [r["requestId"] for r in listed["requests"]] == [legacy]


async def test_a_job_can_advance_by_wall_clock() -> None:
    async with running() as api:
        rid = api.fake.add_job(FakeJob(steps=FakeJob().steps[:2], seconds_per_step=0.5))
        first = await api.statuses(rid, 3)
        await asyncio.sleep(1.1)
        assert first == [("queued", "queued")] * 3
        assert await api.statuses(rid, 1) == [("completed", "completed")]
        listed = await api.data("GET", "/shorts")
        assert listed["requests"][0]["updatedAt"] > listed["requests"][0]["createdAt"]


# -- GET /shorts/:id -----------------------------------------------------------------------


async def test_full_request_has_every_documented_field(api: Api) -> None:
    clip = FakeClip(clip_id="f2c713ff-865f-4cd5-98ab-f6aa696a3620", viral_score=85)
    rid = api.fake.add_job(done(clips=[clip], project_id=None))
    data = await api.data("GET", f"/shorts/{rid}")
    assert list(data) == [
        *("_id", "status", "progress", "userEmail", "url", "start", "end", "title"),
        *("language", "template", "captionLanguage", "heatmap", "sentences"),
        *("preferredLength", "projectId", "shorts", "createdAt", "updatedAt"),
    ]
    assert data["_id"] == rid
    assert data["progress"] == 100
    assert data["sentences"][0] == {
        "index": 0,
        "sentence": "This is transcribed sentence 0.",
        "start": 12.5,
        "end": 16.9,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["createdAt"])
    (short,) = data["shorts"]
    assert short == {
        "id": clip.clip_id,
        "title": clip.title,
        "sentenceIndexes": [0, 1],
        "reason": clip.reason,
        "description": clip.description,
        "viral_score": 85,
        "video_url": api.fake.clip_url(rid, clip.clip_id),
        "startTimestamp": 12.5,
        "endTimestamp": 55.3,
        "duration": 43,
        "width": 1080,
        "height": 1920,
        "recompiling": False,
        "error": False,
        "errorMessage": None,
    }
    assert short["video_url"].startswith(api.fake.clip_base_url + "/")


async def test_requestid_style() -> None:
    async with running(id_key_style="requestId") as api:
        rid = api.fake.add_job(FakeJob(reads_per_step=3))
        status = await api.data("GET", f"/shorts/{rid}/status")
        full = await api.data("GET", f"/shorts/{rid}")
        assert status == {
            "requestId": rid,
            "status": "queued",
            "progress": 0,
            "message": "Waiting in queue...",
            "estimatedTimeRemaining": "10 minutes",
        }
        assert full["requestId"] == rid
        assert "_id" not in full
        finished = api.fake.add_job(done())
        last = await api.data("GET", f"/shorts/{finished}/status")
        assert last["estimatedTimeRemaining"] is None


async def test_error_clips_with_and_without_the_message_key(api: Api) -> None:
    clips = [
        FakeClip(clip_id="with", error=True, error_message="Render failed"),
        FakeClip(clip_id="without", error=True, omit_error_message=True),
        FakeClip(clip_id="fine", omit_error_message=True),
    ]
    rid = api.fake.add_job(done(clips=clips))
    shorts = {s["id"]: s for s in (await api.data("GET", f"/shorts/{rid}"))["shorts"]}
    assert (shorts["with"]["video_url"], shorts["with"]["errorMessage"]) == ("", "Render failed")
    assert shorts["without"]["video_url"] == ""
    assert shorts["without"]["error"] is True
    assert "errorMessage" not in shorts["without"]
    assert "errorMessage" not in shorts["fine"]
    assert api.fake.clip_url(rid, "with") == api.fake.expire_clip_url(rid, "with") == ""


async def test_a_fileurl_job_has_an_empty_url_and_a_fileurl(api: Api) -> None:
    rid = api.fake.add_job(done(url=None, file_url="https://cdn.example.org/v.mp4"))
    data = await api.data("GET", f"/shorts/{rid}")
    assert (data["url"], data["fileUrl"]) == ("", "https://cdn.example.org/v.mp4")
    (item,) = (await api.data("GET", "/shorts"))["requests"]
    assert "url" not in item


async def test_a_recompiling_clip_gets_a_new_url_after_k_reads(api: Api) -> None:
    clip = FakeClip(recompiling_reads=2)
    rid = api.fake.add_job(done(clips=[clip]))
    old_url = api.fake.clip_url(rid, clip.clip_id)
    seen: list[object] = []
    for _ in range(4):
        (short,) = (await api.data("GET", f"/shorts/{rid}"))["shorts"]
        seen.append((short["recompiling"], short["video_url"]))
        async with api.session.get(old_url) as resp:
            seen.append(resp.status)
    new_url = api.fake.clip_url(rid, clip.clip_id)
    assert new_url != old_url
    assert seen == [
        *((True, old_url), 200, (True, old_url), 200),
        *((False, new_url), 404, (False, new_url), 404),
    ]
    async with api.session.get(new_url) as resp:
        assert await resp.read() == api.fake.clip_bytes(rid, clip.clip_id)


# -- POST /shorts/create -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"url": None}, "invalid_request"),
        ({"fileUrl": "https://cdn.example.org/v.mp4"}, "invalid_request"),
        ({"url": "https://www.youtube.com/shorts/AbCdEfGhIjK"}, "invalid_youtube_url"),
        ({"url": "https://vimeo.com/123"}, "invalid_youtube_url"),
        ({"url": None, "fileUrl": "ftp://cdn.example.org/v.mp4"}, "invalid_request"),
        ({"url": 5}, "invalid_request"),
        ({"start": None}, "invalid_request"),
        ({"end": "600"}, "invalid_request"),
        ({"start": -1}, "invalid_request"),
        ({"start": 600}, "invalid_request"),
        ({"start": 100, "end": 100.5}, "invalid_request"),
        ({"end": 1201}, "invalid_request"),
        ({"start": 3650, "end": 3700}, "invalid_request"),
        ({"templateId": "karaoke"}, "invalid_request"),
        ({"templateId": UNKNOWN_ID}, "invalid_request"),
        ({"ctaEnabled": True}, "invalid_request"),
        ({"ctaText": "x" * 201}, "invalid_request"),
        ({"musicVolume": 101}, "invalid_request"),
        ({"musicVolume": True}, "invalid_request"),
        ({"music": "yes"}, "invalid_request"),
        ({"layout": "wide"}, "invalid_request"),
        ({"preferredLength": "under2min"}, "invalid_request"),
    ],
)
async def test_create_rejects_bad_bodies(api: Api, change: dict[str, Any], code: str) -> None:
    body = {k: v for k, v in (VALID_BODY | change).items() if v is not None}
    reply = await api.call("POST", "/shorts/create", json=body)
    assert (reply.status, reply.code) == (400, code)
    assert api.fake.jobs == {}


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
async def test_create_rejects_a_body_that_is_not_a_json_object(api: Api, raw: bytes) -> None:
    reply = await api.call("POST", "/shorts/create", data=raw)
    assert (reply.status, reply.code) == (400, "invalid_request")


async def test_create_in_mcode_style_makes_a_job_from_the_body(api: Api) -> None:
    body = VALID_BODY | {
        "templateId": "66FCC4C67769688A1D5AD08A",
        "ctaEnabled": True,
        "ctaText": "Full episode on our channel",
        "musicVolume": 12,
        "language": "tr",
        "layout": "fill",
    }
    reply = await api.call("POST", "/shorts/create", json=body)
    assert reply.status == 201
    data = reply.body["data"]
    rid = data["requestId"]
    assert data == {
        "requestId": rid,
        "status": "queued",
        "creditsUsed": 1,
        "estimatedCompletionTime": "5-30 minutes",
    }
    state = api.fake.jobs[rid]
    assert state.create_body == body
    assert (state.job.template, state.job.language, state.job.end) == ("hormozi2", "tr", 600)
    assert await api.statuses(rid, 1) == [("queued", "queued")]


async def test_create_trims_a_range_past_the_end_of_the_video(api: Api) -> None:
    body = VALID_BODY | {"start": 3000, "end": 4000}
    data = await api.data("POST", "/shorts/create", json=body)
    assert data["timeAdjustment"] == {
        "message": "End time exceeded video length and was clamped",
        "original": {"start": 3000, "end": 4000},
        "adjusted": {"start": 3000, "end": 3600},
        "videoDuration": 3600,
    }
    assert api.fake.jobs[data["requestId"]].job.end == 3600


async def test_create_in_plan_style_uses_the_auto_job() -> None:
    template = FakeJob(steps=(), clips=[FakeClip(title="only")], outcome="failed")
    async with running(create_style="plan", auto_job=template) as api:
        body = {"fileUrl": "https://cdn.example.org/v.mp4", "start": 0, "end": 60}
        data = await api.data("POST", "/shorts/create", json=body)
        assert set(data) == {"requestId", "status", "message", "estimatedTime"}
        job = api.fake.jobs[data["requestId"]].job
        assert (job.url, job.file_url, job.outcome) == (None, body["fileUrl"], "failed")
        assert [c.title for c in job.clips] == ["only"]
        assert data["requestId"] != template.request_id


# -- GET /shorts and DELETE ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "keys"),
    [
        ("docs", ("page", "limit", "totalPages", "totalCount")),
        ("plan", ("currentPage", "itemsPerPage", "totalPages", "totalItems")),
    ],
)
async def test_list_pages_and_filters(style: str, keys: tuple[str, ...]) -> None:
    async with running(pagination_style=style) as api:
        finished = [api.fake.add_job(done()) for _ in range(5)]
        queued = [api.fake.add_job(FakeJob()) for _ in range(2)]
        first = await api.data("GET", "/shorts", params={"limit": 2, "status": "completed"})
        page_key, limit_key, pages_key, total_key = keys
        assert first["pagination"] == {page_key: 1, limit_key: 2, pages_key: 3, total_key: 5}
        items = []
        for page in (1, 2, 3):
            params = {"limit": 2, "page": page, "status": "completed", "sortOrder": "asc"}
            items += (await api.data("GET", "/shorts", params=params))["requests"]
        assert [i["requestId"] for i in items] == finished
        assert items[0] == {
            "requestId": finished[0],
            "status": "completed",
            "progress": 100,
            "createdAt": items[0]["createdAt"],
            "updatedAt": items[0]["updatedAt"],
            "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "duration": 600,
        }
        default = await api.data("GET", "/shorts")
        assert [i["requestId"] for i in default["requests"]] == [*finished, *queued][::-1]
        assert default["pagination"][limit_key] == 20
        await api.statuses(queued[0], 1)
        by_update = await api.data("GET", "/shorts", params={"sortBy": "updatedAt"})
        assert by_update["requests"][0]["requestId"] == queued[0]


@pytest.mark.parametrize(
    "params",
    [
        {"page": 0},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"status": "done"},
        {"sortBy": "title"},
        {"sortOrder": "up"},
    ],
)
async def test_list_rejects_bad_parameters(api: Api, params: dict[str, Any]) -> None:
    reply = await api.call("GET", "/shorts", params=params)
    assert (reply.status, reply.code) == (400, "invalid_request")


@pytest.mark.parametrize(("style", "status"), [("200", 200), ("204", 204)])
async def test_delete_removes_the_job_and_its_clips(style: str, status: int) -> None:
    async with running(delete_style=style) as api:
        rid = api.fake.add_job(FakeJob())
        clip_id = next(iter(api.fake.jobs[rid].clips))
        url = api.fake.clip_url(rid, clip_id)
        reply = await api.call("DELETE", f"/shorts/{rid}")
        assert reply.status == status
        if status == 200:
            assert reply.body == {"data": {"message": "Request successfully deleted"}}
        else:
            assert reply.body == b""
        assert "X-RateLimit-Reset" in reply.headers
        assert rid not in api.fake.jobs
        assert (await api.call("GET", f"/shorts/{rid}")).status == 404
        async with api.session.get(url) as resp:
            assert resp.status == 404


# -- catalogues ----------------------------------------------------------------------------


async def test_templates(api: Api) -> None:
    data = await api.data("GET", "/templates")
    assert len(data["templates"]) == 9
    assert data["defaultTemplateId"] == "660b8531aedb346bbe26eb43"
    assert data["defaultTemplateName"] == "karaoke"
    karaoke = next(t for t in data["templates"] if t["templateId"] == data["defaultTemplateId"])
    assert set(karaoke) == {
        *("templateId", "name", "displayName", "thumbnail", "order", "preview", "gif"),
    }
    assert [t["order"] for t in data["templates"]] == list(range(9))


@pytest.mark.parametrize("style", ["docs", "plan"])
@pytest.mark.parametrize(
    ("path", "key", "count", "fields"),
    [
        ("/music", "music", 45, {"name", "duration"}),
        ("/game-videos", "gameVideos", 30, {"name", "preview", "video", "video_duration"}),
        ("/meme-hooks", "memeHooks", 159, {"name", "preview", "video", "video_duration"}),
    ],
)
async def test_assets_page_to_the_documented_counts(
    style: str, path: str, key: str, count: int, fields: set[str]
) -> None:
    async with running(pagination_style=style) as api:
        names: list[str] = []
        page = 1
        while True:
            data = await api.data("GET", path, params={"page": page, "limit": 50})
            names += [item["name"] for item in data[key]]
            assert all(fields <= set(item) for item in data[key])
            if page >= data["pagination"]["totalPages"]:
                break
            page += 1
        assert len(names) == len(set(names)) == count
        assert page == -(-count // 50)
        beyond = await api.data("GET", path, params={"page": page + 1, "limit": 50})
        assert beyond[key] == []


async def test_the_documented_asset_names_are_there(api: Api) -> None:
    music = await api.data("GET", "/music", params={"limit": 100})
    hooks = await api.data("GET", "/meme-hooks", params={"limit": 20})
    names = {m["name"] for m in music["music"]}
    assert {"Arms Dealer", "Blade Runner", "Feeling Blue", "Hell n Back"} <= names
    assert hooks["memeHooks"][0]["name"] == "Baby Vomit"
    assert hooks["pagination"]["totalPages"] == 8


# -- rate limits and faults ----------------------------------------------------------------


async def test_rate_limit_headers_count_down_to_a_429() -> None:
    async with running(hourly_limit=3, daily_limit=10) as api:
        replies = [await api.call("GET", "/templates") for _ in range(4)]
        assert [r.status for r in replies] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining-Hour"] for r in replies] == ["2", "1", "0", "0"]
        assert [r.headers["X-RateLimit-Remaining-Day"] for r in replies] == ["9", "8", "7", "7"]
        assert replies[3].code == "rate_limit_exceeded"
        assert replies[0].headers["X-RateLimit-Limit-Hour"] == "3"
        assert replies[0].headers["X-RateLimit-Limit-Day"] == "10"
        reset = replies[0].headers["X-RateLimit-Reset"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", reset)
        moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        assert timedelta(0) < moment - datetime.now(timezone.utc) <= timedelta(hours=1)


async def test_a_429_does_not_act(api: Api) -> None:
    rid = api.fake.add_job(FakeJob())
    api.fake.set_quota(remaining_hour=0)
    limited = await api.call("DELETE", f"/shorts/{rid}")
    assert (limited.status, limited.code) == (429, "rate_limit_exceeded")
    assert rid in api.fake.jobs
    api.fake.set_quota(remaining_day=0, remaining_hour=5)
    assert (await api.call("GET", "/templates")).status == 429


async def test_the_hourly_quota_returns_after_the_reset(api: Api) -> None:
    reset = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(milliseconds=200)
    api.fake.set_quota(remaining_hour=0, reset=reset)
    limited = await api.call("GET", "/templates")
    assert limited.status == 429
    assert re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{3}Z", limited.headers["X-RateLimit-Reset"])
    await asyncio.sleep(0.3)
    again = await api.call("GET", "/templates")
    assert again.status == 200
    assert again.headers["X-RateLimit-Remaining-Hour"] == str(100_000 - 1)


async def test_an_injected_fault_replaces_matching_requests(api: Api) -> None:
    rid = api.fake.add_job(FakeJob())
    api.fake.inject_api_fault(
        ApiFault(
            status=503,
            body=b"<html>Bad gateway</html>",
            content_type="text/html",
            headers={"Retry-After": "7"},
            times=2,
            path_prefix="/shorts/",
            method="get",
        )
    )
    templates = await api.call("GET", "/templates")
    deleted_path = await api.call("DELETE", f"/shorts/{UNKNOWN_ID}")
    async with api.session.get(f"{api.fake.base_url}/shorts/{rid}/status") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "X-RateLimit-Remaining-Hour" not in resp.headers
        assert await resp.read() == b"<html>Bad gateway</html>"
    second = await api.call("GET", f"/shorts/{rid}", headers={})
    assert second.status == 503
    assert (templates.status, deleted_path.status) == (200, 404)
    assert await api.statuses(rid, 1) == [("queued", "queued")]
    assert len(api.fake.api_requests) == 5
    assert templates.headers["X-RateLimit-Remaining-Hour"] == str(100_000 - 1)
    assert deleted_path.headers["X-RateLimit-Remaining-Hour"] == str(100_000 - 2)


async def test_a_delayed_fault_answers_late(api: Api) -> None:
    api.fake.inject_api_fault(ApiFault(delay=0.2))
    started = time.monotonic()
    reply = await api.call("GET", "/templates")
    assert reply.status == 502
    assert time.monotonic() - started >= 0.2


# -- clip host -----------------------------------------------------------------------------


@pytest.fixture
async def clip(api: Api) -> tuple[str, bytes]:
    rid = api.fake.add_job(done(clips=[FakeClip(clip_id="c1", size=200_000)]))
    return api.fake.clip_url(rid, "c1"), api.fake.clip_bytes(rid, "c1")


async def test_clip_host_serves_the_whole_file(api: Api, clip: tuple[str, bytes]) -> None:
    url, content = clip
    async with api.session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == content
        headers = resp.headers
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Content-Length"] == "200000"
    assert headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+"', headers["ETag"])
    assert headers["Last-Modified"].endswith(" GMT")
    (recorded,) = api.fake.clip_requests
    assert (recorded.method, recorded.path) == ("GET", url.removeprefix(api.fake.clip_base_url))
    assert "X-API-Key" not in recorded.headers


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=150000-", 150_000, 199_999),
        ("bytes=-500", 199_500, 199_999),
        ("bytes=-999999", 0, 199_999),
        ("bytes=199990-300000", 199_990, 199_999),
    ],
)
async def test_clip_host_honours_a_single_range(
    api: Api, clip: tuple[str, bytes], header: str, first: int, last: int
) -> None:
    url, content = clip
    async with api.session.get(url, headers={"Range": header}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/200000"
        assert await resp.read() == content[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=200000-", "bytes=-0"])
async def test_clip_host_refuses_an_unsatisfiable_range(
    api: Api, clip: tuple[str, bytes], header: str
) -> None:
    async with api.session.get(clip[0], headers={"Range": header}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == "bytes */200000"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "items=0-9", "bytes=9-0", "bytes=-"])
async def test_clip_host_ignores_a_range_it_cannot_read(
    api: Api, clip: tuple[str, bytes], header: str
) -> None:
    async with api.session.get(clip[0], headers={"Range": header}) as resp:
        assert resp.status == 200
        assert len(await resp.read()) == 200_000


async def test_clip_host_honours_if_range(api: Api, clip: tuple[str, bytes]) -> None:
    url, content = clip
    async with api.session.head(url) as head:
        etag, modified = head.headers["ETag"], head.headers["Last-Modified"]
        assert head.headers["Content-Length"] == "200000"
        assert await head.read() == b""
    for validator, status in ((etag, 206), (modified, 206), ('"stale"', 200)):
        headers = {"Range": "bytes=100-", "If-Range": validator}
        async with api.session.get(url, headers=headers) as resp:
            assert resp.status == status
            assert await resp.read() == content[100 if status == 206 else 0 :]


async def test_clip_host_404s_unknown_tokens_and_needs_no_auth(
    api: Api, clip: tuple[str, bytes]
) -> None:
    good = clip[0]
    token = good.removeprefix(api.fake.clip_base_url + "/").split("/")[0]
    for url in (good.replace(token, "0" * len(token)), api.fake.clip_base_url + "/"):
        async with api.session.get(url) as resp:
            assert resp.status == 404
            assert "NoSuchKey" in await resp.text()
    async with api.session.get(good, headers={"Authorization": "Bearer whatever"}) as resp:
        assert resp.status == 200
    assert api.fake.clip_requests[-1].headers["authorization"] == "Bearer whatever"


async def test_an_expired_url_gives_way_to_a_new_one(api: Api, clip: tuple[str, bytes]) -> None:
    old = clip[0]
    rid = next(iter(api.fake.jobs))
    new = api.fake.expire_clip_url(rid, "c1")
    assert new == api.fake.clip_url(rid, "c1") != old
    async with api.session.get(old) as resp:
        assert resp.status == 404
    async with api.session.get(new) as resp:
        assert await resp.read() == clip[1]


async def test_a_hostile_clip_id_is_served_under_a_quoted_name(api: Api) -> None:
    rid = api.fake.add_job(done(clips=[FakeClip(clip_id="../x y", content=b"tiny")]))
    url = api.fake.clip_url(rid, "../x y")
    assert url.endswith("/..%2Fx%20y.mp4")
    async with api.session.get(url) as resp:
        assert await resp.read() == b"tiny"


async def test_clip_faults(api: Api, clip: tuple[str, bytes]) -> None:
    url, content = clip
    fake = api.fake
    fake.inject_clip_fault(ClipFault(clip_id="other", status=500))
    fake.inject_clip_fault(ClipFault(status=403, body=b"<h1>expired</h1>", times=2))
    fake.inject_clip_fault(ClipFault(truncate_at=1000))
    fake.inject_clip_fault(ClipFault(ignore_range=True))
    fake.inject_clip_fault(ClipFault(stall_at=10, stall_seconds=0.2))
    for _ in range(2):
        async with api.session.get(url) as resp:
            assert (resp.status, await resp.read()) == (403, b"<h1>expired</h1>")
    async with api.session.get(url) as resp:
        assert resp.headers["Content-Length"] == "200000"
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    async with api.session.get(url, headers={"Range": "bytes=5-"}) as resp:
        assert resp.status == 200
        assert await resp.read() == content
    started = time.monotonic()
    async with api.session.get(url) as resp:
        assert await resp.read() == content
    assert time.monotonic() - started >= 0.2
    async with api.session.get(url) as resp:
        assert resp.status == 200


async def test_clip_bytes_sent_counts_the_body_bytes_of_each_get(
    api: Api, clip: tuple[str, bytes]
) -> None:
    url, content = clip
    fake = api.fake
    rid = next(iter(fake.jobs))
    other = fake.add_job(done(clips=[FakeClip(clip_id="c1", size=70_000)]))
    assert fake.clip_bytes_sent == {}
    async with api.session.get(url) as resp:
        assert await resp.read() == content
    assert fake.clip_bytes_sent == {(rid, "c1"): 200_000}
    async with api.session.get(url, headers={"Range": "bytes=150000-"}) as resp:
        assert resp.status == 206
    async with api.session.head(url) as resp:  # a HEAD sends no body
        assert resp.status == 200
    assert fake.clip_bytes_sent == {(rid, "c1"): 250_000}
    fake.inject_clip_fault(ClipFault(truncate_at=70_000))  # counted up to the cut
    async with api.session.get(url) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    fake.inject_clip_fault(ClipFault(status=503))  # an error page is not the clip's body
    async with api.session.get(url) as resp:
        assert resp.status == 503
    async with api.session.get(fake.clip_url(other, "c1")) as resp:  # same id, other request
        assert len(await resp.read()) == 70_000
    assert fake.clip_bytes_sent == {(rid, "c1"): 320_000, (other, "c1"): 70_000}


# -- make_mp4 ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [40, 41, 1000, 64 * 1024 + 7, 5 * 1024 * 1024])
def test_make_mp4_builds_boxes_of_the_exact_size(size: int) -> None:
    data = make_mp4(size, seed="s")
    assert len(data) == size
    assert data[:32] == (
        struct.pack(">I", 0x20) + b"ftypisom" + bytes.fromhex("00000200") + b"isomiso2avc1mp41"
    )
    assert data[32:40] == struct.pack(">I", size - 32) + b"mdat"


def test_make_mp4_is_deterministic_and_fast() -> None:
    started = time.monotonic()
    big = make_mp4(8 * 1024 * 1024, seed="a")
    assert time.monotonic() - started < 1
    assert big == make_mp4(8 * 1024 * 1024, seed="a")
    assert make_mp4(4096, seed="a") != make_mp4(4096, seed="b")
    assert len(set(make_mp4(4096, seed="a")[40:])) > 200
    with pytest.raises(ValueError, match="size"):
        make_mp4(39, seed="a")
