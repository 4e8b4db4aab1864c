"""The one cattrs converter, and parsing of response bodies into models (pure, no I/O).

Parsing is lenient where the API reference says the server varies (section 6): each model
attribute lists the wire keys it may come under, unknown keys are ignored (or kept in
``extra``), nulls mean "absent", numbers may come as int, float or numeric strings. A body
that still does not fit raises [`ResponseValidationError`][ssemble_async.ResponseValidationError]
with a readable account.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationNote
from cattrs.gen import make_dict_structure_fn

from ssemble_async._errors import ResponseValidationError, snippet_of
from ssemble_async._ids import is_hex24
from ssemble_async._models import (
    DEFAULT_TEMPLATE_ID,
    DEFAULT_TEMPLATE_NAME,
    CreatedRequest,
    GameVideo,
    MemeHook,
    MusicTrack,
    Pagination,
    RequestState,
    RequestStatus,
    RequestSummary,
    Sentence,
    Short,
    ShortsRequest,
    Template,
    WebhookEvent,
    WebhookShort,
)
from ssemble_async._ratelimit import parse_timestamp

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PAGES",
    "MAX_WEBHOOK_BYTES",
    "Page",
    "PageStep",
    "converter",
    "parse_created",
    "parse_page",
    "parse_shorts_request",
    "parse_status",
    "parse_templates",
    "parse_webhook",
    "step_after_page",
]

T = TypeVar("T")

#: API JSON bodies larger than this are refused instead of parsed (clips never go here).
MAX_BODY_BYTES = 32 * 1024 * 1024


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Wire keys per attribute, in order of preference, where they are not simply the camelCase
# of the attribute name (which is always tried, after these).
_ID_KEYS = ("requestId", "_id", "id")
_ALIASES: dict[type[Any], dict[str, tuple[str, ...]]] = {
    ShortsRequest: {"request_id": _ID_KEYS, "status_raw": ("status",)},
    RequestStatus: {"request_id": _ID_KEYS, "status_raw": ("status",)},
    CreatedRequest: {
        "request_id": _ID_KEYS,
        "status_raw": ("status",),
        "estimated_time": ("estimatedTime", "estimatedCompletionTime"),
    },
    RequestSummary: {"request_id": _ID_KEYS, "status_raw": ("status",)},
    Sentence: {"text": ("sentence", "text")},
    Short: {
        "viral_score": ("viral_score", "viralScore"),
        "video_url": ("video_url", "videoUrl"),
        "error_message": ("errorMessage", "error_message"),
    },
    Template: {"preview": ("preview", "previewUrl", "thumbnail")},
    GameVideo: {"preview": ("preview", "previewUrl"), "video_duration": ("video_duration",)},
    MemeHook: {"preview": ("preview", "previewUrl"), "video_duration": ("video_duration",)},
    WebhookShort: {
        "video_url": ("video_url", "videoUrl"),
        "viral_score": ("viral_score", "viralScore"),
    },
    WebhookEvent: {"request_id": _ID_KEYS, "status_raw": ("status",)},
    Pagination: {
        "page": ("page", "currentPage"),
        "limit": ("limit", "itemsPerPage"),
        "total_count": ("totalCount", "totalItems", "total"),
        "has_more": ("hasMore", "hasNextPage"),
    },
}


@attrs.frozen(kw_only=True)
class Page:
    """One page of a paged list: its items, their ids (in order) and its paging info."""

    items: tuple[Any, ...]
    ids: tuple[str, ...]
    pagination: Pagination


@attrs.frozen(kw_only=True)
class _TemplateList:
    templates: tuple[Template, ...] = ()
    default_template_id: str | None = None
    default_template_name: str | None = None


def _fail(value: object, expected: str) -> TypeError:
    shown = snippet_of(repr(value).encode(), 60)
    return TypeError(f"expected {expected}, got {type(value).__name__} {shown}")


def _to_str(value: object, _: object) -> str:
    if type(value) is str:  # the common case first: this runs for every field of every item
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _fail(value, "a string")


def _to_float(value: object, _: object) -> float:
    if type(value) is float and value == value:  # noqa: PLR0124 - the common case first; NaN != NaN
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise _fail(value, "a number") from None
    else:
        raise _fail(value, "a number")
    if math.isnan(result):
        raise _fail(value, "a number")
    return result


def _to_int(value: object, _: object) -> int:
    if type(value) is int:  # the common case first
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact: a float would round integers past 2**53 (nanosecond times)
    number = _to_float(value, None)
    if math.isinf(number) or number != int(number):
        raise _fail(value, "an integer")
    return int(number)


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


def _to_bool(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(value, "a boolean")


def _to_datetime(value: object, _: object) -> dt.datetime:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        parsed = parse_timestamp(str(value))
        if parsed is not None:
            return parsed
    raise _fail(value, "an ISO 8601 timestamp")


def _to_state(value: object, _: object) -> RequestState:
    return RequestState.from_wire(_to_str(value, None))


def _is_tuple(type_: Any) -> bool:
    return get_origin(type_) is tuple


def _as_is(value: object, _: object) -> object:
    return value


def _tuple_hook(type_: Any) -> Callable[[object, object], tuple[Any, ...]]:
    (item_type, _ellipsis) = get_args(type_)
    # the item's hook, found once (not dispatched again for each item)
    item_hook = _as_is if item_type is Any else converter.get_structure_hook(item_type)

    def structure(value: object, _: object) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _fail(value, "a list")
        try:  # the fast path; a failure is told item by item below
            return tuple([item_hook(item, item_type) for item in value])
        except Exception:  # structured again below, every error collected
            pass
        errors: list[Exception] = []
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(item_hook(item, item_type))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                # what add_note() does, which Python 3.10 lacks
                exc.__dict__["__notes__"] = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise cattrs.IterableValidationError("While structuring a list", errors, type_)
        return tuple(items)

    return structure


def _mapping_hook(value: object, _: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(value, "an object")
    return dict(value)


def _is_model(type_: Any) -> bool:
    return attrs.has(type_)


#: Each model's slow path (cattrs' generated function), which its fast path must agree with.
_SLOW_PATHS: dict[type[Any], Callable[[Mapping[str, Any]], Any]] = {}


def _model_hook(cls: type[T]) -> Callable[[object, object], T]:
    fields = attrs.fields(cls)  # type: ignore[arg-type]  # only called for attrs classes
    aliases = _ALIASES.get(cls, {})
    keys_of: dict[str, tuple[str, ...]] = {}
    for field in fields:
        if field.name == "extra":
            continue
        preferred = aliases.get(field.name, ())
        keys_of[field.name] = tuple(dict.fromkeys((*preferred, _camel(field.name), field.name)))
    known = {key for keys in keys_of.values() for key in keys}
    keeps_extra = any(field.name == "extra" for field in fields)
    inner = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False)
    # The fast path reads each field straight into its own hook, found once here (the first
    # key of the field that is not None; so an optional field takes its inner type's hook).
    # On any failure the value is structured again by cattrs' generated function, which
    # raises the detailed error (with the path of the field).
    plan = [
        (keys_of[field.name], field.alias, converter.get_structure_hook(inner_type), inner_type)
        for field in fields
        if field.init and field.name in keys_of
        for inner_type in (_without_none(field.type),)
    ]
    read = _field_reader(plan, known if keeps_extra else None)

    def normalised(value: Mapping[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, keys in keys_of.items():
            for key in keys:
                if value.get(key) is not None:
                    found[name] = value[key]
                    break
        if keeps_extra:
            found["extra"] = {k: v for k, v in value.items() if k not in known}
        return found

    def slow(value: Mapping[str, Any]) -> T:
        return inner(normalised(value), cls)

    _SLOW_PATHS[cls] = slow

    def structure(value: object, _: object) -> T:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _fail(value, f"an object for {cls.__name__}")
        try:
            return cls(**read(value))
        except Exception:  # told in detail by the slow path
            return slow(value)

    return structure


#: The hooks that return a value of their plain type unchanged, and the test for that type.
_PLAIN_TYPES: dict[Callable[[Any, Any], Any], str] = {
    _to_str: "type(item) is str",
    _to_int: "type(item) is int",
    _to_float: "type(item) is float and item == item",  # NaN is refused by the hook
    _to_bool: "type(item) is bool",
}


def _field_reader(
    plan: list[tuple[tuple[str, ...], str, Callable[[Any, Any], Any], Any]],
    known: set[str] | None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function made for one model: the keyword arguments of its fields from a payload.

    Written out once as straight-line code (one ``get`` per key, the first that is not None
    wins, each through its field's hook), as cattrs does for its own structure functions:
    a loop over the fields costs as much again on a transcript of thousands of sentences.
    ``known`` (when the model keeps ``extra``): the keys of its fields.
    """
    namespace: dict[str, Any] = {"known": known}
    lines = ["def read(value):", "    get = value.get", "    kwargs = {}"]
    for number, (keys, alias, hook, type_) in enumerate(plan):
        namespace[f"hook{number}"], namespace[f"type{number}"] = hook, type_
        # a value already of the field's plain type is taken as it is (what the hook does)
        plain = _PLAIN_TYPES.get(hook)
        call = f"hook{number}(item, type{number})"
        if plain is not None:
            call = f"item if {plain} else {call}"
        for position, key in enumerate(keys):
            keyword = "if" if position == 0 else "elif"
            lines.append(
                f"    {keyword} (item := get({key!r})) is not None: kwargs[{alias!r}] = {call}"
            )
    if known is not None:
        lines.append('    kwargs["extra"] = {k: v for k, v in value.items() if k not in known}')
    lines.append("    return kwargs")
    exec("\n".join(lines), namespace)  # our own field names, written out by repr()
    reader: Callable[[Mapping[str, Any]], dict[str, Any]] = namespace["read"]
    return reader


