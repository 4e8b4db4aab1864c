"""Download planning (pure, no I/O): safe names and response checks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

import attrs

__all__ = [
    "ContentRange",
    "clip_file_names",
    "is_clip_content_type",
    "is_clip_file_name",
    "looks_like_mp4",
    "parse_content_range",
    "readable_stem",
    "safe_name",
    "select_clips",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_STEM = 80
_MAX_NAME = 100
# Device names Windows opens instead of a file when they are the part of a name before its
# first dot, in any case and with any extension ("nul.mp4" is NUL). CONIN$, CONOUT$ and the
# superscript-digit forms (COM¹...) cannot occur: "$" and non-ASCII are always replaced.
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}
CLIP_CONTENT_TYPES = ("application/octet-stream", "binary/octet-stream")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _is_reserved(name: str) -> bool:
    return name.split(".", maxsplit=1)[0].upper() in _RESERVED


def _is_safe(name: str) -> bool:
    return (
        0 < len(name) <= _MAX_NAME
        and _UNSAFE.search(name) is None
        and not name.startswith(".")
        and not name.endswith(".")
        and not _is_reserved(name)
    )


def _marked(base: str, key: str) -> str:
    """``base`` (safe characters only) without leading dots, cut to 80, ``-``, hash of ``key``.

    Ending in the hash, the result never ends with a dot; when the part before its first dot
    is a device name (``nul.mp4-<hash>``), a leading ``_`` makes it an ordinary name.
    """
    stem = f"{base.lstrip('.')[:_MAX_STEM] or '_'}-{_digest(key)}"
    return f"_{stem}" if _is_reserved(stem) else stem


def safe_name(value: str) -> str:
    """A file-name stem for an id: the id itself when it is safe, else a marked safe form.

    Safe means ASCII letters, digits, ``.``, ``_`` and ``-`` only, not starting or ending
    with a dot, at most 100 characters, and a part before the first dot that is not a
    Windows device name (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``,
    ``LPT0``-``LPT9``, in any case), so that neither the stem nor ``<stem>.mp4`` nor
    ``<stem>.mp4.part`` names a device. Anything else is replaced (and cut to 80
    characters) and a hash of the original id is appended, so two different ids never share
    a stem unless one of them is itself the marked form of the other, and the result is
    itself safe (``safe_name(safe_name(x)) == safe_name(x)``).
    """
    if _is_safe(value):
        return value
    return _marked(_UNSAFE.sub("_", value), value)


def clip_file_names(
    clip_ids: Iterable[str],
    wanted: Mapping[str, str] | None = None,
    keep: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Map each clip id of one request to a distinct ``<stem>.mp4`` file name.

    The stem is ``wanted[clip_id]`` made safe by `readable_stem()` when given (a name
    from a template), else the id made safe by `safe_name()`. Stems differ even on
    case-insensitive file systems: a stem that only differs in case from one taken earlier
    (also one made by such a clash) is replaced by a marked form (``<stem>-<hash of the
    id>``), hashed again with a counter until it is free. ``keep`` maps clips to the names
    they were given before (each a safe ``<stem>.mp4``, see `is_clip_file_name()`): they
    keep them, and no other clip takes one of them.
    """
    wanted = wanted or {}
    names: dict[str, str] = dict(keep or {})
    taken = {name[: -len(".mp4")].casefold() for name in names.values()}
    for clip_id in clip_ids:
        if clip_id in names:
            continue
        stem = readable_stem(wanted[clip_id]) if clip_id in wanted else safe_name(clip_id)
        clashes = 0
        while stem.casefold() in taken:
            clashes += 1
            base = readable_stem(wanted[clip_id]) if clip_id in wanted else safe_name(clip_id)
            stem = _marked(base, clip_id + "\x00" * (clashes - 1))
        taken.add(stem.casefold())
        names[clip_id] = f"{stem}.mp4"
    return names


def is_clip_file_name(name: str) -> bool:
    """True for a name this module gives: a safe stem (see `safe_name()`) and ``.mp4``."""
    return name.endswith(".mp4") and _is_safe(name[: -len(".mp4")])


_RUNS = re.compile(r"[^A-Za-z0-9._-]+")
_SEPARATORS = re.compile(r"[._-]{2,}")


def readable_stem(value: str) -> str:
    """A safe file-name stem that stays readable: ``"Why I quit: my job!"`` ->
    ``Why_I_quit_my_job``.

    Every run of characters other than ASCII letters, digits, ``.``, ``_`` and ``-``
    becomes one ``_``; then a run of two or more of ``.``, ``_``, ``-`` becomes one ``-``
    (when it holds one) or ``_`` (so ``../`` leaves no ``..``); leading and trailing dots
    and ``_`` go; the stem is cut to 80 characters; an empty result is ``_``; a Windows
    device name gets a leading ``_``. The result is safe in the sense of
    `safe_name()` (which returns it unchanged).
    """
    stem = _SEPARATORS.sub(lambda run: "-" if "-" in run[0] else "_", _RUNS.sub("_", value))
    stem = stem.strip("._")[:_MAX_STEM].rstrip("._") or "_"
    return f"_{stem}" if _is_reserved(stem) else stem


class _Scored(Protocol):
    @property
    def viral_score(self) -> float | None: ...


Clip = TypeVar("Clip", bound=_Scored)


def select_clips(
    by_score: Sequence[Clip], *, top: int | None = None, min_score: float | None = None
) -> list[Clip]:
    """The clips a download takes: those scoring at least ``min_score`` (clips without a
    score do not, when it is set), then the first ``top`` of them (``by_score`` is highest
    first)."""
    chosen = [
        c
        for c in by_score
        if min_score is None or (c.viral_score is not None and c.viral_score >= min_score)
    ]
    return chosen if top is None else chosen[:top]


def is_clip_content_type(content_type: str | None) -> bool:
    """True for ``video/*``, octet streams, or no content type at all."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("video/") or kind in CLIP_CONTENT_TYPES


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) opens with an ISO-BMFF ``ftyp`` box."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


@attrs.frozen
class ContentRange:
    """A parsed ``Content-Range: bytes first-last/total`` (total None when ``*``)."""

    first: int
    last: int
    total: int | None


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", re.IGNORECASE)


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse a ``Content-Range`` header; None when absent or malformed."""
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value)
    if match is None:
        return None
    first, last, total = match.groups()
    result = ContentRange(int(first), int(last), None if total == "*" else int(total))
    if result.last < result.first or (result.total is not None and result.last >= result.total):
        return None
    return result
