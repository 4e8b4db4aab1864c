"""The hints of API errors: a field of their own, after a full stop; a wrong base URL named."""

from __future__ import annotations

from ssemble_async import AuthenticationError, NotFoundError
from ssemble_async._errors import (
    HINT_API_KEY,
    HINT_NOT_FOUND,
    HINT_WRONG_BASE_URL,
    error_from_response,
    with_hint,
)

ENVELOPE_401 = (
    b'{"error": {"code": "invalid_api_key",'
    b' "message": "Invalid API key: wrong format, not found, or revoked"}}'
)


def test_message_and_hint_are_two_sentences() -> None:
    error = error_from_response(401, ENVELOPE_401, "application/json", None)
    assert isinstance(error, AuthenticationError)
    assert error.hint == HINT_API_KEY
    assert error.problem == (
        "HTTP 401 invalid_api_key: Invalid API key: wrong format, not found, or revoked"
    )
    assert str(error) == f"{error.problem}. {HINT_API_KEY}"
    assert "api_key=..." in str(error) and "--api-key" not in str(error)  # the library's terms


def test_with_hint_never_doubles_a_stop() -> None:
    assert with_hint("done.", "Next.") == "done. Next."
    assert with_hint("done", "Next.") == "done. Next."
    assert with_hint("done", "") == "done"


def test_a_404_with_the_envelope_is_a_missing_request() -> None:
    body = b'{"error": {"code": "resource_not_found", "message": "Request not found"}}'
    error = error_from_response(404, body, "application/json", None)
    assert isinstance(error, NotFoundError)
    assert error.hint == HINT_NOT_FOUND


def test_a_404_without_the_envelope_is_a_wrong_base_url() -> None:
    for body, kind in ((b"<html>Cannot GET /shorts</html>", "text/html"), (b"", "")):
        error = error_from_response(404, body, kind, None)
        assert isinstance(error, NotFoundError)
        assert error.hint == HINT_WRONG_BASE_URL
        assert "base_url" in str(error) and "/api/v1" in str(error)
        assert "request id" not in str(error)
