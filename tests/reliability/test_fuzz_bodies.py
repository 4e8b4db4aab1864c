"""Fuzzing the response parsers: any body either parses or raises ResponseValidationError.

Hypothesis feeds every endpoint's parser three kinds of body: arbitrary bytes (non-UTF-8,
empty, truncated), arbitrary JSON documents, and the recorded payloads of
``tests/payloads`` with fields removed, nulled, or replaced by wrong types, huge numbers
(``1e400`` as text, ``10**400``), NaN, lone surrogates and deep nesting. A parser returns
its model or raises :class:`ResponseValidationError` with a message naming the endpoint;
any other exception is a bug. ``error_from_response`` (the mapping of error bodies) and the
quota-header parsers must never raise at all.

Through the Client: an API body over the size cap is refused with a clear error, also
when it comes chunked (no Content-Length) and never ends.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssemble_async import (
    APIStatusError,
    Client,
    CreatedRequest,
    GameVideo,
    MemeHook,
    MusicTrack,
    RateLimit,
    RequestStatus,
    RequestSummary,
    ResponseValidationError,
    RetryPolicy,
    ShortsRequest,
    Template,
)
from ssemble_async._converter import (
    MAX_BODY_BYTES,
    Page,
    parse_created,
    parse_page,
    parse_shorts_request,
    parse_status,
    parse_templates,
)
from ssemble_async._errors import error_from_response
from ssemble_async._ratelimit import parse_rate_limit, parse_retry_after, parse_timestamp
from ssemble_async.testing import ApiFault, FakeJob, FakeSsembleAPI

PAYLOADS = Path(__file__).parent.parent / "payloads"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _is_templates(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(t, Template) for t in value)


def _page_of(item_type: type[Any]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, Page) and all(isinstance(i, item_type) for i in value.items)

    return check


# name -> (parser, what its messages start with, recorded payloads, result check)
PARSERS: dict[str, tuple[Callable[[bytes], object], str, tuple[str, ...], Callable[[object], bool]]]
PARSERS = {
    "get-shorts": (
        parse_shorts_request,
        "GET /shorts/:id",
        ("get_shorts_seed.json", "get_shorts_reference.json", "get_shorts_plan.json"),
        lambda value: isinstance(value, ShortsRequest),
    ),
    "get-status": (
        parse_status,
        "GET /shorts/:id/status",
        ("status_processing.json", "status_failed.json", "status_plan.json"),
        lambda value: isinstance(value, RequestStatus),
    ),
    "create": (
        parse_created,
        "POST /shorts/create",
        ("created_mcode.json", "created_plan.json"),
        lambda value: isinstance(value, CreatedRequest),
    ),
    "templates": (
        parse_templates,
        "GET /templates",
        ("templates_docs.json", "templates_plan.json"),
        _is_templates,
    ),
    "list-requests": (
        lambda body: parse_page(body, RequestSummary),
        "GET /shorts",
        ("list_docs.json", "list_plan.json"),
        _page_of(RequestSummary),
    ),
    "music": (
        lambda body: parse_page(body, MusicTrack),
        "GET /music",
        ("music.json",),
        _page_of(MusicTrack),
    ),
    "game-videos": (
        lambda body: parse_page(body, GameVideo),
        "GET /game-videos",
        ("game_videos_mcode.json", "game_videos_plan.json"),
        _page_of(GameVideo),
    ),
    "meme-hooks": (
        lambda body: parse_page(body, MemeHook),
        "GET /meme-hooks",
        ("meme_hooks.json",),
        _page_of(MemeHook),
    ),
}

# Raw JSON text that json.dumps cannot write, spliced in for these string markers.
RAW = {
    '"<huge-float>"': "1e400",
    '"<tiny-float>"': "-1e400",
    '"<huge-int>"': "1" + "0" * 400,
    '"<too-many-digits>"': "9" * 5000,  # past Python's int digit limit
    '"<deep-list>"': "[" * 600 + "]" * 600,
    '"<deep-object>"': '{"a":' * 600 + "1" + "}" * 600,
    '"<lone-surrogate>"': '"\\ud800"',
}


def encode(document: Any) -> bytes:
    text = json.dumps(document, allow_nan=True)
    for marker, raw in RAW.items():
        text = text.replace(marker, raw)
    return text.encode()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([m.strip('"') for m in RAW]),
    st.sampled_from(["", "0", "1e400", "NaN", "2024-13-45T99:99:99Z", "completed", "x" * 5000]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
special_bodies = st.sampled_from(
    [
        b"",
        b"   \n",
        b"null",
        b"[]",
        b"{}",
        b'{"data": null}',
        b'{"data": []}',
        b'{"data": "x"}',
        b'{"error": {"code": "x"}}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'{"data": {"status": "\xff\xfe"}}',  # not UTF-8 inside a string
        b"\xff\xfe{\x00}\x00",  # UTF-16 with BOM
        '{"data": {"status": "completed"}}'.encode("utf-16-le"),
        b"[" * 100_000,
        b'{"data":' * 50_000,
        b"1e400",
        b'{"data": {"progress": 1e400, "limit": 1e400}}',
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"data": {"_id": "665a1b2c3d4e5f6a7b8c9d0e", "status": "completed"',  # cut short
    ]
)


def paths_of(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document`` (dict keys and list indexes)."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(paths_of(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(paths_of(value, (*prefix, index)))
    return found


_DELETE = object()


def mutate(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``document`` with the value at ``path`` replaced (or deleted)."""
    if not path:
        return None if value is _DELETE else value
    head, *rest = path
    copy: Any = dict(document) if isinstance(document, dict) else list(document)
    if rest:
        copy[head] = mutate(document[head], tuple(rest), value)
    elif value is _DELETE:
        del copy[head]
    else:
        copy[head] = value
    return copy


