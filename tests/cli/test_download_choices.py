"""``ssemble download --dry-run``, ``--top``, ``--min-score`` and ``--name``, as subprocesses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

from ._support import assert_one_line_error, ssemble

pytestmark = pytest.mark.anyio


def scored_job(fake: FakeSsembleAPI) -> str:
    clips = (
        FakeClip(title="The hook: part 1", viral_score=88.4, size=70_001),
        FakeClip(title="Second best", viral_score=61, size=80_021),
        FakeClip(title="Low", viral_score=20, size=90_007),
    )
    return fake.add_job(FakeJob(steps=(), clips=clips))


async def test_dry_run_says_what_would_be_fetched_and_writes_nothing(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = scored_job(fake_ssemble)
    dest = tmp_path / "out"
    fake_ssemble.reset_counters()
    result = await ssemble("download", rid, "-o", str(dest), "--dry-run", fake=fake_ssemble)
    assert result.code == 0, result.err
    assert not dest.exists()
    assert sum(fake_ssemble.calls.values()) == 1
    last = result.out.strip().splitlines()[-1]
    assert re.match(r"would fetch 3 clips \(234(\.\d)? KiB\) into ", last), last
    assert last.endswith("nothing was written")
    for clip in fake_ssemble.jobs[rid].job.clips:
        assert clip.clip_id in result.out.replace("\n", "")


async def test_dry_run_as_json_and_quiet(fake_ssemble: FakeSsembleAPI, tmp_path: Path) -> None:
    rid = scored_job(fake_ssemble)
    done = await ssemble("download", rid, "-o", str(tmp_path), "--top", "1", fake=fake_ssemble)
    assert done.code == 0, done.err
    result = await ssemble(
        "download", rid, "-o", str(tmp_path), "--dry-run", "--json", fake=fake_ssemble
    )
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["dry_run"] is True
    assert data["to_fetch"] == 80_021 + 90_007
    assert [c["action"] for c in data["clips"]] == ["present", "download", "download"]
    assert data["counts"]["present"] == 1
    quiet = await ssemble(
        "download", rid, "-o", str(tmp_path), "--dry-run", "-q", fake=fake_ssemble
    )
    assert quiet.code == 0, quiet.err
    assert quiet.out.splitlines() == [c["path"] for c in data["clips"][1:]]


async def test_dry_run_of_a_request_not_done_exits_1_unless_it_would_wait(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    queued = fake_ssemble.add_job(FakeJob(reads_per_step=100))
    result = await ssemble("download", queued, "-o", str(tmp_path), "--dry-run", fake=fake_ssemble)
    assert result.code == 1
    assert f"not_ready: request {queued} is queued" in result.err
    waits = await ssemble(
        "download", queued, "-o", str(tmp_path), "--dry-run", "--wait", fake=fake_ssemble
    )
    assert waits.code == 0, waits.err
    assert "the download would wait for it" in waits.err


async def test_top_min_score_and_name_shape_the_download(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = scored_job(fake_ssemble)
    result = await ssemble(
        "download",
        rid,
        "-o",
        str(tmp_path),
        "--min-score",
        "50",
        "--top",
        "5",
        "--name",
        "{score:03.0f}-{title}",
        "-q",
        fake=fake_ssemble,
    )
    assert result.code == 0, result.err
    expected = [tmp_path / rid / "088-The_hook_part_1.mp4", tmp_path / rid / "061-Second_best.mp4"]
    assert sorted(result.out.splitlines()) == sorted(str(p) for p in expected)
    assert sorted(tmp_path.rglob("*.mp4")) == sorted(expected)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (
            ["--name", "{title.__class__}"],
            "argument --name: '{title.__class__}' is not a name template: unknown field",
        ),
        (["--name", "clip"], "argument --name: 'clip' is not a name template: uses no field"),
        (["--top", "0"], "argument --top: must be 1 or more, got 0"),
        (["--min-score", "high"], "argument --min-score: 'high' is not a score"),
    ],
)
async def test_bad_choices_are_usage_errors_before_any_call(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, flags: list[str], needle: str
) -> None:
    rid = scored_job(fake_ssemble)
    fake_ssemble.reset_counters()
    result = await ssemble("download", rid, "-o", str(tmp_path), *flags, fake=fake_ssemble)
    assert result.code == 2
    assert_one_line_error(result, needle)
    assert sum(fake_ssemble.calls.values()) == 0
