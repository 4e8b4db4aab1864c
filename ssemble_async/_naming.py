"""File-name templates (``--name "{score:03.0f}-{title}"``): the fields and their check.

Standard library only: the command line checks a template before anything heavy loads.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

__all__ = ["NAME_FIELDS", "check_name_template", "render_name"]

#: The fields a file-name template may use (``--name "{score:03.0f}-{title}"``).
NAME_FIELDS: Mapping[str, str] = {
    "clip_id": "the clip id",
    "title": "the clip's title",
    "score": "the clip's viral score (0 when the server sent none)",
    "rank": "1 for the highest score of the request, 2 for the next...",
    "duration": "the clip's length in seconds (0 when not sent)",
    "request_id": "the request id",
}
_SAMPLE: Mapping[str, Any] = {
    "clip_id": "c0ffee00-0000-4000-8000-000000000000",
    "title": "A title",
    "score": 87.5,
    "rank": 1,
    "duration": 42.0,
    "request_id": "665a1b2c3d4e5f6a7b8c9d0e",
}
#: The largest width or precision a format spec may ask for (a file name is cut to 80
#: characters anyway; ``{title:>999999999}`` would build a gigabyte for each clip).
MAX_SPEC_NUMBER = 255
_NUMBERS = re.compile(r"[0-9]+")


def check_name_template(template: str) -> None:
    """Refuse a file-name template that names an unknown field or cannot be formatted.

    Only plain fields of `NAME_FIELDS` with an optional format spec are allowed: no
    attribute or index access (``{title.upper}``, ``{title[0]}``), no positional fields.

    Raises:
        ValueError: says what is wrong and names the fields allowed (not the template).
    """
    fields = ", ".join(NAME_FIELDS)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a name template ({exc}); the fields are {fields}") from None
    if any(spec and "{" in spec for _, _, spec, _ in parsed):
        raise ValueError(f"a format spec cannot hold a field; the fields are {fields}")
    for _, _, spec, _ in parsed:
        # a fill character may be a digit too: any run of digits counts (before formatting)
        if spec and any(int(n) > MAX_SPEC_NUMBER for n in _NUMBERS.findall(spec)):
            raise ValueError(
                f"a format spec asks for a width or precision over {MAX_SPEC_NUMBER}"
                " (file names are cut to 80 characters)"
            )
    used = [field for _, field, _, _ in parsed if field is not None]
    if not used:
        raise ValueError(f"uses no field; use some of {fields}, e.g. {{title}}")
    for field in used:
        if field not in NAME_FIELDS:
            raise ValueError(f"unknown field {{{field}}}; the fields are {fields}")
    try:
        template.format_map(_SAMPLE)
    except (ValueError, TypeError, LookupError) as exc:
        raise ValueError(f"cannot be formatted: {exc}") from None


def render_name(template: str, fields: Mapping[str, Any]) -> str:
    """The template filled in (checked beforehand with `check_name_template()`)."""
    return template.format_map(fields)
