"""ConnectionSettings and proxy_for: the curl rules for choosing a proxy (pure; Hypothesis)."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssemble_async import ConnectionSettings
from ssemble_async._config import proxy_for

ENV = ConnectionSettings()
PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        # the variable of the URL's scheme, else all_proxy
        ("http://example.com/a", {"http_proxy": PROXY}, PROXY),
        ("https://example.com/a", {"http_proxy": PROXY}, None),
        ("https://example.com/a", {"https_proxy": PROXY}, PROXY),
        ("http://example.com/a", {"https_proxy": PROXY}, None),
        ("https://example.com/a", {"all_proxy": PROXY}, PROXY),
        ("http://example.com/a", {"ALL_PROXY": PROXY}, PROXY),
        ("https://example.com", {"https_proxy": PROXY, "all_proxy": "http://other:1"}, PROXY),
        ("HTTPS://EXAMPLE.COM/", {"HTTPS_PROXY": PROXY}, PROXY),
        ("http://example.com/a", {}, None),
        # lower case before upper case; one set empty hides its twin
        ("http://example.com", {"http_proxy": PROXY, "HTTP_PROXY": "http://upper:1"}, PROXY),
        ("http://example.com", {"HTTP_PROXY": PROXY}, PROXY),
        ("http://example.com", {"http_proxy": "", "HTTP_PROXY": PROXY}, None),
        ("http://example.com", {"http_proxy": "  ", "all_proxy": PROXY}, PROXY),
        ("http://example.com", {"http_proxy": f"  {PROXY} "}, PROXY),
        # CGI: HTTP_PROXY may come from a request's Proxy header
        ("http://example.com", {"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"}, None),
        ("http://example.com", {"http_proxy": PROXY, "REQUEST_METHOD": "GET"}, PROXY),
        ("https://example.com", {"HTTPS_PROXY": PROXY, "REQUEST_METHOD": "GET"}, PROXY),
        # a value without a scheme is an http proxy; one aiohttp cannot use is ignored
        ("http://example.com", {"http_proxy": "proxy.corp:3128"}, "http://proxy.corp:3128"),
        ("https://example.com", {"https_proxy": "https://p:443"}, "https://p:443"),
        ("http://example.com", {"http_proxy": "socks5://proxy.corp:1080"}, None),
        ("http://example.com", {"all_proxy": "socks5h://proxy.corp:1080"}, None),
        ("http://example.com", {"http_proxy": "http://[::1"}, None),
        ("http://example.com", {"http_proxy": "http://u:p@proxy:1"}, "http://u:p@proxy:1"),
        # a URL without a host is never proxied
        ("http:///path", {"http_proxy": PROXY}, None),
        ("http://example.com:99999/", {"http_proxy": PROXY}, None),
    ],
)
def test_which_variable(url: str, environ: dict[str, str], expected: str | None) -> None:
    assert proxy_for(url, ENV, environ) == expected


@pytest.mark.parametrize(
    ("url", "no_proxy", "bypassed"),
    [
        ("http://example.com/", "example.com", True),
        ("http://a.b.example.com/", "example.com", True),
        ("http://notexample.com/", "example.com", False),
        ("http://example.com.evil/", "example.com", False),
        ("http://example.com/", ".example.com", True),
        ("http://www.example.com/", ".example.com", True),
        ("http://www.example.com/", "*.example.com", True),
        ("http://example.com/", "www.example.com", False),
        ("http://EXAMPLE.com/", "Example.COM", True),
        ("http://example.com./", "example.com", True),
        ("http://example.com/", "example.com.", True),
        ("http://example.com/", " other.org , example.com ", True),
        ("http://example.com/", "other.org,,", False),
        ("http://example.com/", "", False),
        ("http://example.com/", "*", True),
        ("http://example.com/", "other.org, *", True),
        ("http://example.com/", "*example", False),
        # ports: explicit or the scheme's default
        ("http://example.com:8080/", "example.com:8080", True),
        ("http://example.com:8081/", "example.com:8080", False),
        ("http://example.com/", "example.com:80", True),
        ("https://example.com/", "example.com:443", True),
        ("https://example.com/", "example.com:80", False),
        ("http://example.com/", "example.com:http", False),
        ("http://example.com/", "example.com:", False),
        # addresses: exact, CIDR blocks, IPv6 with or without brackets
        ("http://127.0.0.1:8080/", "127.0.0.1", True),
        ("http://127.0.0.1:8080/", "127.0.0.1:8080", True),
        ("http://127.0.0.1:8080/", "127.0.0.1:9090", False),
        ("http://127.0.0.12/", "127.0.0.1", False),
        ("http://127.0.0.1/", "0.0.1", False),
        ("http://10.2.3.4/", "10.0.0.0/8", True),
        ("http://11.2.3.4/", "10.0.0.0/8", False),
        ("http://127.0.0.1/", "localhost", False),
        ("http://[::1]:8080/", "::1", True),
        ("http://[::1]:8080/", "[::1]", True),
        ("http://[::1]:8080/", "[::1]:8080", True),
        ("http://[::1]:8080/", "[::1]:9090", False),
        ("http://[::1]/", "[::1]junk", False),
        ("http://[0:0::1]/", "::1", True),
        ("http://[fd00::5]/", "fd00::/8", True),
        ("http://[fe80::5]/", "fd00::/8", False),
        ("http://127.0.0.1/", "::1", False),
        ("http://[::1]/", "127.0.0.1", False),
    ],
)
def test_no_proxy(url: str, no_proxy: str, bypassed: bool) -> None:
    expected = None if bypassed else PROXY
    assert proxy_for(url, ENV, {"all_proxy": PROXY, "no_proxy": no_proxy}) == expected
    assert proxy_for(url, ENV, {"ALL_PROXY": PROXY, "NO_PROXY": no_proxy}) == expected


def test_no_proxy_lower_case_first() -> None:
    environ = {"all_proxy": PROXY, "no_proxy": "other.org", "NO_PROXY": "example.com"}
    assert proxy_for("http://example.com", ENV, environ) == PROXY


def test_explicit_proxy_wins_over_environment_and_no_proxy() -> None:
    settings = ConnectionSettings(proxy="http://mine:8080", trust_env=False)
    environ = {"http_proxy": PROXY, "no_proxy": "*"}
    assert proxy_for("http://example.com", settings, environ) == "http://mine:8080"
    assert proxy_for("https://example.com", ConnectionSettings(proxy="https://m:1"), {}) == (
        "https://m:1"
    )


def test_trust_env_false_ignores_the_environment() -> None:
    settings = ConnectionSettings(trust_env=False)
    assert proxy_for("http://example.com", settings, {"http_proxy": PROXY}) is None


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionSettings(proxy="socks5://proxy:1080")
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionSettings(proxy="proxy.corp:3128")
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionSettings(proxy="http://")
    with pytest.raises(ValueError, match="limit_per_host"):
        ConnectionSettings(limit_per_host=-1)
    with pytest.raises(TypeError, match="ssl"):
        ConnectionSettings(ssl="no")  # type: ignore[arg-type]
    context = ssl.create_default_context()
    assert ConnectionSettings(ssl=context, limit_per_host=4).ssl is context


def test_credentials_stay_out_of_reprs_and_errors() -> None:
    settings = ConnectionSettings(proxy="http://alice:s3cret@proxy.corp:3128")
    assert "s3cret" not in repr(settings)
    assert "alice" not in repr(settings)
    assert "proxy.corp:3128" in repr(settings)
    with pytest.raises(ValueError, match=r"socks5://\*\*\*@proxy\.corp:1080") as caught:
        ConnectionSettings(proxy="socks5://alice:s3cret@proxy.corp:1080")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match="got '\\*\\*\\*'") as caught:
        ConnectionSettings(proxy="http://alice:s3cret@[::1")
    assert "s3cret" not in str(caught.value)


_labels = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)  # not an IP
_hosts = st.lists(_labels, min_size=1, max_size=4).map(".".join)
_names = st.sampled_from(
    [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "REQUEST_METHOD",
    ]
)
_environs = st.dictionaries(_names, st.sampled_from(["", PROXY, "p:1", "example.com", "*"]))
_urls = st.builds(
    "{}://{}{}/x".format,
    st.sampled_from(["http", "https"]),
    _hosts,
    st.sampled_from(["", ":8080", ":443"]),
)


@given(url=_urls, environ=_environs)
def test_without_trust_env_never_a_proxy(url: str, environ: dict[str, str]) -> None:
    assert proxy_for(url, ConnectionSettings(trust_env=False), environ) is None


@given(url=_urls, environ=_environs, proxy=st.sampled_from([PROXY, "https://u:p@h:1"]))
def test_an_explicit_proxy_always_wins(url: str, environ: dict[str, str], proxy: str) -> None:
    assert proxy_for(url, ConnectionSettings(proxy=proxy), environ) == proxy


@given(url=_urls, environ=_environs)
def test_no_proxy_star_never_a_proxy(url: str, environ: dict[str, str]) -> None:
    environ = {key: value for key, value in environ.items() if key.lower() != "no_proxy"}
    assert proxy_for(url, ENV, {**environ, "no_proxy": "*"}) is None
    assert proxy_for(url, ENV, {**environ, "NO_PROXY": "*"}) is None


@given(host=_hosts, parent=_hosts, others=st.lists(_hosts, max_size=3), dot=st.booleans())
def test_a_listed_domain_covers_its_subdomains(
    host: str, parent: str, others: list[str], dot: bool
) -> None:
    no_proxy = ",".join([*others, ("." if dot else "") + parent])
    environ = {"all_proxy": PROXY, "no_proxy": no_proxy}
    assert proxy_for(f"https://{parent}/x", ENV, environ) is None
    assert proxy_for(f"https://{host}.{parent}/x", ENV, environ) is None
    alone = {"all_proxy": PROXY, "no_proxy": parent}
    assert proxy_for(f"https://{host}{parent}/x", ENV, alone) == PROXY
