"""The public surface is pinned: adding or removing a name must be deliberate."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_all_is_pinned() -> None:
    assert ssemble_async.__all__ == EXPECTED
    assert len(set(EXPECTED)) == len(EXPECTED)


def test_every_name_is_importable() -> None:
    for name in ssemble_async.__all__:
        assert getattr(ssemble_async, name) is not None


def test_version_is_a_string() -> None:
    assert isinstance(ssemble_async.__version__, str)
    assert ssemble_async.__version__.count(".") >= 2


def test_every_name_loads_from_the_module_the_package_says() -> None:
    where: dict[str, str] = ssemble_async._WHERE  # type: ignore[attr-defined]
    assert sorted(where) == sorted(EXPECTED)
    for name, module in where.items():
        assert getattr(sys.modules.get(module) or __import__(module), name, None) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Clinet'"):
        _ = ssemble_async.Clinet  # type: ignore[attr-defined]
    assert "Client" in dir(ssemble_async)


def _modules_after(code: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(found.stdout.split())


def test_importing_the_package_or_the_command_line_loads_no_http_or_terminal_stack() -> None:
    heavy = {"aiohttp", "rich", "anyio", "cattrs", "attrs", "aiofiles", "importlib.metadata"}
    for code in ("import ssemble_async", "from ssemble_async._cli import main"):
        assert not _modules_after(code) & heavy, code
    # and a name, once used, loads what it needs
    assert "aiohttp" in _modules_after("from ssemble_async import Client")