def _without_none(type_: Any) -> Any:
    """``X`` for ``X | None`` (and ``Optional[X]``); any other type as it is."""
    args = get_args(type_)
    if type(None) in args and get_origin(type_) in (Union, UnionType):
        rest = tuple(arg for arg in args if arg is not type(None))
        return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 - built at run time
    return type_


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    conv.register_structure_hook(str, _to_str)
    conv.register_structure_hook(float, _to_float)
    conv.register_structure_hook(int, _to_int)
    conv.register_structure_hook(bool, _to_bool)
    conv.register_structure_hook(dt.datetime, _to_datetime)
    conv.register_structure_hook(RequestState, _to_state)
    conv.register_structure_hook_func(lambda t: t == Mapping[str, Any], _mapping_hook)
    conv.register_structure_hook_func(lambda t: t is Any, lambda value, _: value)
    conv.register_structure_hook_factory(_is_tuple, _tuple_hook)
    conv.register_structure_hook_factory(_is_model, _model_hook)
    return conv


#: The single converter of the package, configured once at import.
converter = _build_converter()


def _describe(exc: Exception) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="$.data"))
    return str(exc)


def _load_data(body: bytes, what: str, status: int) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise ResponseValidationError(
            f"{what}: the response body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte"
            " cap for API responses; refusing to parse it.",
            status=status,
        )
    if not body.strip():
        raise ResponseValidationError(f"{what}: the response body is empty", status=status)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ResponseValidationError(
            f"{what}: the response body is not JSON ({exc.__class__.__name__}): "
            f"{snippet_of(body)!r}",
            status=status,
            snippet=snippet_of(body),
        ) from None
    if isinstance(parsed, Mapping) and isinstance(parsed.get("data"), Mapping):
        return parsed["data"]
    if isinstance(parsed, Mapping) and "data" not in parsed and "error" not in parsed:
        return parsed  # some clients saw the payload unwrapped; accept it
    raise ResponseValidationError(
        f"{what}: expected a JSON object with a 'data' object, got {snippet_of(body)!r}",
        status=status,
        snippet=snippet_of(body),
    )


