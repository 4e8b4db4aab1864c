"""The API key never shows: not in logs, reprs, exceptions, CLI output, or at the clip host.

Every test runs with DEBUG logging on for every logger, and the servers echo the key back
wherever a real server or proxy might (error messages, details, HTML pages). After each
scenario the key is searched for in:

* every log record: its message, its arguments, its exception;
* every exception the caller sees, with its ``__cause__``/``__context__`` chain (str, repr
  and attributes of each);
* the reprs of the client, the models and the download report;
* what the clip host received: headers, path and query (also after redirects, from the API
  to the clip host and from the clip host to another host);
* the output of the ``ssemble`` command, ``--debug`` included.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from ssemble_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    Client,
    ClipState,
    NotFoundError,
    PermissionDeniedError,
    QuotaPolicy,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
    SsembleError,
    Timeouts,
    instant_waits,
)
from ssemble_async.testing import ApiFault, ClipFault, FakeClip, FakeJob, FakeSsembleAPI

pytestmark = pytest.mark.anyio

RETRY = RetryPolicy(attempts=3, initial_wait=0.1, max_wait=1, jitter=0)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    with instant_waits():
        yield


def exception_texts(error: BaseException) -> Iterator[str]:
    """str, repr and attributes of an exception and of everything chained to it."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(getattr(current, "__dict__", {}))
        yield repr(getattr(current, "__notes__", []))
        yield "".join(traceback.format_exception(current))
        stack.extend([current.__cause__, current.__context__])
        stack.extend(getattr(current, "exceptions", ()))


def record_texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    yield str(record.msg)
    yield repr(record.args)
    yield record.exc_text or ""
    if record.exc_info and record.exc_info[1] is not None:
        yield from exception_texts(record.exc_info[1])


def assert_no_key(
    key: str,
    caplog: pytest.LogCaptureFixture,
    *,
    errors: tuple[BaseException, ...] = (),
    objects: tuple[object, ...] = (),
    fake: FakeSsembleAPI | None = None,
) -> None:
    assert caplog.records, "DEBUG logging captured nothing"
    for record in caplog.records:
        for text in record_texts(record):
            assert key not in text, f"the key is in a log record of {record.name}"
    for error in errors:
        for text in exception_texts(error):
            assert key not in text, f"the key is in {type(error).__name__}: {text[:300]}"
    for item in objects:
        assert key not in repr(item), f"the key is in the repr of {type(item).__name__}"
        assert key not in str(item)
    if fake is not None:
        for request in fake.clip_requests:
            assert "X-API-Key" not in request.headers
            assert "Authorization" not in request.headers
            assert key not in repr(dict(request.headers))
            assert key not in request.path
            assert key not in repr(dict(request.query))


def echo(key: str) -> dict[str, bytes]:
    """Error bodies that echo the key back, as careless servers and proxies do."""
    envelope = (
        b'{"error": {"code": "invalid_api_key", "message": "key ' + key.encode() + b' refused",'
        b' "details": {"received": "' + key.encode() + b'"}}}'
    )
    page = (
        b"<html><body><h1>502 Bad Gateway</h1><pre>X-API-Key: "
        + key.encode()
        + b"</pre></body></html>"
    )
    return {"json": envelope, "html": page}


# -- API error paths -----------------------------------------------------------------------


API_FAULTS = {
    "401-echo": (401, "json", AuthenticationError),
    "403-echo": (403, "json", PermissionDeniedError),
    "404-echo": (404, "json", NotFoundError),
    "429-echo": (429, "json", RateLimitError),
    "500-html-echo": (500, "html", ServerError),
    "502-html-echo": (502, "html", ServerError),
    "503-json-echo": (503, "json", ServerError),
    "200-html-echo": (200, "html", ResponseValidationError),
    "200-json-echo-not-a-model": (200, "json", ResponseValidationError),
    "302-to-clip-host": (302, "html", APIStatusError),
}


