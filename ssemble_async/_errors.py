"""The exceptions of ssemble_async, and the pure mapping from an HTTP error to one of them.

The tree:

```text
SsembleError
├── APIStatusError                 the API answered with an error status
│   ├── BadRequestError            400
│   ├── AuthenticationError        401
│   ├── PermissionDeniedError      403 (subscription_required, insufficient_credits)
│   ├── NotFoundError              404
│   ├── RateLimitError             429, or a call held back because the quota is spent
│   └── ServerError                5xx, including a proxy's HTML error page
├── APIConnectionError             the API could not be reached
│   └── APITimeoutError            ... or did not answer in time
├── ResponseValidationError        a body that cannot be parsed into the expected model
├── ConfigurationError             (also ValueError) no API key, a bad base URL
├── InvalidArgumentError           (also ValueError) an argument refused before sending
│   └── InvalidRequestIdError      a request id that is not 24 hexadecimal characters
├── RequestFailedError             a job ended ``failed`` or ``cancelled``
├── RequestNotReadyError           a job is not completed and waiting was not asked for
├── WaitTimeoutError               (also TimeoutError) waiting for a job took too long
└── DownloadError                  a clip could not be downloaded
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ssemble_async._ratelimit import RateLimit

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DownloadError",
    "InvalidArgumentError",
    "InvalidRequestIdError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "RequestNotReadyError",
    "ResponseValidationError",
    "ServerError",
    "SsembleError",
    "WaitTimeoutError",
    "error_from_response",
]

SNIPPET_CHARS = 200


class SsembleError(Exception):
    """Base class of every exception raised by ssemble_async."""


class APIStatusError(SsembleError):
    """The API answered with an error status.

    Attributes:
        status: the HTTP status code.
        code: the ``error.code`` of the envelope (``"unknown_error"`` when there was none).
        message: the ``error.message``, or a description of the body when it was not JSON.
        details: the ``error.details`` value (often None).
        rate_limit: the quota headers of that response, when it carried any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "unknown_error",
        details: Any = None,
        rate_limit: RateLimit | None = None,
        hint: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.rate_limit = rate_limit
        self.hint = hint
        """What to do about it, in the library's terms (one of the ``HINT_*`` texts, or "")."""
        super().__init__(with_hint(self.problem, hint))

    @property
    def problem(self) -> str:
        """What happened, without the hint: ``HTTP <status> <code>: <message>``."""
        return f"HTTP {self.status} {self.code}: {self.message}"


class BadRequestError(APIStatusError):
    """400: the server refused the parameters (``invalid_request``, ``video_too_long``, ...)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed, unknown or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: no active subscription (``subscription_required``) or no credits left."""


class NotFoundError(APIStatusError):
    """404: the request does not exist, belongs to another account, or was deleted."""


class RateLimitError(APIStatusError):
    """429, or a call not sent because the hourly quota is spent.

    Attributes:
        retry_after: seconds until a retry may succeed, when known.
        sent: False when the client held the call back itself (the server never saw it).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        code: str = "rate_limit_exceeded",
        details: Any = None,
        rate_limit: RateLimit | None = None,
        hint: str = "",
        retry_after: float | None = None,
        sent: bool = True,
    ) -> None:
        super().__init__(
            message, status=status, code=code, details=details, rate_limit=rate_limit, hint=hint
        )
        self.retry_after = retry_after
        self.sent = sent


class ServerError(APIStatusError):
    """5xx: a fault of the server or of a proxy in front of it (safe to retry GETs)."""


class APIConnectionError(SsembleError):
    """The API could not be reached (DNS, refused connection, reset, TLS).

    Attributes:
        request_sent: False when the connection was never opened, so the server cannot have
            acted on the call (safe to repeat even a create).
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The API did not answer within the configured timeouts."""


class ResponseValidationError(SsembleError):
    """A response body could not be parsed into the expected model.

    Attributes:
        status: the HTTP status of the response.
        snippet: the start of the body, for diagnosis.
    """

    def __init__(self, message: str, *, status: int | None = None, snippet: str = "") -> None:
        self.status = status
        self.snippet = snippet
        super().__init__(message)


class ConfigurationError(SsembleError, ValueError):
    """The client cannot be built as asked (no API key, a base URL that is not HTTP)."""


class InvalidArgumentError(SsembleError, ValueError):
    """An argument was refused on the client, before anything was sent."""


class InvalidRequestIdError(InvalidArgumentError):
    """A request id is not a 24-character hexadecimal string (checked before any request)."""


class RequestFailedError(SsembleError):
    """A job ended ``failed`` or ``cancelled``.

    Attributes:
        request_id: the job's id.
        status: the final status word as the server sent it.
        failure_reason: the server's ``failureReason``, when it gave one.
    """

    def __init__(self, request_id: str, status: str, failure_reason: str | None) -> None:
        self.request_id = request_id
        self.status = status
        self.failure_reason = failure_reason
        reason = f": {failure_reason}" if failure_reason else " (no reason given)"
        super().__init__(
            f"request {request_id} ended {status}{reason}. Its credit is refunded on failure;"
            " fix the source and create a new request."
        )


class RequestNotReadyError(SsembleError):
    """A job is not completed yet and the call was not asked to wait for it.

    Attributes:
        request_id: the job's id.
        status: its current status word.
    """

    def __init__(self, request_id: str, status: str) -> None:
        self.request_id = request_id
        self.status = status
        super().__init__(
            f"request {request_id} is {status}, not completed: pass wait=True to wait for it,"
            " or call wait_for_completion() first."
        )


class WaitTimeoutError(SsembleError, TimeoutError):
    """Waiting for a job took longer than the timeout.

    Attributes:
        request_id: the job's id.
        timeout: the timeout that passed, in seconds.
        last_status: the last status seen, when any.
    """

    def __init__(self, request_id: str, timeout: float, last_status: str | None) -> None:
        self.request_id = request_id
        self.timeout = timeout
        self.last_status = last_status
        super().__init__(
            f"request {request_id} was still {last_status or 'unknown'} after {timeout:g} s;"
            " the job keeps running on the server: wait again later or raise the timeout."
        )


class DownloadError(SsembleError):
    """A clip could not be downloaded (see the message for the cause)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}