def _structure(data: Any, cls: type[T], what: str, status: int, body: bytes) -> T:
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, RecursionError) as exc:
        raise ResponseValidationError(
            f"{what}: the response does not match the expected shape: {_describe(exc)}",
            status=status,
            snippet=snippet_of(body),
        ) from None


def _with_id(data: Any, request_id: str | None) -> Any:
    if (
        request_id is not None
        and isinstance(data, Mapping)
        and all(data.get(key) is None for key in _ID_KEYS)
    ):
        return {**data, "_id": request_id}
    return data


def parse_shorts_request(
    body: bytes, *, request_id: str | None = None, status: int = 200
) -> ShortsRequest:
    """Parse ``GET /shorts/:id``; ``request_id`` fills the id when the body has none."""
    data = _with_id(_load_data(body, "GET /shorts/:id", status), request_id)
    return _structure(data, ShortsRequest, "GET /shorts/:id", status, body)


def parse_status(body: bytes, *, request_id: str | None = None, status: int = 200) -> RequestStatus:
    """Parse ``GET /shorts/:id/status``; ``request_id`` fills the id when the body has none."""
    data = _with_id(_load_data(body, "GET /shorts/:id/status", status), request_id)
    return _structure(data, RequestStatus, "GET /shorts/:id/status", status, body)


