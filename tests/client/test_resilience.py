"""Error paths, retries, timeouts, the quota gate and secret handling, through the Client."""

from __future__ import annotations

import datetime as dt
import logging
import socket

import aiohttp
import pytest
from aiohttp import web

from ssemble_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    Client,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    QuotaPolicy,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
    Timeouts,
    _clock,
)
from ssemble_async.testing import ApiFault, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio

HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def calls_to(fake: FakeSsembleAPI, suffix: str) -> int:
    return sum(1 for r in fake.api_requests if r.path.endswith(suffix))


async def test_5xx_burst_is_retried(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    fake_ssemble.inject_api_fault(ApiFault(status=503, body=b"", content_type="", times=2))
    status = await client.get_status(rid)
    assert status.request_id == rid
    assert calls_to(fake_ssemble, "/status") == 3


async def test_503_retry_after_is_honoured(
    fake_ssemble: FakeSsembleAPI, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    fake_ssemble.inject_api_fault(
        ApiFault(status=503, body=b"", content_type="", headers={"Retry-After": "0.7"})
    )
    with caplog.at_level(logging.INFO, logger="ssemble_async"):
        await client.list_templates()
    assert any("in 0.7 s" in r.getMessage() for r in caplog.records)


async def test_borrowed_session_with_raise_for_status(fake_ssemble: FakeSsembleAPI) -> None:
    async with (
        aiohttp.ClientSession(raise_for_status=True) as shared,
        Client(fake_ssemble.api_key, base_url=fake_ssemble.base_url, session=shared) as client,
    ):
        with pytest.raises(NotFoundError):
            await client.get_shorts("0123456789abcdef01234567")
    assert len(fake_ssemble.api_requests) == 1


async def test_html_502_that_persists_is_a_server_error_with_snippet(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    fake_ssemble.inject_api_fault(
        ApiFault(status=502, body=HTML_502, content_type="text/html", times=10)
    )
    with pytest.raises(ServerError) as info:
        await client.get_shorts(rid)
    assert info.value.status == 502
    assert "502 Bad Gateway" in info.value.message
    assert calls_to(fake_ssemble, rid) == 4  # RetryPolicy(attempts=4) in the fixture


async def test_html_body_on_a_200_is_a_validation_error(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    fake_ssemble.inject_api_fault(ApiFault(status=200, body=HTML_502, content_type="text/html"))
    with pytest.raises(ResponseValidationError, match="not JSON") as info:
        await client.get_status(rid)
    assert "502 Bad Gateway" in info.value.snippet


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(
    fake_ssemble: FakeSsembleAPI, client: Client, status: int
) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    body = b'{"error": {"code": "x", "message": "no", "details": null}}'
    fake_ssemble.inject_api_fault(
        ApiFault(status=status, body=body, content_type="application/json", times=5)
    )
    with pytest.raises(APIStatusError) as info:
        await client.get_status(rid)
    assert info.value.status == status
    assert calls_to(fake_ssemble, "/status") == 1


async def test_429_with_retry_after_waits_that_long(
    fake_ssemble: FakeSsembleAPI, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    body = b'{"error": {"code": "rate_limit_exceeded", "message": "slow down", "details": null}}'
    fake_ssemble.inject_api_fault(
        ApiFault(
            status=429,
            body=body,
            content_type="application/json",
            headers={"Retry-After": "7"},
            times=1,
        )
    )
    with caplog.at_level(logging.INFO, logger="ssemble_async"):
        await client.get_status(rid)
    assert any("retry 1/3 in 7 s: the API answered 429" in r.getMessage() for r in caplog.records)


async def test_429_with_http_date_retry_after(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    when = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=20)).strftime(
        "%a, %d %b %Y %H:%M:%S GMT"
    )
    fake_ssemble.inject_api_fault(
        ApiFault(status=429, body=b"", content_type="", headers={"Retry-After": when})
    )
    await client.get_status(rid)
    assert calls_to(fake_ssemble, "/status") == 2


async def test_429_retry_after_longer_than_allowed_raises(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    fake_ssemble.inject_api_fault(
        ApiFault(status=429, body=b"", content_type="", headers={"Retry-After": "7200"})
    )
    async with Client(
        fake_ssemble.api_key, base_url=fake_ssemble.base_url, quota=QuotaPolicy(max_wait=60)
    ) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_status(rid)
    assert info.value.retry_after == 7200
    assert info.value.sent


async def test_raise_policy_still_retries_a_short_429(fake_ssemble: FakeSsembleAPI) -> None:
    fake_ssemble.inject_api_fault(
        ApiFault(status=429, body=b"", content_type="", headers={"Retry-After": "2"})
    )
    async with Client(
        fake_ssemble.api_key,
        base_url=fake_ssemble.base_url,
        quota=QuotaPolicy(on_exhausted="raise"),
    ) as client:
        assert len(await client.list_templates()) == 9
        fake_ssemble.inject_api_fault(
            ApiFault(status=429, body=b"", content_type="", headers={"Retry-After": "900"})
        )
        with pytest.raises(RateLimitError) as info:
            await client.list_templates()
    assert info.value.retry_after == 900
    assert len(fake_ssemble.api_requests) == 3


async def test_server_quota_429_waits_for_the_reset(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    reset = _clock.utcnow() + dt.timedelta(minutes=30)
    fake_ssemble.set_quota(remaining_hour=0, reset=reset)
    started = _clock.monotonic()
    status = await client.get_status(rid)  # refused once, then sent after the reset
    assert status.request_id == rid
    assert _clock.monotonic() - started >= 30 * 60
    assert fake_ssemble.calls["GET /shorts/:id/status"] == 2
    assert fake_ssemble.rate_limited["GET /shorts/:id/status"] == 1
    assert client.rate_limit is not None
    assert client.rate_limit.remaining_hour == fake_ssemble.hourly_limit - 1


async def test_quota_gate_raises_without_sending(fake_ssemble: FakeSsembleAPI) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=30)
    async with Client(
        fake_ssemble.api_key,
        base_url=fake_ssemble.base_url,
        quota=QuotaPolicy(on_exhausted="raise"),
    ) as client:
        fake_ssemble.set_quota(remaining_hour=1, reset=reset)
        await client.get_status(rid)  # the server says 0 are left after this one
        assert client.rate_limit is not None and client.rate_limit.exhausted
        sent = len(fake_ssemble.api_requests)
        with pytest.raises(RateLimitError) as info:
            await client.get_status(rid)
        assert not info.value.sent
        assert info.value.retry_after is not None and 1700 < info.value.retry_after <= 1802
        assert "resets at" in str(info.value)
        assert len(fake_ssemble.api_requests) == sent


async def test_quota_gate_waits_for_the_reset(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    rid = fake_ssemble.add_job(FakeJob())
    reset = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90)
    fake_ssemble.set_quota(remaining_hour=1, reset=reset)
    await client.get_status(rid)
    sent = len(fake_ssemble.api_requests)
    await client.get_status(rid)  # waited (instantly) for the reset, then sent
    assert len(fake_ssemble.api_requests) == sent + 1  # no 429 provoked
    # the fake's window refilled at the reset, on the same (virtual) clock
    assert client.rate_limit is not None
    assert client.rate_limit.remaining_hour == fake_ssemble.hourly_limit - 1


async def test_rate_limit_is_parsed_on_every_response(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    assert client.rate_limit is None
    await client.list_templates()
    first = client.rate_limit
    assert first is not None
    assert first.limit_hour == 100_000
    await client.list_templates()
    assert client.rate_limit is not None
    assert client.rate_limit.remaining_hour == (first.remaining_hour or 0) - 1
    del fake_ssemble


async def test_errors_carry_the_rate_limit(fake_ssemble: FakeSsembleAPI) -> None:
    async with Client("sk_ssemble_wrong", base_url=fake_ssemble.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.list_templates()
    assert info.value.code == "invalid_api_key"
    assert info.value.rate_limit is not None
    assert "api-keys" in str(info.value)


async def test_permission_denied(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    body = b'{"error": {"code": "insufficient_credits", "message": "No credits", "details": null}}'
    fake_ssemble.inject_api_fault(ApiFault(status=403, body=body, content_type="application/json"))
    with pytest.raises(PermissionDeniedError) as info:
        await client.create_short(url="https://youtu.be/x", start=0, end=60)
    assert info.value.code == "insufficient_credits"


async def test_create_is_not_retried_after_a_5xx(
    fake_ssemble: FakeSsembleAPI, client: Client
) -> None:
    fake_ssemble.inject_api_fault(ApiFault(status=500, body=b"", content_type="", times=3))
    with pytest.raises(ServerError):
        await client.create_short(url="https://youtu.be/x", start=0, end=60)
    assert calls_to(fake_ssemble, "/shorts/create") == 1


async def test_create_is_retried_after_a_429(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    fake_ssemble.inject_api_fault(
        ApiFault(status=429, body=b"", content_type="", headers={"Retry-After": "1"}, times=2)
    )
    created = await client.create_short(url="https://youtu.be/x", start=0, end=60)
    assert created.request_id in fake_ssemble.jobs
    assert calls_to(fake_ssemble, "/shorts/create") == 3
    assert len(fake_ssemble.jobs) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connection_refused_is_retried_then_raised() -> None:
    port = free_port()
    async with Client(
        "sk_ssemble_key",
        base_url=f"http://127.0.0.1:{port}/api/v1",
        retry=RetryPolicy(attempts=3, initial_wait=0.1),
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.create_short(url="https://youtu.be/x", start=0, end=60)
    assert not info.value.request_sent
    assert f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


async def test_read_timeout_is_retried_for_gets_only(silent_server: str) -> None:
    async with Client(
        "sk_ssemble_key",
        base_url=silent_server,
        timeouts=Timeouts(read=0.2),
        retry=RetryPolicy(attempts=2, initial_wait=0.01),
    ) as client:
        with pytest.raises(APITimeoutError, match="within the timeouts"):
            await client.list_templates()
        with pytest.raises(APITimeoutError):
            await client.create_short(url="https://youtu.be/x", start=0, end=60)


async def test_connection_dropped_mid_response_is_retried() -> None:
    drops = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        if not drops:
            drops.append(1)
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b'{"data": ')
            assert request.transport is not None
            request.transport.close()
            return response
        return web.json_response({"data": {"templates": []}})

    app = web.Application()
    app.router.add_get("/templates", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with Client(
            "sk_ssemble_key", base_url=f"http://127.0.0.1:{runner.addresses[0][1]}"
        ) as client:
            assert await client.list_templates() == []
    finally:
        await runner.cleanup()
    assert drops == [1]


async def test_redirects_are_never_followed(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    fake_ssemble.inject_api_fault(
        ApiFault(
            status=302,
            body=b"",
            content_type="",
            headers={"Location": fake_ssemble.clip_base_url + "/steal"},
        )
    )
    with pytest.raises(APIStatusError) as info:
        await client.list_templates()
    assert info.value.status == 302
    assert fake_ssemble.clip_requests == []


async def test_oversized_body_is_refused(fake_ssemble: FakeSsembleAPI, client: Client) -> None:
    from ssemble_async._converter import MAX_BODY_BYTES

    fake_ssemble.inject_api_fault(
        ApiFault(status=200, body=b" " * (MAX_BODY_BYTES + 10), content_type="application/json")
    )
    with pytest.raises(ResponseValidationError, match="cap"):
        await client.list_templates()


# -- construction, sessions and secrets -------------------------------------------------


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSEMBLE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SSEMBLE_API_KEY"):
        Client()
    with pytest.raises(ConfigurationError):
        Client("   ")


def test_key_and_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSEMBLE_API_KEY", "sk_ssemble_from_env")
    monkeypatch.setenv("SSEMBLE_BASE_URL", "http://127.0.0.1:9/api/v1/")
    client = Client()
    assert client.base_url == "http://127.0.0.1:9/api/v1"
    assert Client(base_url="https://example.org/").base_url == "https://example.org"
    with pytest.raises(ConfigurationError, match="https://"):
        Client(base_url="ftp://example.org")
    monkeypatch.delenv("SSEMBLE_BASE_URL")
    assert Client().base_url == "https://aiclipping.ssemble.com/api/v1"


async def test_owned_session_is_closed_and_borrowed_one_is_not(
    fake_ssemble: FakeSsembleAPI,
) -> None:
    async with aiohttp.ClientSession() as shared:
        async with Client(
            fake_ssemble.api_key, base_url=fake_ssemble.base_url, session=shared
        ) as c:
            await c.list_templates()
        assert not shared.closed
        assert "X-API-Key" not in shared.headers  # the key goes per request, not on the session
        async with shared.get(fake_ssemble.base_url + "/templates") as response:
            assert response.status == 401  # the borrowed session does not carry the key
    client = Client(fake_ssemble.api_key, base_url=fake_ssemble.base_url)
    await client.list_templates()
    await client.close()
    await client.close()  # closing twice is fine
    await client.list_templates()  # a closed client re-opens its own session on demand
    await client.close()


async def test_the_key_never_leaks(
    fake_ssemble: FakeSsembleAPI, caplog: pytest.LogCaptureFixture
) -> None:
    key = fake_ssemble.api_key
    echo = b'{"error": {"code": "invalid_api_key", "message": "bad key ' + key.encode() + b'"}}'
    fake_ssemble.inject_api_fault(ApiFault(status=401, body=echo, content_type="application/json"))
    fake_ssemble.inject_api_fault(
        ApiFault(status=502, body=echo, content_type="text/html", times=9)
    )
    with caplog.at_level(logging.DEBUG):
        async with Client(key, base_url=fake_ssemble.base_url) as client:
            assert key not in repr(client)
            assert key not in repr(client.__dict__)
            with pytest.raises(AuthenticationError) as auth:
                await client.list_templates()
            with pytest.raises(ServerError) as server:
                await client.list_templates()
    for error in (auth.value, server.value):
        assert key not in str(error)
        assert key not in repr(error)
        assert key not in repr(error.__dict__)
        assert "[REDACTED]" in str(error)
    for record in caplog.records:
        assert key not in record.getMessage()
    assert all(r.headers.get("X-API-Key") == key for r in fake_ssemble.api_requests)
