"""Configuration values (frozen, keyword-only) and the pure retry, polling and proxy decisions."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from collections.abc import Mapping
from ssl import SSLContext
from typing import Literal
from urllib.parse import SplitResult, urlsplit

import aiohttp
import attrs

from ssemble_async._ratelimit import RateLimit

__all__ = [
    "DEFAULT_BASE_URL",
    "ConnectionSettings",
    "PollPolicy",
    "QuotaPolicy",
    "RetryPolicy",
    "Timeouts",
    "backoff_delay",
    "proxy_for",
    "retry_delay",
]

DEFAULT_BASE_URL = "https://aiclipping.ssemble.com/api/v1"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed API calls are retried: capped exponential backoff with jitter.

    GET and DELETE are retried after connection errors, timeouts, 408, 429 and 5xx;
    ``create_short`` only when the server certainly did not act (connection refused, 429).

    Attributes:
        attempts: total tries of one call, the first included (1 disables retries).
        initial_wait: the wait before the second try, seconds.
        max_wait: no backoff wait is longer than this, seconds.
        jitter: random extra of up to this fraction of each wait (0 disables it).
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    initial_wait: float = attrs.field(default=0.5, validator=_positive)
    max_wait: float = attrs.field(default=30.0, validator=_positive)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)


@attrs.frozen(kw_only=True)
class Timeouts:
    """Time limits of each API call, in seconds (None: no limit).

    Attributes:
        connect: to open a connection (DNS, TCP and TLS).
        read: between two reads of the response.
        total: for the whole call, one try (None by default: ``read`` bounds a silent server).
    """

    connect: float | None = 10.0
    read: float | None = 60.0
    total: float | None = None

    def to_aiohttp(self) -> aiohttp.ClientTimeout:
        """The equivalent ``aiohttp.ClientTimeout``."""
        return aiohttp.ClientTimeout(
            total=self.total, sock_connect=self.connect, sock_read=self.read
        )


@attrs.frozen(kw_only=True)
class QuotaPolicy:
    """What the client does when the hourly quota is spent (``X-RateLimit-Remaining-Hour: 0``).

    Attributes:
        on_exhausted: ``"wait"`` for the reset before sending, or ``"raise"``
            [`RateLimitError`][ssemble_async.RateLimitError] at once. Either way no call the server
            would refuse is sent.
        max_wait: the longest quota wait, seconds; a longer one raises instead.
    """

    on_exhausted: Literal["wait", "raise"] = "wait"
    max_wait: float = attrs.field(default=3600.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How the client's watcher spaces its rounds (every wait of a client shares them).

    The interval starts at ``initial``, grows by ``factor`` each round up to ``maximum``, and
    is stretched further when the hourly quota, less the final read each waiting job still
    needs, would not last until its reset otherwise.

    Attributes:
        initial: first interval, seconds.
        maximum: longest interval while the quota is healthy, seconds.
        factor: growth per round.
        reserve: calls of the hourly quota kept back for what follows the wait.
    """

    initial: float = attrs.field(default=10.0, validator=_positive)
    maximum: float = attrs.field(default=60.0, validator=_positive)
    factor: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))
    reserve: int = attrs.field(default=5, validator=attrs.validators.ge(0))


