"""Parsing of the ``X-RateLimit-*`` quota headers (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Mapping

import attrs

__all__ = ["RateLimit", "parse_rate_limit", "parse_retry_after", "parse_timestamp"]

_EPOCH_MS_THRESHOLD = 10_000_000_000  # numbers above this are epoch milliseconds


@attrs.frozen(kw_only=True)
class RateLimit:
    """The account quota as the server last reported it.

    Every field may be ``None``: each header is parsed on its own and a proxy error or a
    per-endpoint 429 may carry only some of them.

    Attributes:
        limit_hour: ``X-RateLimit-Limit-Hour``, the hourly cap (100 on the standard tier).
        remaining_hour: ``X-RateLimit-Remaining-Hour``, calls left in the current hour.
        limit_day: ``X-RateLimit-Limit-Day``, the daily cap.
        remaining_day: ``X-RateLimit-Remaining-Day``, calls left today.
        reset: ``X-RateLimit-Reset``, when the hourly window resets (timezone-aware, UTC).
    """

    limit_hour: int | None = None
    remaining_hour: int | None = None
    limit_day: int | None = None
    remaining_day: int | None = None
    reset: dt.datetime | None = None

    @property
    def exhausted(self) -> bool:
        """True when the server said no call is left this hour."""
        return self.remaining_hour is not None and self.remaining_hour <= 0

    def seconds_until_reset(self, now: dt.datetime) -> float | None:
        """Seconds from ``now`` until ``reset`` (never negative), or None if unknown."""
        if self.reset is None:
            return None
        return max(0.0, (self.reset - now).total_seconds())


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        try:
            return int(float(raw.strip()))
        except (ValueError, OverflowError):  # not a number, or an infinite one ("1e400")
            return None


def parse_timestamp(raw: str) -> dt.datetime | None:
    """Parse an ISO 8601 timestamp, or a number of epoch seconds or milliseconds.

    Returns a timezone-aware datetime (naive values are taken as UTC), or None when the
    text is neither.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            return None
        if abs(number) > _EPOCH_MS_THRESHOLD:
            number /= 1000.0
        try:
            return dt.datetime.fromtimestamp(number, tz=dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """Read the five ``X-RateLimit-*`` headers; None when none of them is present.

    ``headers`` must look names up case-insensitively (aiohttp's ``CIMultiDictProxy`` does).
    """
    reset_raw = headers.get("X-RateLimit-Reset")
    limit = RateLimit(
        limit_hour=_int_header(headers, "X-RateLimit-Limit-Hour"),
        remaining_hour=_int_header(headers, "X-RateLimit-Remaining-Hour"),
        limit_day=_int_header(headers, "X-RateLimit-Limit-Day"),
        remaining_day=_int_header(headers, "X-RateLimit-Remaining-Day"),
        reset=parse_timestamp(reset_raw) if reset_raw is not None else None,
    )
    if limit == RateLimit():
        return None
    return limit


def parse_retry_after(raw: str | None, now: dt.datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    if raw is None:
        return None
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return max(0.0, (when - now).total_seconds())
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
