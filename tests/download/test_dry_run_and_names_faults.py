"""Dry runs held to what the download does, and file-name templates that try to do harm."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssemble_async import Client, InvalidArgumentError
from ssemble_async._naming import check_name_template
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("choice", [{"min_score": 99.0}, {"top": 1, "min_score": 95.0}])
async def test_a_dry_run_of_a_finished_folder_reads_no_more_than_the_download(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path, choice: dict[str, float]
) -> None:
    clips = (FakeClip(viral_score=80), FakeClip(viral_score=60))
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=clips))
    await client.download_many([rid], tmp_path)  # every clip is there now
    fake_ssemble.reset_counters()
    report = await client.download_many([rid], tmp_path, **choice)  # type: ignore[arg-type]
    assert not report.outcomes
    assert sum(fake_ssemble.calls.values()) == 0  # told from the manifest alone
    plan = await client.plan_downloads([rid], tmp_path, **choice)  # type: ignore[arg-type]
    assert not plan.clips and not plan.request_errors
    assert sum(fake_ssemble.calls.values()) == 0, fake_ssemble.calls  # nor the dry run


@pytest.mark.parametrize(
    "template",
    [
        "{title:>99999999}",  # a width of 100 million: a 100 MB name for each clip
        "{score:.99999999f}",
        "{rank:099999999}",
        "{duration:_>99999999.1f}",
    ],
)
def test_a_template_with_a_huge_width_or_precision_is_refused(template: str) -> None:
    # (not 999999999: that would take a gigabyte today just to check the template)
    with pytest.raises(ValueError, match=r"width|precision"):
        check_name_template(template)


async def test_a_download_refuses_a_huge_width_before_any_call(
    fake_ssemble: FakeSsembleAPI, client: Client, tmp_path: Path
) -> None:
    rid = fake_ssemble.add_job(FakeJob(steps=(), clips=(FakeClip(viral_score=80),)))
    fake_ssemble.reset_counters()
    with pytest.raises(InvalidArgumentError):
        await client.download_many([rid], tmp_path, name="{title:>99999999}")
    assert sum(fake_ssemble.calls.values()) == 0


@pytest.mark.parametrize(
    "template", ["{title:>20}", "{score:08.3f}", "{rank:03d}-{title:.40}", "{title:*^30}"]
)
def test_ordinary_widths_are_still_allowed(template: str) -> None:
    check_name_template(template)
