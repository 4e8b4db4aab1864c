"""The public surface is pinned: adding or removing a name must be deliberate."""

from __future__ import annotations

import ssemble_async

EXPECTED = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CallResult",
    "Client",
    "ClipOutcome",
    "ClipState",
    "ConfigurationError",
    "ConnectionSettings",
    "CreatedRequest",
    "DownloadError",
    "DownloadReport",
    "DownloadStats",
    "DownloadStream",
    "GameVideo",
    "InvalidArgumentError",
    "InvalidRequestIdError",
    "Lease",
    "MemeHook",
    "MusicTrack",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "Priority",
    "ProgressCallback",
    "QuotaBudget",
    "QuotaGovernor",
    "QuotaPolicy",
    "RateLimit",
    "RateLimitError",
    "Reach",
    "RequestFailedError",
    "RequestNotReadyError",
    "RequestState",
    "RequestStatus",
    "RequestSummary",
    "ResponseValidationError",
    "RetryPolicy",
    "Sentence",
    "ServerError",
    "Short",
    "ShortsRequest",
    "SsembleError",
    "Template",
    "TimeAdjustment",
    "TimeRange",
    "Timeouts",
    "TransferProgress",
    "WaitTimeoutError",
    "__version__",
    "instant_waits",
    "validate_request_id",
]


def test_all_is_pinned() -> None:
    assert ssemble_async.__all__ == EXPECTED
    assert len(set(EXPECTED)) == len(EXPECTED)


def test_every_name_is_importable() -> None:
    for name in ssemble_async.__all__:
        assert getattr(ssemble_async, name) is not None


def test_version_is_a_string() -> None:
    assert isinstance(ssemble_async.__version__, str)
    assert ssemble_async.__version__.count(".") >= 2
