"""Proxies and TLS settings, through real relays on 127.0.0.1 in front of the fake API."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import attrs
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ssemble_async import (
    APIConnectionError,
    Client,
    ClipState,
    ConnectionSettings,
    RetryPolicy,
)
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio

BASIC_ALICE = "Basic " + base64.b64encode(b"alice:s3cret").decode()

#: Headers that concern one connection (or the proxy itself), never relayed.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@attrs.frozen
class Forwarded:
    method: str
    url: str
    headers: CIMultiDictProxy[str]


class ForwardProxy:
    """A plain-HTTP forward proxy: records each request, relays it and streams the answer.

    With ``upstream``, a reverse proxy instead: every request goes to that root, on TLS
    when ``ssl_context`` is given.
    """

    def __init__(
        self, upstream: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.upstream, self.ssl_context = upstream, ssl_context
        self.forwarded: list[Forwarded] = []
        self.in_flight = self.most_in_flight = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ForwardProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context).start()
        scheme = "http" if self.ssl_context is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self._runner.addresses[0][1]}"
        # its own session reads no environment: HTTP_PROXY points at this very proxy
        self._session = aiohttp.ClientSession(
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._session is not None and self._runner is not None
        await self._session.close()
        await self._runner.cleanup()

    def to(self, root: str) -> list[Forwarded]:
        """The requests forwarded to the server at ``root``."""
        return [f for f in self.forwarded if f.url.startswith(root + "/")]

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        self.forwarded.append(
            Forwarded(request.method, str(request.url), CIMultiDictProxy(request.headers.copy()))
        )
        if self.upstream is not None:
            target = URL(self.upstream + request.path_qs)
        elif request.raw_path.startswith("http://"):
            target = request.url
        else:
            return web.Response(status=400, text="a proxy takes absolute-form requests")
        assert self._session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        body = await request.read()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            async with self._session.request(
                request.method,
                target,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP_BY_HOP - {"content-length"}:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        finally:
            self.in_flight -= 1


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy() as running:
        yield running


@pytest.fixture
async def fake() -> AsyncIterator[FakeSsembleAPI]:
    async with FakeSsembleAPI() as running:
        yield running


def add_done_job(fake: FakeSsembleAPI, *sizes: int) -> str:
    clips = tuple(FakeClip(size=size, viral_score=90 - i) for i, size in enumerate(sizes))
    return fake.add_job(FakeJob(steps=(), clips=clips))


async def download(client: Client, rid: str, dest: Path, fake: FakeSsembleAPI) -> None:
    """Download every clip of ``rid`` and check each is the clip host's bytes."""
    report = await client.download_shorts(rid, dest, chunk_size=64 * 1024)
    assert report.ok
    assert report.outcomes
    for outcome in report.outcomes:
        assert outcome.state is ClipState.DOWNLOADED
        assert outcome.path is not None
        assert outcome.path.read_bytes() == fake.clip_bytes(rid, outcome.clip_id)


def assert_no_credentials_on_clip_requests(proxy: ForwardProxy, fake: FakeSsembleAPI) -> None:
    for forwarded in proxy.to(fake.clip_base_url):
        for name in ("X-API-Key", "Authorization", "Proxy-Authorization", "Cookie"):
            assert name not in forwarded.headers
    for received in fake.clip_requests:
        assert "X-API-Key" not in received.headers
        assert "Authorization" not in received.headers


