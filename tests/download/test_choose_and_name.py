"""Choosing clips (``top``, ``min_score``) and naming files from a template (``name``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssemble_async import Client, ClipState, InvalidArgumentError
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from .conftest import assert_files_match, final_files

pytestmark = pytest.mark.anyio

SCORED = (
    FakeClip(title="Why I quit: my job!", viral_score=91.5),
    FakeClip(title="Why I quit: my job!", viral_score=77),  # the same title twice
    FakeClip(title="../../etc/passwd", viral_score=64),
    FakeClip(title="CON", viral_score=40),
    FakeClip(title="", viral_score=12),
)


def job(fake: FakeSsembleAPI, clips: tuple[FakeClip, ...] = SCORED) -> str:
    return fake.add_job(FakeJob(steps=(), clips=clips))


async def test_top_and_min_score_download_only_the_chosen_clips(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble)
    report = await client.download_many([rid], tmp_path, top=2, min_score=50)
    assert sorted(o.viral_score or 0 for o in report.outcomes) == [77, 91.5]
    assert report.ok and len(final_files(tmp_path)) == 2
    assert_files_match(fake_ssemble, report)
    report = await client.download_many([rid], tmp_path, min_score=60)
    assert sorted(o.viral_score or 0 for o in report.outcomes) == [64, 77, 91.5]
    assert report.counts()[ClipState.ALREADY_PRESENT] == 2
    assert report.counts()[ClipState.DOWNLOADED] == 1


async def test_a_chosen_subset_never_passes_for_the_whole_request(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble)
    await client.download_many([rid], tmp_path, top=1)
    fake_ssemble.reset_counters()
    report = await client.download_many([rid], tmp_path)
    assert report.counts()[ClipState.DOWNLOADED] == 4
    assert report.counts()[ClipState.ALREADY_PRESENT] == 1
    # once all are there, a chosen subset is told from the manifest alone, no API read
    fake_ssemble.reset_counters()
    report = await client.download_many([rid], tmp_path, top=3)
    assert sum(fake_ssemble.calls.values()) == 0
    assert [o.viral_score for o in report.outcomes] == [91.5, 77, 64]


async def test_names_from_a_template_are_safe_distinct_and_keep_the_clip_id_inside(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble)
    report = await client.download_many([rid], tmp_path, name="{rank:02d}-{score:03.0f}-{title}")
    assert report.ok
    assert_files_match(fake_ssemble, report)
    names = sorted(path.name for path in final_files(tmp_path))
    assert names[0] == "01-092-Why_I_quit_my_job.mp4"
    assert names[1] == "02-077-Why_I_quit_my_job.mp4"
    assert names[2] == "03-064-etc_passwd.mp4"
    assert all(path.parent == tmp_path / rid for path in final_files(tmp_path))
    assert len({name.casefold() for name in names}) == len(SCORED)
    manifest = json.loads((tmp_path / rid / "manifest.json").read_text())
    for outcome in report.outcomes:
        assert outcome.path is not None
        sidecar = json.loads(outcome.path.with_name(outcome.path.name + ".json").read_text())
        assert outcome.clip_id in json.dumps(sidecar)
        assert manifest["clips"][outcome.clip_id]["file"] == outcome.path.name


async def test_a_complete_file_keeps_its_name_when_the_template_changes(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = job(fake_ssemble)
    first = await client.download_many([rid], tmp_path, top=2)
    again = await client.download_many([rid], tmp_path, name="{title}")
    assert again.ok
    assert_files_match(fake_ssemble, again)
    kept = {o.clip_id: o.path for o in first.outcomes}
    for outcome in again.outcomes:
        if outcome.clip_id in kept:
            assert outcome.state is ClipState.ALREADY_PRESENT
            assert outcome.path == kept[outcome.clip_id]
        else:
            assert outcome.state is ClipState.DOWNLOADED
    assert len(final_files(tmp_path)) == len(SCORED)


async def test_a_template_naming_another_clips_file_never_takes_it(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    first_id = "4c1b8f2e-0d3a-4e59-9f1a-7b2c6d8e0f11"
    # the second clip's title is the first clip's file name (without .mp4)
    clips = (FakeClip(clip_id=first_id, viral_score=90), FakeClip(title=first_id, viral_score=80))
    rid = job(fake_ssemble, clips)
    await client.download_many([rid], tmp_path, top=1)  # the first gets <clip id>.mp4
    report = await client.download_many([rid], tmp_path, name="{title}")
    assert report.ok
    paths = {o.clip_id: o.path for o in report.outcomes}
    assert paths[first_id] == tmp_path / rid / f"{first_id}.mp4"
    assert len(set(paths.values())) == 2
    assert_files_match(fake_ssemble, report)


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"name": "{title.__class__}"}, "unknown field {title.__class__}"),
        ({"name": "{0}"}, "unknown field {0}"),
        ({"name": "plain"}, "uses no field"),
        ({"name": "{score:d}"}, "cannot be formatted"),
        ({"name": "{title"}, "not a name template"),
        ({"top": 0}, "top must be 1 or more"),
        ({"top": True}, "top must be a whole number"),
        ({"min_score": float("nan")}, "min_score must be a finite number"),
    ],
)
async def test_bad_choices_are_refused_before_any_call(
    fake_ssemble: FakeSsembleAPI,
    client: Client,
    tmp_path: Path,
    kwargs: dict[str, object],
    said: str,
) -> None:
    rid = job(fake_ssemble)
    fake_ssemble.reset_counters()
    with pytest.raises(InvalidArgumentError, match=said.replace("{", r"\{").replace(".", r"\.")):
        await client.download_many([rid], tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await client.plan_downloads([rid], tmp_path, **kwargs)  # type: ignore[arg-type]
    assert sum(fake_ssemble.calls.values()) == 0
    assert not any(tmp_path.iterdir())