_PROXY_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _split_url(url: str) -> tuple[SplitResult, str, int | None] | None:
    """The parts, host and port of ``url``; None when it has no host or a bad port."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    return None if not host else (parts, host, port)


def _hide_credentials(url: str) -> str:
    """``url`` with its user and password, if any, replaced by ``***``."""
    split = _split_url(url)
    if split is None:
        return "***" if "@" in url else url
    parts = split[0]
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _check_proxy(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    split = _split_url(value)
    if split is None or split[0].scheme not in _PROXY_SCHEMES:
        raise ValueError(
            f"{attribute.name} must be an http:// or https:// URL with a host, such as"
            f" http://proxy.example:3128, got {_hide_credentials(value)!r}"
        )


@attrs.frozen(kw_only=True)
class ConnectionSettings:
    """How one HTTP session connects: proxy, TLS verification and connections per host.

    [`Client`][ssemble_async.Client] has two sessions, each with its own settings: ``connection=``
    for the API calls and ``download_connection=`` for the clip downloads. The proxy of a request is
    chosen by the rules of ``curl``: ``proxy`` when given; else, with ``trust_env``, the
    ``http_proxy`` or ``https_proxy`` variable for the URL's scheme, else ``all_proxy``,
    unless the host is listed in ``no_proxy``. The variables are read in lower case first,
    then in upper case, at each request. ``~/.netrc`` is never read (aiohttp's own
    ``trust_env`` would read it and send its passwords to the hosts it names).

    Attributes:
        proxy: an ``http://`` or ``https://`` proxy for every request of the session,
            whatever the environment says; it may hold credentials
            (``http://user:password@proxy:3128``), which are sent only to the proxy and
            hidden from the repr.
        trust_env: without ``proxy``, take the proxy from the environment variables
            ``http_proxy``, ``https_proxy``, ``all_proxy`` and ``no_proxy`` (False: connect
            directly).
        ssl: True to verify TLS certificates with the system's authorities, an
            ``ssl.SSLContext`` to verify with your own (a private CA), False to skip the
            verification (never in production).
        limit_per_host: connections open at once to one host, 0 for no limit; applies to a
            session the client makes itself (not to a borrowed one).
    """

    proxy: str | None = attrs.field(
        default=None,
        validator=_check_proxy,
        repr=lambda value: repr(None if value is None else _hide_credentials(value)),
    )
    trust_env: bool = True
    ssl: SSLContext | bool = attrs.field(
        default=True, validator=attrs.validators.instance_of((SSLContext, bool))
    )
    limit_per_host: int = attrs.field(default=0, validator=attrs.validators.ge(0))


def _environment(environ: Mapping[str, str], name: str) -> str | None:
    """A proxy variable, lower case first: one set empty counts as unset, and hides the other.

    Upper-case ``HTTP_PROXY`` is ignored in a CGI process (``REQUEST_METHOD`` set), where
    a client of the web server sets it with a ``Proxy:`` header.
    """
    value = environ.get(name)
    if value is None and not (name == "http_proxy" and "REQUEST_METHOD" in environ):
        value = environ.get(name.upper())
    return (value or "").strip() or None


def _no_proxy_entry(entry: str) -> tuple[str, int | None] | None:
    """The host (or address, or CIDR block) and the port of one ``no_proxy`` entry."""
    port: str | None = None
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif entry.count(":") == 1:
        name, _, port = entry.partition(":")
    else:
        name = entry  # a name, an IPv4 address, an IPv6 address or a CIDR block
    if port is not None and not (port.isascii() and port.isdigit()):
        return None
    name = name.removeprefix("*").lstrip(".").rstrip(".")
    return (name, None if port is None else int(port)) if name else None


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """True when ``no_proxy`` lists the host (or one of its parent domains) and its port."""
    host = host.rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        parsed = _no_proxy_entry(entry)
        if parsed is None or (parsed[1] is not None and parsed[1] != port):
            continue
        name = parsed[0]
        if address is None:
            if host == name or host.endswith("." + name):
                return True
            continue
        try:
            if address in ipaddress.ip_network(name, strict=False):
                return True
        except ValueError:
            continue
    return False


def proxy_for(url: str, settings: ConnectionSettings, environ: Mapping[str, str]) -> str | None:
    """The proxy to send a request to ``url`` through, or None to connect directly.

    The rules of ``curl``, in order:

    1. ``settings.proxy``, for every URL (``no_proxy`` does not apply to it).
    2. Nothing else when ``settings.trust_env`` is False.
    3. ``<scheme>_proxy`` (``http_proxy`` for an ``http://`` URL, ``https_proxy`` for an
       ``https://`` one), else ``all_proxy``; each read in lower case first, then in upper
       case (one set empty counts as unset and hides its upper-case twin; upper-case
       ``HTTP_PROXY`` is ignored in a CGI process). A value without a scheme is an
       ``http://`` proxy; one of another scheme (``socks5://``), which aiohttp cannot use,
       is ignored.
    4. None when ``no_proxy`` lists the host: comma-separated entries, case-insensitive,
       ``*`` for every host; an entry matches that host and its subdomains (a leading
       ``.`` or ``*.`` changes nothing), an IP address (IPv6 with or without brackets) or
       a CIDR block matches the addresses in it, and ``:port`` limits an entry to that port.
    """
    if settings.proxy is not None:
        return settings.proxy
    if not settings.trust_env:
        return None
    split = _split_url(url)
    if split is None:
        return None
    parts, host, port = split
    scheme = parts.scheme
    proxy = _environment(environ, f"{scheme}_proxy") or _environment(environ, "all_proxy")
    if proxy is None:
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    proxy_split = _split_url(proxy)
    if proxy_split is None or proxy_split[0].scheme not in _PROXY_SCHEMES:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    if _bypassed(host, port, _environment(environ, "no_proxy") or ""):
        return None
    return proxy


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """The backoff wait after failed try number ``attempt`` (1-based), within bounds.

    Always between ``min(initial_wait, max_wait)`` and ``max_wait``.
    """
    base = min(policy.max_wait, policy.initial_wait * 2.0 ** min(attempt - 1, 64))
    extra = base * policy.jitter * (rng or random).random()
    return min(policy.max_wait, base + extra)


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    status: int | None,
    retry_after: float | None,
    rate_limit: RateLimit | None,
    now: dt.datetime,
    rng: random.Random | None = None,
) -> float:
    """The wait before retrying a call whose try number ``attempt`` failed.

    On a 429: the ``Retry-After`` value, else the time to ``X-RateLimit-Reset`` when the
    hourly quota is spent and the reset is still to come, else the backoff (never 0 s). On
    a 503 with ``Retry-After``: that value, capped at ``max_wait``. Anything else (a 5xx
    never waits for the quota reset): the backoff.
    """
    if status == 429:
        if retry_after is not None:
            return retry_after
        if rate_limit is not None and rate_limit.exhausted:
            until_reset = rate_limit.seconds_until_reset(now)
            if until_reset:  # a reset already past is no reason to retry at once
                return until_reset
    elif retry_after is not None and status is not None and status >= 500:
        return min(retry_after, policy.max_wait)
    return backoff_delay(policy, attempt, rng)