async def test_environment_proxy_carries_api_calls_and_downloads(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    rid = add_done_job(fake, 300_000, 70_000, 5_000)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await download(client, rid, tmp_path, fake)
    api_calls = proxy.to(fake.base_url)
    clip_gets = proxy.to(fake.clip_base_url)
    assert len(api_calls) == len(fake.api_requests) >= 1
    assert len(clip_gets) == len(fake.clip_requests) == 3
    assert {f.url for f in api_calls} >= {f"{fake.base_url}/shorts/{rid}"}
    assert all(f.headers["X-API-Key"] == fake.api_key for f in api_calls)
    assert {f.url for f in clip_gets} == {fake.clip_url(rid, c) for c in fake.jobs[rid].clips}
    assert_no_credentials_on_clip_requests(proxy, fake)
    assert len(proxy.forwarded) == len(api_calls) + len(clip_gets)


async def test_the_variable_of_the_url_scheme_then_all_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    rid = add_done_job(fake, 10_000)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await download(client, rid, tmp_path, fake)
    assert proxy.forwarded == []
    monkeypatch.setenv("all_proxy", proxy.url)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await client.get_shorts(rid)
    assert [f.url for f in proxy.forwarded] == [f"{fake.base_url}/shorts/{rid}"]


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
async def test_no_proxy_bypasses_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
    proxy: ForwardProxy,
    fake: FakeSsembleAPI,
    tmp_path: Path,
    variable: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv(variable, "example.com, 127.0.0.1")
    rid = add_done_job(fake, 100_000, 2_000)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await download(client, rid, tmp_path, fake)
    assert proxy.forwarded == []
    assert len(fake.clip_requests) == 2


async def test_no_proxy_entry_with_a_port_bypasses_only_that_port(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", f"127.0.0.1:{URL(fake.base_url).port}")
    rid = add_done_job(fake, 50_000, 2_000)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await download(client, rid, tmp_path, fake)
    assert proxy.to(fake.base_url) == []
    assert len(proxy.to(fake.clip_base_url)) == 2
    assert len(proxy.forwarded) == 2


async def test_trust_env_false_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    rid = add_done_job(fake, 100_000)
    direct = ConnectionSettings(trust_env=False)
    with anyio.fail_after(20):
        async with Client(
            fake.api_key, base_url=fake.base_url, connection=direct, download_connection=direct
        ) as client:
            await download(client, rid, tmp_path, fake)
    assert proxy.forwarded == []
    assert len(fake.clip_requests) == 1


async def test_explicit_proxy_with_credentials_sends_them_only_to_the_proxy(
    proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    port = URL(proxy.url).port
    settings = ConnectionSettings(proxy=f"http://alice:s3cret@127.0.0.1:{port}")
    rid = add_done_job(fake, 200_000, 1_000)
    with anyio.fail_after(20):
        async with Client(
            fake.api_key, base_url=fake.base_url, connection=settings, download_connection=settings
        ) as client:
            await download(client, rid, tmp_path, fake)
    assert len(proxy.to(fake.base_url)) == len(fake.api_requests) >= 1
    assert len(proxy.to(fake.clip_base_url)) == len(fake.clip_requests) == 2
    assert all(f.headers.get("Proxy-Authorization") == BASIC_ALICE for f in proxy.forwarded)
    assert all("Authorization" not in f.headers for f in proxy.forwarded)
    for received in [*fake.api_requests, *fake.clip_requests]:
        assert "Authorization" not in received.headers
        assert "Proxy-Authorization" not in received.headers


async def test_only_downloads_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would fail every call it carried
    rid = add_done_job(fake, 80_000, 3_000)
    with anyio.fail_after(20):
        async with Client(
            fake.api_key,
            base_url=fake.base_url,
            connection=ConnectionSettings(trust_env=False),
            download_connection=ConnectionSettings(proxy=proxy.url),
        ) as client:
            await download(client, rid, tmp_path, fake)
    assert proxy.to(fake.base_url) == []
    assert len(proxy.to(fake.clip_base_url)) == len(fake.clip_requests) == 2
    assert_no_credentials_on_clip_requests(proxy, fake)


async def test_only_api_calls_through_the_proxy(
    proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    rid = add_done_job(fake, 80_000)
    with anyio.fail_after(20):
        async with Client(
            fake.api_key,
            base_url=fake.base_url,
            connection=ConnectionSettings(proxy=proxy.url),
        ) as client:
            await download(client, rid, tmp_path, fake)
    assert len(proxy.to(fake.base_url)) == len(fake.api_requests) >= 1
    assert proxy.to(fake.clip_base_url) == []
    assert len(fake.clip_requests) == 1


async def test_netrc_is_never_read(
    monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy, fake: FakeSsembleAPI, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    rid = add_done_job(fake, 60_000, 4_000)
    with anyio.fail_after(20):
        async with Client(fake.api_key, base_url=fake.base_url) as client:
            await download(client, rid, tmp_path / "clips", fake)
        requests = len(fake.api_requests) + len(fake.clip_requests)
        assert len(proxy.forwarded) == requests >= 3
        for forwarded in proxy.forwarded:
            assert "Authorization" not in forwarded.headers
            assert "Proxy-Authorization" not in forwarded.headers
        for received in [*fake.api_requests, *fake.clip_requests]:
            assert "Authorization" not in received.headers
        # The control: aiohttp's own trust_env reads that file and sends its password.
        async with (
            aiohttp.ClientSession(trust_env=True) as session,
            session.get(fake.clip_url(rid, next(iter(fake.jobs[rid].clips)))) as response,
        ):
            assert response.status == 200
    assert fake.clip_requests[-1].headers["Authorization"] == BASIC_ALICE


@pytest.mark.parametrize("limit", [1, 0])
async def test_download_connections_per_host(
    proxy: ForwardProxy, tmp_path: Path, limit: int
) -> None:
    async with FakeSsembleAPI(clip_bytes_per_second=400_000) as fake:
        rid = add_done_job(fake, 40_000, 40_000, 40_000, 40_000)
        with anyio.fail_after(20):
            async with Client(
                fake.api_key,
                base_url=fake.base_url,
                download_connection=ConnectionSettings(proxy=proxy.url, limit_per_host=limit),
            ) as client:
                report = await client.download_shorts(rid, tmp_path, concurrency=4)
        assert report.ok
        assert len(proxy.to(fake.clip_base_url)) == 4
    if limit:
        assert proxy.most_in_flight == limit
    else:  # the control: the four transfers overlap without a limit
        assert proxy.most_in_flight > 1


async def test_an_unreachable_proxy_is_named_in_the_error(fake: FakeSsembleAPI) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    with anyio.fail_after(20):
        async with Client(
            fake.api_key,
            base_url=fake.base_url,
            retry=RetryPolicy(attempts=1),
            connection=ConnectionSettings(proxy=f"http://alice:s3cret@127.0.0.1:{port}"),
        ) as client:
            with pytest.raises(APIConnectionError, match=f"the proxy 127.0.0.1:{port}") as caught:
                await client.list_templates()
    assert "s3cret" not in str(caught.value)
    assert not caught.value.request_sent
    assert fake.api_requests == []


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("making a certificate needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_a_private_ca_or_no_verification(
    fake: FakeSsembleAPI, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    rid = add_done_job(fake, 1_000)
    api = URL(fake.base_url)
    async with ForwardProxy(upstream=str(api.origin()), ssl_context=server_context) as tls:
        base_url = tls.url + api.path
        private_ca = ConnectionSettings(ssl=ssl.create_default_context(cafile=cert))
        with anyio.fail_after(20):
            for settings in (private_ca, ConnectionSettings(ssl=False)):
                async with Client(fake.api_key, base_url=base_url, connection=settings) as client:
                    assert (await client.get_shorts(rid)).request_id == rid
            async with Client(
                fake.api_key, base_url=base_url, retry=RetryPolicy(attempts=1)
            ) as client:
                with pytest.raises(APIConnectionError, match="certificate"):
                    await client.get_shorts(rid)
    assert len(tls.forwarded) == len(fake.api_requests) == 2