HINT_API_KEY = (
    "Check the API key (api_key=... or SSEMBLE_API_KEY); keys start with sk_ssemble_ and are"
    " made at https://app.ssemble.com/api-keys."
)
HINT_PERMISSION = "Check the account's subscription and credit balance."
HINT_NOT_FOUND = "Check the request id; deleted requests are gone for good."
HINT_WRONG_BASE_URL = (
    "The answer is not the API's error envelope: base_url (or SSEMBLE_BASE_URL) does not point"
    " at the API; it ends in /api/v1."
)
HINT_QUOTA = "The quota is spent: wait for the reset time, or lower the call rate."
HINT_SERVER = "The server or a proxy failed; retrying later usually works."

_HINTS: dict[type[APIStatusError], str] = {
    AuthenticationError: HINT_API_KEY,
    PermissionDeniedError: HINT_PERMISSION,
    NotFoundError: HINT_NOT_FOUND,
    RateLimitError: HINT_QUOTA,
    ServerError: HINT_SERVER,
}


def with_hint(problem: str, hint: str) -> str:
    """``problem`` and ``hint`` as one message, with a full stop between them."""
    if not hint:
        return problem
    stop = "" if problem.endswith((".", "!", "?", ":", ";")) else "."
    return f"{problem}{stop} {hint}"


def snippet_of(body: bytes, limit: int = SNIPPET_CHARS) -> str:
    """A short, printable, single-line excerpt of a body."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _envelope(body: bytes) -> tuple[str | None, str | None, Any] | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, Mapping):
        return None
    error = parsed.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) and code else None,
            message if isinstance(message, str) and message else None,
            error.get("details"),
        )
    if isinstance(error, str):
        message = parsed.get("message")
        return error, message if isinstance(message, str) else None, None
    return None


def error_from_response(
    status: int,
    body: bytes,
    content_type: str,
    rate_limit: RateLimit | None,
    *,
    retry_after: float | None = None,
) -> APIStatusError:
    """Map an error response to the exception for its status. Never raises.

    A JSON error envelope gives ``code``, ``message`` and ``details``; any other body (a
    proxy's HTML page, an empty body) keeps a short snippet as the message.
    """
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIStatusError)
    parsed = _envelope(body)
    if parsed is not None:
        code, message, details = parsed
        code = code or "unknown_error"
        message = message or f"API error ({status})"
    else:
        code, details = "unknown_error", None
        kind = content_type or "no content type"
        shown = snippet_of(body)
        message = (
            f"non-JSON error body ({kind}): {shown!r}" if shown else f"empty error body ({kind})"
        )
    hint = _HINTS.get(cls, "")
    if cls is NotFoundError and parsed is None:
        hint = HINT_WRONG_BASE_URL  # the API always answers its envelope; a 404 page is not it
    if cls is RateLimitError:
        if retry_after is None and isinstance(details, Mapping):
            value = details.get("retryAfter")
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                retry_after = float(value)
        return RateLimitError(
            message,
            status=status,
            code=code,
            details=details,
            rate_limit=rate_limit,
            hint=hint,
            retry_after=retry_after,
        )
    return cls(message, status=status, code=code, details=details, rate_limit=rate_limit, hint=hint)
