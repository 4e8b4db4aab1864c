"""The API session: the one place that sends API requests.

It holds the API key (and sends it only to the API host, never following redirects), has
every try granted by the quota governor, retries by [`RetryPolicy`][ssemble_async.RetryPolicy],
parses the quota headers of every response and translates aiohttp's exceptions into ours.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import errno
import logging
import os
from collections.abc import Mapping
from typing import Any

import aiohttp
import anyio
import attrs

from ssemble_async import _clock
from ssemble_async._config import (
    ConnectionSettings,
    QuotaPolicy,
    RetryPolicy,
    Timeouts,
    proxy_for,
    retry_delay,
)
from ssemble_async._converter import MAX_BODY_BYTES
from ssemble_async._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    ResponseValidationError,
    SsembleError,
    error_from_response,
)
from ssemble_async._quota import CallResult, Priority, QuotaGovernor, Reach
from ssemble_async._ratelimit import RateLimit, parse_rate_limit, parse_retry_after

__all__ = ["APISession", "Response", "Secret", "describe_retry"]

logger = logging.getLogger("ssemble_async")

REDACTED = "[REDACTED]"
_RETRY_STATUSES = frozenset({408, 429})


class Secret:
    """A string that never shows itself in a repr, a str or a log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one header that needs it."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the secret replaced."""
        return text.replace(self._value, REDACTED) if self._value else text

    def redact_bytes(self, data: bytes) -> bytes:
        """``data`` with every occurrence of the secret (UTF-8) replaced."""
        return data.replace(self._value.encode(), REDACTED.encode()) if self._value else data

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    __str__ = __repr__


@attrs.frozen(kw_only=True)
class Response:
    """A complete API response (the body fully read)."""

    status: int
    body: bytes
    content_type: str
    rate_limit: RateLimit | None
    retry_after: str | None
    date: dt.datetime | None = None


def _http_date(raw: str | None) -> dt.datetime | None:
    """The time of an HTTP ``Date`` header, or None."""
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def describe_retry(retry: int, retries: int, delay: float, reason: str) -> str:
    """A retry in a few words, e.g. ``retry 2/4 in 3 s: connection refused``."""
    return f"retry {retry}/{retries} in {round(delay, 1):g} s: {reason}"


def _retry_reason(status: int | None, error: SsembleError) -> str:
    """Why an API call is retried, without URLs or the server's words."""
    if status is not None:
        return f"the API answered {status}"
    if isinstance(error, APITimeoutError):
        return "no answer within the timeouts"
    cause = error.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        code = cause.os_error.errno
        if code is not None and code in errno.errorcode:
            return os.strerror(code).lower()  # "connection refused", "network is unreachable"
        return "cannot connect"
    return f"the connection failed ({type(cause or error).__name__})"


def _retryable_status(status: int, idempotent: bool) -> bool:
    if status == 429:
        return True
    return idempotent and (status in _RETRY_STATUSES or status >= 500)


