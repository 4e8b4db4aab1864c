"""ssemble_async: an asyncio client for the Ssemble AI-clipping API.

Everything public is importable from here; submodules other than
``ssemble_async.testing`` are private.
"""

from ssemble_async._client import Client, ProgressCallback, validate_request_id
from ssemble_async._clock import instant_waits
from ssemble_async._config import (
    ConnectionSettings,
    PollPolicy,
    QuotaPolicy,
    RetryPolicy,
    Timeouts,
)
from ssemble_async._download_models import (
    ClipOutcome,
    ClipState,
    DownloadReport,
    DownloadStats,
    TransferProgress,
)
from ssemble_async._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InvalidArgumentError,
    InvalidRequestIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestFailedError,
    RequestNotReadyError,
    ResponseValidationError,
    ServerError,
    SsembleError,
    WaitTimeoutError,
)
from ssemble_async._models import (
    CreatedRequest,
    GameVideo,
    MemeHook,
    MusicTrack,
    RequestState,
    RequestStatus,
    RequestSummary,
    Sentence,
    Short,
    ShortsRequest,
    Template,
    TimeAdjustment,
    TimeRange,
)
from ssemble_async._pipeline import DownloadStream
from ssemble_async._ratelimit import RateLimit
from ssemble_async._version import __version__

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
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
    "MemeHook",
    "MusicTrack",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "ProgressCallback",
    "QuotaPolicy",
    "RateLimit",
    "RateLimitError",
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