def parse_created(body: bytes, *, status: int = 201) -> CreatedRequest:
    """Parse ``POST /shorts/create``."""
    data = _load_data(body, "POST /shorts/create", status)
    return _structure(data, CreatedRequest, "POST /shorts/create", status, body)


def parse_templates(body: bytes, *, status: int = 200) -> list[Template]:
    """Parse ``GET /templates``; works out which template is the default."""
    what = "GET /templates"
    data = _load_data(body, what, status)
    listing = _structure(data, _TemplateList, what, status, body)
    flags = _default_flags(data)
    return [
        attrs.evolve(template, is_default=_is_default(template, flag, listing))
        for template, flag in zip(listing.templates, flags, strict=False)
    ]


def _is_default(template: Template, flag: bool | None, listing: _TemplateList) -> bool:
    """``isDefault`` when sent, else the top-level default id or name, else the known one."""
    if flag is not None:
        return flag
    name = (template.name or "").lower()
    if listing.default_template_id is not None:
        return template.template_id.lower() == listing.default_template_id.lower()
    if listing.default_template_name is not None:
        return name == listing.default_template_name.lower()
    return template.template_id.lower() == DEFAULT_TEMPLATE_ID or name == DEFAULT_TEMPLATE_NAME


def _default_flags(data: Mapping[str, Any]) -> list[bool | None]:
    """The explicit ``isDefault`` of each template, None where not sent (data already valid)."""
    items = data.get("templates") or []
    return [
        _to_bool(item["isDefault"], None) if item.get("isDefault") is not None else None
        for item in items
    ]


# Per item type: the key of the list in ``data``, the call (for messages), the id attribute.
_PAGE_KEYS: dict[type[Any], tuple[str, str, str]] = {
    RequestSummary: ("requests", "GET /shorts", "request_id"),
    MusicTrack: ("music", "GET /music", "name"),
    GameVideo: ("gameVideos", "GET /game-videos", "name"),
    MemeHook: ("memeHooks", "GET /meme-hooks", "name"),
}