@st.composite
def mutated_payload(draw: st.DrawFn, names: tuple[str, ...]) -> bytes:
    """A recorded payload with one to four of its values removed, nulled or replaced."""
    document = json.loads((PAYLOADS / draw(st.sampled_from(names))).read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths_of(document)))
        replacement = draw(st.one_of(st.just(_DELETE), st.none(), json_values))
        if path == () and replacement is _DELETE:
            continue
        document = mutate(document, path, replacement)
    return encode(document)


def check_parse(name: str, body: bytes) -> None:
    parse, what, _, is_result = PARSERS[name]
    try:
        result = parse(body)
    except ResponseValidationError as exc:
        message = str(exc)
        assert message.startswith(what), message
        assert len(message) <= 20_000 + len(body)
        repr(exc)
    else:
        assert is_result(result), result
        repr(result)


def bodies_for(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        special_bodies,
        json_values.map(encode),
        json_values.map(lambda value: encode({"data": value})),
        mutated_payload(PARSERS[name][2]),
    )


@pytest.mark.parametrize("name", list(PARSERS))
@FUZZ
@given(data=st.data())
def test_parser_parses_or_raises_validation_error(name: str, data: st.DataObject) -> None:
    check_parse(name, data.draw(bodies_for(name), label="body"))


@pytest.mark.parametrize("name", list(PARSERS))
def test_recorded_payloads_still_parse(name: str) -> None:
    """The seeds of the mutations are valid: a failure above is the mutation's doing."""
    parse, _, names, is_result = PARSERS[name]
    for payload in names:
        assert is_result(parse((PAYLOADS / payload).read_bytes()))


@pytest.mark.parametrize("name", list(PARSERS))
@pytest.mark.parametrize("marker", list(RAW))
def test_every_nasty_value_in_every_field(name: str, marker: str) -> None:
    """Not left to chance: each raw value, at each place of each recorded payload."""
    for payload in PARSERS[name][2]:
        document = json.loads((PAYLOADS / payload).read_bytes())
        for path in paths_of(document):
            check_parse(name, encode(mutate(document, path, marker.strip('"'))))


rate_limits = st.one_of(
    st.none(),
    st.builds(
        RateLimit,
        limit_hour=st.none() | st.integers(),
        remaining_hour=st.none() | st.integers(),
        reset=st.none() | st.datetimes(timezones=st.just(dt.timezone.utc)),
    ),
)


