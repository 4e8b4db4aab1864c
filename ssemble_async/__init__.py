"""ssemble_async: an asyncio client for the Ssemble AI-clipping API.

Everything public is importable from here; submodules other than
``ssemble_async.testing`` are private. Names load on first use (PEP 562), so importing the
package costs next to nothing until a client or a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        DownloadPlan,
        DownloadReport,
        DownloadStats,
        PlannedAction,
        PlannedClip,
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
    from ssemble_async._quota import (
        CallResult,
        Lease,
        Priority,
        QuotaBudget,
        QuotaGovernor,
        Reach,
    )
    from ssemble_async._ratelimit import RateLimit
    from ssemble_async._version import __version__

#: Where each public name lives, loaded on first access.
_WHERE: dict[str, str] = {
    "Client": "ssemble_async._client",
    "ProgressCallback": "ssemble_async._client",
    "validate_request_id": "ssemble_async._client",
    "instant_waits": "ssemble_async._clock",
    "ConnectionSettings": "ssemble_async._config",
    "PollPolicy": "ssemble_async._config",
    "QuotaPolicy": "ssemble_async._config",
    "RetryPolicy": "ssemble_async._config",
    "Timeouts": "ssemble_async._config",
    "ClipOutcome": "ssemble_async._download_models",
    "ClipState": "ssemble_async._download_models",
    "DownloadPlan": "ssemble_async._download_models",
    "DownloadReport": "ssemble_async._download_models",
    "PlannedAction": "ssemble_async._download_models",
    "PlannedClip": "ssemble_async._download_models",
    "DownloadStats": "ssemble_async._download_models",
    "TransferProgress": "ssemble_async._download_models",
    "APIConnectionError": "ssemble_async._errors",
    "APIStatusError": "ssemble_async._errors",
    "APITimeoutError": "ssemble_async._errors",
    "AuthenticationError": "ssemble_async._errors",
    "BadRequestError": "ssemble_async._errors",
    "ConfigurationError": "ssemble_async._errors",
    "DownloadError": "ssemble_async._errors",
    "InvalidArgumentError": "ssemble_async._errors",
    "InvalidRequestIdError": "ssemble_async._errors",
    "NotFoundError": "ssemble_async._errors",
    "PermissionDeniedError": "ssemble_async._errors",
    "RateLimitError": "ssemble_async._errors",
    "RequestFailedError": "ssemble_async._errors",
    "RequestNotReadyError": "ssemble_async._errors",
    "ResponseValidationError": "ssemble_async._errors",
    "ServerError": "ssemble_async._errors",
    "SsembleError": "ssemble_async._errors",
    "WaitTimeoutError": "ssemble_async._errors",
    "CreatedRequest": "ssemble_async._models",
    "GameVideo": "ssemble_async._models",
    "MemeHook": "ssemble_async._models",
    "MusicTrack": "ssemble_async._models",
    "RequestState": "ssemble_async._models",
    "RequestStatus": "ssemble_async._models",
    "RequestSummary": "ssemble_async._models",
    "Sentence": "ssemble_async._models",
    "Short": "ssemble_async._models",
    "ShortsRequest": "ssemble_async._models",
    "Template": "ssemble_async._models",
    "TimeAdjustment": "ssemble_async._models",
    "TimeRange": "ssemble_async._models",
    "DownloadStream": "ssemble_async._pipeline",
    "CallResult": "ssemble_async._quota",
    "Lease": "ssemble_async._quota",
    "Priority": "ssemble_async._quota",
    "QuotaBudget": "ssemble_async._quota",
    "QuotaGovernor": "ssemble_async._quota",
    "Reach": "ssemble_async._quota",
    "RateLimit": "ssemble_async._ratelimit",
    "__version__": "ssemble_async._version",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ssemble_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
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
    "DownloadPlan",
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
    "PlannedAction",
    "PlannedClip",
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