def parse_page(body: bytes, item_type: type[T], *, status: int = 200) -> Page:
    """Parse one page of a paged list of ``item_type`` items.

    ``total_pages`` is derived from the total count and the server's own page size (its
    ``limit`` echo) when it is missing.
    """
    key, what, id_attribute = _PAGE_KEYS[item_type]
    data = _load_data(body, what, status)
    if not isinstance(data, Mapping):
        raise ResponseValidationError(f"{what}: 'data' is not an object", status=status)
    items = _structure(data.get(key, []), tuple[item_type, ...], what, status, body)  # type: ignore[valid-type]
    raw_paging = data.get("pagination")
    paging = (
        Pagination()
        if raw_paging is None
        else _structure(raw_paging, Pagination, what, status, body)
    )
    if paging.total_pages is None and paging.total_count is not None and paging.limit:
        paging = attrs.evolve(paging, total_pages=-(-paging.total_count // paging.limit))
    ids = tuple(getattr(item, id_attribute) for item in items)
    return Page(items=items, ids=ids, pagination=paging)


#: The most pages one listing fetches, whatever the server says: a bound for a server that
#: keeps reporting more pages and sending new items (at 100 a page, a million items).
MAX_PAGES = 10_000


class PageStep(enum.Enum):
    """What a listing does with the page it just fetched (see `step_after_page()`)."""

    NEXT = "next"
    """Yield its items and fetch the next page."""
    LAST = "last"
    """Yield its items (if any) and stop."""
    REPEAT = "repeat"
    """Stop without yielding: it repeats the page before (the server ignores ``page``)."""


def step_after_page(
    page: Page,
    *,
    number: int,
    requested: int,
    seen: int,
    previous_ids: tuple[str, ...] | None,
) -> PageStep:
    """Decide whether a listing goes on after page ``number`` (1-based), from its own figures.

    An empty page ends the listing, and so does page `MAX_PAGES` (after its items); a
    page with the same ids as the one before is dropped and ends it. Otherwise the server's
    figures decide:

    * with ``total_pages`` (sent, or derived from the total and its own page size) or
      ``total_count``: go on while this page is before the last page or fewer items than
      the total were listed, however short the page (a server may cap its page size below
      the requested ``limit``). Each page lists at least one item, so the totals also bound
      the number of pages.
    * else with ``has_more``: go on exactly when it is true.
    * with no figures at all: go on while pages are full (as long as the server's ``limit``
      echo, else as ``requested``); a short page is the last.

    Args:
        page: the page just fetched.
        number: its page number.
        requested: the ``limit`` the listing sends.
        seen: items yielded before this page.
        previous_ids: the ids of the page before, None for the first page.
    """
    if not page.items:
        return PageStep.LAST
    if page.ids == previous_ids:
        return PageStep.REPEAT
    paging = page.pagination
    if number >= MAX_PAGES:
        more = False
    elif paging.total_pages is not None or paging.total_count is not None:
        before_last_page = paging.total_pages is not None and number < paging.total_pages
        short_of_total = (
            paging.total_count is not None and seen + len(page.items) < paging.total_count
        )
        more = before_last_page or short_of_total
    elif paging.has_more is not None:
        more = paging.has_more
    else:
        more = len(page.items) >= (paging.limit or requested)
    return PageStep.NEXT if more else PageStep.LAST


#: The largest webhook body accepted (a delivery lists a few reduced clips).
MAX_WEBHOOK_BYTES = 256 * 1024


def parse_webhook(body: bytes) -> WebhookEvent:
    """Parse one webhook delivery (section 2.10 of the API reference).

    Accepts the id as ``requestId`` (or ``_id``/``id``), ``data.shorts[]`` of reduced clips
    and ``data.failureReason``; unknown fields are kept in ``extra`` (the other ``data``
    fields under ``extra["data"]``).

    Raises:
        ResponseValidationError: the body is too large, not JSON, not an object, has no
            24-hex request id or no ``event`` string, or a field of the wrong type.
    """
    what = "webhook delivery"
    if len(body) > MAX_WEBHOOK_BYTES:
        raise ResponseValidationError(
            f"{what}: the body is {len(body)} bytes, over the {MAX_WEBHOOK_BYTES}-byte cap",
            status=413,
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ResponseValidationError(
            f"{what}: the body is not JSON ({exc.__class__.__name__}): {snippet_of(body)!r}",
            status=400,
            snippet=snippet_of(body),
        ) from None
    if not isinstance(payload, Mapping):
        raise ResponseValidationError(
            f"{what}: expected a JSON object, got {snippet_of(body)!r}",
            status=400,
            snippet=snippet_of(body),
        )
    data = payload.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise ResponseValidationError(
            f"{what}: 'data' must be an object, got {snippet_of(body)!r}",
            status=400,
            snippet=snippet_of(body),
        )
    flat = {k: v for k, v in payload.items() if k != "data"}
    data = dict(data or {})
    for key in ("shorts", "failureReason"):
        if key in data:
            flat[key] = data.pop(key)
    if data:
        flat["data"] = data
    event = _structure(flat, WebhookEvent, what, 400, body)
    if not is_hex24(event.request_id):
        raise ResponseValidationError(
            f"{what}: the request id {event.request_id[:40]!r} is not 24 hexadecimal characters",
            status=400,
            snippet=snippet_of(body),
        )
    return attrs.evolve(event, request_id=event.request_id.lower())
