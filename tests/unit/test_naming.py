"""File names from templates and the choice of clips: pure rules, checked on many inputs."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async._naming import NAME_FIELDS, check_name_template, render_name
from ssemble_async._plan import (
    clip_file_names,
    is_clip_file_name,
    readable_stem,
    safe_name,
    select_clips,
)

titles = st.text(max_size=200)
ids = st.text(min_size=1, max_size=60)


@given(titles)
def test_a_readable_stem_is_safe_and_stable(title: str) -> None:
    stem = readable_stem(title)
    assert safe_name(stem) == stem  # safe: safe_name leaves it as it is
    assert is_clip_file_name(f"{stem}.mp4")
    assert ".." not in stem and "/" not in stem and "\\" not in stem
    assert readable_stem(stem) == stem


@pytest.mark.parametrize(
    ("title", "stem"),
    [
        ("Why I quit: my job!", "Why_I_quit_my_job"),
        ("087 - The hook", "087-The_hook"),
        ("../../etc/passwd", "etc_passwd"),
        ("nul", "_nul"),
        ("", "_"),
        ("...", "_"),
        ("v2.0 launch", "v2.0_launch"),
        ("Ça va? 日本", "a_va"),
    ],
)
def test_readable_stems_of_known_titles(title: str, stem: str) -> None:
    assert readable_stem(title) == stem


@given(
    st.dictionaries(ids, titles, min_size=1, max_size=30),
    st.dictionaries(ids, titles, max_size=10),
)
def test_file_names_are_distinct_ignoring_case_and_kept_names_stay(
    wanted: dict[str, str], earlier: dict[str, str]
) -> None:
    keep = clip_file_names(earlier, earlier)  # names given by an earlier run
    names = clip_file_names([*wanted, *keep], wanted, keep=keep)
    assert set(names) == set(wanted) | set(keep)
    assert len({name.casefold() for name in names.values()}) == len(names)
    assert all(is_clip_file_name(name) for name in names.values())
    assert all(names[clip_id] == name for clip_id, name in keep.items())
    assert clip_file_names([*wanted, *keep], wanted, keep=keep) == names  # deterministic


@attrs.frozen
class Scored:
    id: str
    viral_score: float | None


@given(
    st.lists(st.one_of(st.none(), st.floats(0, 100)), max_size=30),
    st.one_of(st.none(), st.integers(1, 40)),
    st.one_of(st.none(), st.floats(0, 100)),
)
def test_the_choice_takes_the_best_scores_at_or_above_the_floor(
    scores: list[float | None], top: int | None, min_score: float | None
) -> None:
    clips = sorted(
        (Scored(str(n), s) for n, s in enumerate(scores)),
        key=lambda c: (c.viral_score is None, -(c.viral_score or 0.0)),
    )
    chosen = select_clips(clips, top=top, min_score=min_score)
    eligible = [
        c
        for c in clips
        if min_score is None or (c.viral_score is not None and c.viral_score >= min_score)
    ]
    assert chosen == eligible[: top if top is not None else len(eligible)]
    assert all(c.viral_score is not None for c in chosen) or min_score is None


def test_every_field_can_be_used_and_nothing_else() -> None:
    template = "-".join(f"{{{field}}}" for field in NAME_FIELDS)
    check_name_template(template)
    values = {field: field.upper() for field in NAME_FIELDS}
    assert render_name(template, values) == "-".join(values.values())
    for bad in ("{title.upper}", "{title[0]}", "{}", "{0}", "{titel}", "{title!r:>{width}}"):
        with pytest.raises(ValueError, match=r"field|template|formatted"):
            check_name_template(bad)