@pytest.mark.parametrize("fault", list(API_FAULTS))
async def test_api_error_paths(
    fake_ssemble: FakeSsembleAPI, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    fake, key = fake_ssemble, fake_ssemble.api_key
    status, kind, error_type = API_FAULTS[fault]
    rid = fake.add_job(FakeJob(steps=()))
    headers = {"Retry-After": "7200"} if status == 429 else {}
    if status == 302:
        headers = {"Location": f"{fake.clip_base_url}/steal?key={key}"}
    fake.inject_api_fault(
        ApiFault(
            status=status,
            body=echo(key)[kind],
            content_type="application/json" if kind == "json" else "text/html",
            headers=headers,
            times=100,
        )
    )
    async with Client(
        key, base_url=fake.base_url, retry=RETRY, quota=QuotaPolicy(max_wait=60)
    ) as client:
        with pytest.raises(error_type) as info:
            await client.get_shorts(rid)
        assert_no_key(key, caplog, errors=(info.value,), objects=(client, vars(client)), fake=fake)
        assert vars(client._api), "the session's state is part of what is checked"
        assert key not in repr(vars(client._api))
    assert fake.clip_requests == []  # the API's redirect was not followed


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connection_refused(caplog: pytest.LogCaptureFixture) -> None:
    key = "sk_ssemble_refused0123456789abcdefABCDEF"
    async with Client(
        key, base_url=f"http://127.0.0.1:{closed_port()}/api/v1", retry=RETRY
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.list_templates()
        with pytest.raises(APIConnectionError) as create:
            await client.create_short(url="https://youtu.be/x", start=0, end=60)
    assert_no_key(key, caplog, errors=(info.value, create.value), objects=(client,))


async def test_timeouts(silent_server: str, caplog: pytest.LogCaptureFixture) -> None:
    key = "sk_ssemble_timeout0123456789abcdefABCDEF"
    async with Client(
        key, base_url=silent_server, retry=RETRY, timeouts=Timeouts(read=0.1)
    ) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.get_status("665a1b2c3d4e5f6a7b8c9d0e")
    assert_no_key(key, caplog, errors=(info.value,), objects=(client,))


async def test_a_dropped_answer(caplog: pytest.LogCaptureFixture) -> None:
    """A connection cut mid-body (aiohttp's payload error is chained to ours)."""
    key = "sk_ssemble_dropped0123456789abcdefABCDEF"

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"data": {"echo": "' + request.headers["X-API-Key"].encode())
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", cut)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with Client(
            key, base_url=f"http://127.0.0.1:{runner.addresses[0][1]}", retry=RETRY
        ) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.list_templates()
    finally:
        await runner.cleanup()
    assert_no_key(key, caplog, errors=(info.value,), objects=(client,))


# -- downloads -------------------------------------------------------------------------------


async def test_download_with_faults(
    fake_ssemble: FakeSsembleAPI, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fake, key = fake_ssemble, fake_ssemble.api_key
    jobs = [FakeJob(steps=(), clips=tuple(FakeClip(size=200_000) for _ in range(3)))]
    jobs += [FakeJob(steps=(), clips=(FakeClip(size=50_000),)) for _ in range(2)]
    rids = [fake.add_job(job) for job in jobs]
    expired, reset, moved = (clip.clip_id for clip in jobs[0].clips)
    redirected_rid = rids[1]
    # a clip URL that is refused (expired): the request is re-read for a fresh one, and the
    # re-read first meets a proxy echoing the key
    fake.inject_clip_fault(ClipFault(clip_id=expired, status=403, body=key.encode()))
    fake.inject_api_fault(
        ApiFault(status=502, body=echo(key)["html"], path_prefix=f"/shorts/{rids[0]}", times=1)
    )
    # a reset mid-body, twice
    fake.inject_clip_fault(ClipFault(clip_id=reset, truncate_at=70_000, reset=True, times=2))
    # a clip that moved to another host
    elsewhere = fake.clip_url(rids[0], moved).replace("//127.0.0.1:", "//localhost:")
    fake.inject_clip_fault(ClipFault(clip_id=moved, status=302, headers={"Location": elsewhere}))
    # the API redirecting a read to the clip host
    fake.inject_api_fault(
        ApiFault(
            status=302,
            body=b"",
            headers={"Location": f"{fake.clip_base_url}/steal"},
            path_prefix=f"/shorts/{redirected_rid}",
            times=100,
        )
    )
    async with Client(key, base_url=fake.base_url, retry=RETRY) as client:
        # the preflight read of the first request passes; the 502 meets the refresh
        stale = await client.get_shorts(rids[0])
        report = await client.download_many([stale, *rids[1:]], tmp_path / "clips")
        objects: tuple[object, ...] = (client, report, stale, *report.outcomes)
        errors = tuple(o.error for o in report.outcomes if o.error is not None)
        errors += tuple(report.request_errors.values())
        assert_no_key(key, caplog, errors=errors, objects=objects, fake=fake)
    assert set(report.request_errors) == {redirected_rid}
    assert report.counts()[ClipState.DOWNLOADED] == 4
    hosts = {r.headers.get("Host", "").split(":")[0] for r in fake.clip_requests}
    assert hosts == {"127.0.0.1", "localhost"}
    assert not any(r.path == "/steal" for r in fake.clip_requests)


async def test_errors_kept_in_a_report_are_clean(
    fake_ssemble: FakeSsembleAPI, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Failed clips and unreadable requests keep their exceptions: those must be clean too."""
    fake, key = fake_ssemble, fake_ssemble.api_key
    bad = FakeClip(size=10_000)
    rids = [fake.add_job(FakeJob(steps=(), clips=(bad,))), fake.add_job(FakeJob(steps=()))]
    fake.inject_clip_fault(ClipFault(clip_id=bad.clip_id, status=403, body=key.encode(), times=99))
    fake.inject_api_fault(
        ApiFault(status=401, body=echo(key)["json"], path_prefix=f"/shorts/{rids[1]}", times=99)
    )
    async with Client(key, base_url=fake.base_url, retry=RETRY) as client:
        report = await client.download_many(rids, tmp_path)
    errors: list[SsembleError | BaseException] = list(report.request_errors.values())
    errors += [o.error for o in report.outcomes if o.error is not None]
    assert len(errors) == 2
    assert_no_key(key, caplog, errors=tuple(errors), objects=(report,), fake=fake)


# -- the command line ------------------------------------------------------------------------

# ``python -m ssemble_async`` (the same ``main()``), with the waits between retries made
# instant so that the retried error paths take no time.
CLI = (
    "import sys, ssemble_async; ssemble_async.instant_waits();"
    " from ssemble_async._cli import main; sys.exit(main())"
)


def environment(fake: FakeSsembleAPI, *, with_key: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    env.update(SSEMBLE_BASE_URL=fake.base_url, PYTHONUNBUFFERED="1", TERM="dumb")
    if with_key:
        env["SSEMBLE_API_KEY"] = fake.api_key
    return env


async def run_cli(fake: FakeSsembleAPI, *args: str, key_flag: bool = False) -> str:
    """Run ``ssemble --debug ARGS``; return stdout and stderr together."""
    command = [sys.executable, "-c", CLI, "--debug"]
    if key_flag:
        command += ["--api-key", fake.api_key]
    done = await anyio.run_process(
        [*command, *args], env=environment(fake, with_key=not key_flag), check=False
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert "DEBUG" in output  # debug logging was on
    return output


@pytest.mark.parametrize("key_flag", [False, True], ids=["key-from-env", "key-from-flag"])
async def test_cli_debug_output(
    fake_ssemble: FakeSsembleAPI, tmp_path: Path, key_flag: bool
) -> None:
    fake, key = fake_ssemble, fake_ssemble.api_key
    rid = fake.add_job(FakeJob(steps=(), clips=(FakeClip(size=150_000), FakeClip(size=20_000))))
    big = fake.jobs[rid].job.clips[0].clip_id
    outputs = []
    for status, kind in ((401, "json"), (502, "html"), (200, "html"), (429, "json")):
        fake.inject_api_fault(
            ApiFault(
                status=status,
                body=echo(key)[kind],
                content_type="text/html" if kind == "html" else "application/json",
                headers={"Retry-After": "7200"} if status == 429 else {},
                times=5,
            )
        )
        output = await run_cli(fake, "status", rid, key_flag=key_flag)
        assert "Traceback" in output
        outputs.append(output)
        fake._api_faults.clear()
    # a download through an expired URL (refreshed), a reset and a redirect
    fake.inject_clip_fault(ClipFault(clip_id=big, status=403, body=key.encode()))
    fake.inject_clip_fault(ClipFault(clip_id=big, truncate_at=40_000, reset=True))
    url = fake.clip_url(rid, big).replace("//127.0.0.1:", "//localhost:")
    fake.inject_clip_fault(ClipFault(clip_id=big, status=302, headers={"Location": url}))
    outputs.append(
        await run_cli(fake, "download", rid, "-o", str(tmp_path), "--json", key_flag=key_flag)
    )
    assert (tmp_path / rid / f"{big}.mp4").read_bytes() == fake.clip_bytes(rid, big)
    for output in outputs:
        assert key not in output
    assert "[REDACTED]" in outputs[0]
    for request in fake.clip_requests:
        assert key not in repr(dict(request.headers)) + request.path


async def test_cli_debug_connection_refused(tmp_path: Path) -> None:
    key = "sk_ssemble_cliRefused0123456789abcdefABC"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSEMBLE_")}
    env.update(SSEMBLE_BASE_URL=f"http://127.0.0.1:{closed_port()}/api/v1", TERM="dumb")
    done = await anyio.run_process(
        [sys.executable, "-c", CLI, "--debug", "--api-key", key, "templates"],
        env=env,
        check=False,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 1
    assert "Traceback" in output and "cannot connect" in output
    assert key not in output