class APISession:
    """Sends requests to the API with the key, retries and the quota governor."""

    def __init__(
        self,
        *,
        api_key: Secret,
        base_url: str,
        session: aiohttp.ClientSession | None,
        retry: RetryPolicy,
        timeouts: Timeouts,
        quota: QuotaPolicy,
        governor: QuotaGovernor,
        user_agent: str,
        connection: ConnectionSettings,
    ) -> None:
        self._key = api_key
        self.base_url = base_url
        self._session = session
        self._owns_session = session is None
        self.retry = retry
        self.timeouts = timeouts
        self.quota = quota
        self.governor = governor
        self.user_agent = user_agent
        self.connection = connection
        self.rate_limit: RateLimit | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or (self._owns_session and self._session.closed):
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=self.connection.limit_per_host),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the aiohttp session when this object created it; a borrowed one stays open."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {
            "X-API-Key": self._key.reveal(),
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _read_body(self, response: aiohttp.ClientResponse, what: str) -> bytes:
        length = response.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise ResponseValidationError(
                f"{what}: the response announces {length} bytes, over the {MAX_BODY_BYTES}-byte"
                " cap for API responses; refusing to read it.",
                status=response.status,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ResponseValidationError(
                    f"{what}: the response body passed the {MAX_BODY_BYTES}-byte cap for API"
                    " responses; refusing to read more.",
                    status=response.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send_once(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any
    ) -> Response:
        what = f"{method} {path}"
        url = self.base_url + path
        try:
            async with self._get_session().request(
                method,
                url,
                params=params,
                json=body,
                headers=self._headers(body is not None),
                timeout=self.timeouts.to_aiohttp(),
                allow_redirects=False,
                proxy=proxy_for(url, self.connection, os.environ),
                ssl=self.connection.ssl,
                raise_for_status=False,  # a borrowed session may have it on: statuses are ours
            ) as response:
                # The key is scrubbed from anything the server echoes back (an error page, a
                # debugging proxy) before it can reach a message, a snippet or a model.
                payload = self._key.redact_bytes(await self._read_body(response, what))
                return Response(
                    status=response.status,
                    body=payload,
                    content_type=response.content_type,
                    rate_limit=parse_rate_limit(response.headers),
                    retry_after=response.headers.get("Retry-After"),
                    date=_http_date(response.headers.get("Date")),
                )
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutError subclasses
            raise APITimeoutError(
                f"{what}: no answer from {self.base_url} within the timeouts"
                f" (connect {self.timeouts.connect} s, read {self.timeouts.read} s)."
                " Check the network, or raise Timeouts."
            ) from exc
        except aiohttp.ClientProxyConnectionError as exc:
            raise APIConnectionError(
                f"{what}: cannot connect to the proxy {exc.host}:{exc.port} for {self.base_url}"
                f" ({exc.os_error.strerror or exc}). Check the proxy settings (ConnectionSettings,"
                " or the http_proxy/https_proxy/no_proxy variables).",
                request_sent=False,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"{what}: cannot connect to {self.base_url} ({exc.os_error.strerror or exc})."
                " Check the network and base_url.",
                request_sent=False,
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"{what}: the connection to {self.base_url} failed"
                f" ({exc.__class__.__name__}: {self._key.redact(str(exc)) or 'no detail'})."
                " Check the network; the call may be retried."
            ) from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        idempotent: bool = True,
        priority: Priority = Priority.URGENT,
        deadline: float | None = None,
        wait_for_quota: bool = True,
    ) -> Response:
        """Send one API call, with retries; return a 2xx response or raise.

        Each try is granted by the quota governor first (``priority`` decides who goes first
        when the budget is short). ``idempotent=False`` (create) retries only when the server
        certainly did not act on the call: the connection was refused, or it answered 429.
        ``deadline`` (package clock) bounds every wait of the call: quota, backoff and
        ``Retry-After`` alike; a wait that would pass it raises the error instead.
        ``wait_for_quota=False``: a try the governor cannot grant at once raises
        ``RateLimitError`` (code ``quota_past_deadline``, nothing sent) instead of waiting.
        """
        policy = self.retry
        attempt = 0
        while True:
            attempt += 1
            grant_by = deadline if wait_for_quota else _clock.monotonic()
            response, error = await self._try(method, path, params, body, priority, grant_by)
            if response is not None and 200 <= response.status < 300:
                return response
            if response is None:
                assert isinstance(error, APIConnectionError)
                # A call that never reached the server is safe to repeat, even a create.
                retryable = idempotent or not error.request_sent
                status, retry_after = None, None
            else:
                error = self._error(response)
                status = response.status
                retryable = _retryable_status(status, idempotent)
                retry_after = (
                    error.retry_after
                    if isinstance(error, RateLimitError)
                    else parse_retry_after(response.retry_after, _clock.utcnow())
                )
            assert error is not None
            if not retryable or attempt >= policy.attempts:
                raise error
            delay = self._retry_wait(policy, attempt, status, retry_after)
            # A 429 asking for more than a backoff wait means the quota is spent: that is
            # the quota policy's call. Anything longer than both limits is not waited for.
            if (
                status == 429 and delay > policy.max_wait and self.quota.on_exhausted == "raise"
            ) or (delay > max(policy.max_wait, self.quota.max_wait)):
                raise error
            if deadline is not None and _clock.monotonic() + delay > deadline:
                raise error
            # a wait of 0: the governor holds the try for the quota, and says so itself
            logger.log(
                logging.WARNING if delay > 0 else logging.INFO,
                "%s (%s %s)",
                describe_retry(attempt, policy.attempts - 1, delay, _retry_reason(status, error)),
                method,
                path,
            )
            await _clock.sleep(delay)

    def _retry_wait(
        self,
        policy: RetryPolicy,
        attempt: int,
        status: int | None,
        retry_after: float | None,
    ) -> float:
        """Seconds before the next try; 0 when the governor will hold it for the quota."""
        budget = self.governor.budget()
        if status == 429 and retry_after is None:
            until = budget.seconds_until_reset(_clock.utcnow())
            available = budget.available()
            if available is not None and available <= 0 and until is not None and until > 0:
                # spent until a reset still to come: the governor holds the next try until
                # then, by the quota policy and on the server's clock
                return 0.0
        return retry_delay(
            policy,
            attempt,
            status=status,
            retry_after=retry_after,
            # the budget's view: the reset on our clock (the response's is on the server's)
            rate_limit=budget.as_rate_limit() if budget.known else None,
            now=_clock.utcnow(),
        )

    async def _try(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        priority: Priority,
        deadline: float | None,
    ) -> tuple[Response | None, SsembleError | None]:
        """One try, granted and settled by the governor: the response, or the error."""
        lease = await self.governor.acquire(priority, deadline=deadline)
        sent_at = _clock.utcnow()
        result = CallResult(reach=Reach.MAYBE, sent_at=sent_at)
        started = _clock.monotonic()
        try:
            try:
                with _clock.real_work():
                    response = await self._send_once(method, path, params, body)
            except APIConnectionError as exc:
                reach = Reach.MAYBE if exc.request_sent else Reach.NO
                result = CallResult(reach=reach, sent_at=sent_at)
                return None, exc
            result = CallResult(
                reach=Reach.YES,
                status=response.status,
                rate_limit=response.rate_limit,
                date=response.date,
                sent_at=sent_at,
                received_at=_clock.utcnow(),
            )
        finally:
            with anyio.CancelScope(shield=True):
                await self.governor.settle(lease, result)
        if response.rate_limit is not None:
            self.rate_limit = response.rate_limit
        logger.debug(
            "%s %s -> %d in %.2f s (quota left this hour: %s)",
            method,
            path,
            response.status,
            _clock.monotonic() - started,
            "?" if self.rate_limit is None else self.rate_limit.remaining_hour,
        )
        return response, None

    def _error(self, response: Response) -> APIStatusError:
        return error_from_response(
            response.status,
            response.body,  # the key already scrubbed from it
            response.content_type,
            response.rate_limit,
            retry_after=parse_retry_after(response.retry_after, _clock.utcnow()),
        )