@FUZZ
@given(
    status=st.integers(0, 1000),
    body=st.one_of(
        st.binary(max_size=300),
        special_bodies,
        json_values.map(encode),
        json_values.map(lambda value: encode({"error": value})),
        st.builds(
            lambda code, message, details: encode(
                {"error": {"code": code, "message": message, "details": details}}
            ),
            json_values,
            json_values,
            json_values,
        ),
    ),
    content_type=st.text(max_size=30),
    rate_limit=rate_limits,
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_error_from_response_never_raises(
    status: int,
    body: bytes,
    content_type: str,
    rate_limit: RateLimit | None,
    retry_after: float | None,
) -> None:
    error = error_from_response(status, body, content_type, rate_limit, retry_after=retry_after)
    assert isinstance(error, APIStatusError)
    assert error.status == status
    assert str(error).startswith(f"HTTP {status} ")
    assert len(str(error)) <= len(body) + 1_000  # made of the body's text, or a snippet of it
    repr(error)


header_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["1e400", "-1e400", "inf", "-inf", "nan", "9" * 5000, "1" + "0" * 400, " 12 ", "0x10"]
    ),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes().map(lambda moment: moment.isoformat()),
)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-RateLimit-Limit-Hour",
                "X-RateLimit-Remaining-Hour",
                "X-RateLimit-Limit-Day",
                "X-RateLimit-Remaining-Day",
                "X-RateLimit-Reset",
            ]
        ),
        header_values,
    ),
    retry_after=header_values,
)
def test_quota_headers_never_raise(headers: dict[str, str], retry_after: str) -> None:
    """Headers come from the server (or a proxy): no value may crash the client."""
    limit = parse_rate_limit(headers)
    assert limit is None or isinstance(limit, RateLimit)
    now = dt.datetime.now(dt.timezone.utc)
    seconds = parse_retry_after(retry_after, now)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
    parse_timestamp(retry_after)


# -- through the Client ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_huge_quota_header_does_not_crash_a_call(fake_ssemble: FakeSsembleAPI) -> None:
    """A proxy's absurd ``X-RateLimit-*`` value is ignored, not an OverflowError."""
    fake_ssemble.inject_api_fault(
        ApiFault(
            status=200,
            body=b'{"data": {"templates": []}}',
            content_type="application/json",
            headers={"X-RateLimit-Remaining-Hour": "1e400", "X-RateLimit-Limit-Hour": "inf"},
        )
    )
    async with Client(fake_ssemble.api_key, base_url=fake_ssemble.base_url) as client:
        assert await client.list_templates() == []
        assert client.rate_limit is None or client.rate_limit.remaining_hour is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"data": {"status": "\xff"}}',
        b'{"data": {"progress": NaN, "status": "processing"}}',
        b'{"data": {"_id": "' + b"9" * 5000 + b'"}}',
    ],
    ids=["deep-nesting", "not-utf8", "nan-progress", "long-id"],
)
async def test_bad_bodies_through_the_client(fake_ssemble: FakeSsembleAPI, body: bytes) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    fake_ssemble.inject_api_fault(ApiFault(status=200, body=body, content_type="application/json"))
    async with Client(fake_ssemble.api_key, base_url=fake_ssemble.base_url) as client:
        with pytest.raises(ResponseValidationError, match=r"^GET /shorts/:id/status: "):
            await client.get_status(rid)
        assert (await client.get_status(rid)).request_id == rid  # the fault is used up


class EndlessBody:
    """A server whose answer is a chunked JSON body (no Content-Length) that never ends."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sent = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            status=self.status, headers={"Content-Type": "application/json"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"data": {"templates": [')
        block = b'{"id": "66fcc4c67769688a1d5ad08a", "name": "karaoke"},' * 1000
        while True:  # until the client hangs up
            await response.write(block)
            self.sent += len(block)


@pytest.fixture(params=[200, 500])
async def endless(request: pytest.FixtureRequest) -> AsyncIterator[EndlessBody]:
    server = EndlessBody(request.param)
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.mark.anyio
async def test_chunked_body_over_the_cap_is_refused(endless: EndlessBody) -> None:
    async with Client(
        "sk_ssemble_test", base_url=endless.url, retry=RetryPolicy(attempts=1)
    ) as client:
        with anyio.fail_after(30), pytest.raises(ResponseValidationError) as info:
            await client.list_templates()
    message = str(info.value)
    assert message.startswith("GET /templates: ")
    assert f"{MAX_BODY_BYTES}-byte cap" in message
    assert info.value.status == endless.status
    # The client stopped reading at the cap: what was sent beyond it is what the sockets'
    # buffers held, not the rest of an endless body.
    assert endless.sent < MAX_BODY_BYTES + 16 * 1024 * 1024
