"""Mapping error responses to exceptions (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssemble_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RateLimitError,
    RequestFailedError,
    RequestNotReadyError,
    ServerError,
    SsembleError,
    WaitTimeoutError,
)
from ssemble_async._errors import error_from_response

PAYLOADS = Path(__file__).parent.parent / "payloads"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (409, APIStatusError),
        (302, APIStatusError),
    ],
)
def test_status_maps_to_class(status: int, cls: type[APIStatusError]) -> None:
    body = b'{"error": {"code": "some_code", "message": "Some message", "details": {"a": 1}}}'
    limit = RateLimit(remaining_hour=3)
    error = error_from_response(status, body, "application/json", limit)
    assert type(error) is cls
    assert isinstance(error, SsembleError)
    assert (error.status, error.code, error.message, error.details) == (
        status,
        "some_code",
        "Some message",
        {"a": 1},
    )
    assert error.rate_limit is limit
    assert f"HTTP {status} some_code: Some message" in str(error)


def test_recorded_envelopes() -> None:
    not_found = error_from_response(
        404, (PAYLOADS / "error_not_found.json").read_bytes(), "application/json", None
    )
    assert isinstance(not_found, NotFoundError)
    assert not_found.code == "resource_not_found"
    assert "Check the request id" in str(not_found)
    bad = error_from_response(
        400, (PAYLOADS / "error_invalid_request.json").read_bytes(), "application/json", None
    )
    assert bad.details == {"field": "ctaText"}
    limited = error_from_response(
        429, (PAYLOADS / "error_rate_limited.json").read_bytes(), "application/json", None
    )
    assert isinstance(limited, RateLimitError)
    assert limited.retry_after == 42  # from error.details.retryAfter
    header_wins = error_from_response(
        429,
        (PAYLOADS / "error_rate_limited.json").read_bytes(),
        "application/json",
        None,
        retry_after=5,
    )
    assert isinstance(header_wins, RateLimitError)
    assert header_wins.retry_after == 5


def test_proxy_html_page_becomes_server_error_with_snippet() -> None:
    body = (PAYLOADS / "error_proxy_502.html").read_bytes()
    error = error_from_response(502, body, "text/html", None)
    assert isinstance(error, ServerError)
    assert error.code == "unknown_error"
    assert "502 Bad Gateway" in error.message
    assert "text/html" in error.message
    assert "\n" not in str(error)
    assert len(error.message) < 300


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty error body"),
        (b'{"error": {}}', "API error (500)"),
        (b'{"error": "boom", "message": "text"}', "text"),
        (b'{"error": {"code": 5, "message": null}}', "API error (500)"),
        (b"\xff\xfe not utf8", "non-JSON error body"),
        (b"[" * 50_000, "non-JSON error body"),
        (b"x" * 10_000, "…"),
    ],
)
def test_error_parsing_never_fails(body: bytes, expected: str) -> None:
    error = error_from_response(500, body, "", None)
    assert isinstance(error, ServerError)
    assert expected in error.message


def test_value_error_compatibility() -> None:
    assert issubclass(InvalidRequestIdError, ValueError)
    assert issubclass(InvalidRequestIdError, InvalidArgumentError)
    assert issubclass(WaitTimeoutError, TimeoutError)


def test_messages_of_job_errors() -> None:
    failed = RequestFailedError("a" * 24, "failed", "Source file could not be downloaded")
    assert failed.failure_reason == "Source file could not be downloaded"
    assert "ended failed: Source file could not be downloaded" in str(failed)
    cancelled = RequestFailedError("a" * 24, "cancelled", None)
    assert "no reason given" in str(cancelled)
    not_ready = RequestNotReadyError("a" * 24, "processing")
    assert "wait=True" in str(not_ready)
    timeout = WaitTimeoutError("a" * 24, 60, "processing")
    assert "still processing after 60 s" in str(timeout)
