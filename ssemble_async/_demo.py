"""``ssemble demo`` and ``ssemble fake-server``: the product against the built-in fake API."""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio

from ssemble_async._cli._app import wait_with_progress
from ssemble_async._cli._output import Output, download_with_display
from ssemble_async._client import Client
from ssemble_async._config import ConnectionSettings, PollPolicy
from ssemble_async.testing import FakeClip, FakeJob, FakeSsembleAPI

__all__ = ["DEMO_JOB", "run_demo", "run_fake_server", "run_webhook_demo"]

KIB = 1024
#: The demo talks to 127.0.0.1 only: a proxy from the environment must not carry it.
DIRECT = ConnectionSettings(trust_env=False)

DEMO_JOB = FakeJob(
    seconds_per_step=0.8,
    title="How We Scaled to a Million Users",
    clips=(
        FakeClip(title="The Week Everything Broke", viral_score=91, size=2400 * KIB, duration=58),
        FakeClip(title="Why Caching Saved Us", viral_score=84, size=1900 * KIB, duration=44.5),
        FakeClip(title="The Database Nobody Owned", viral_score=77, size=2100 * KIB, duration=51),
        FakeClip(
            title="One Config Flag, Zero Downtime",
            viral_score=73,
            size=1500 * KIB,
            duration=37,
            recompiling_reads=2,
        ),
        FakeClip(title="Hiring Your First SRE", viral_score=66, size=1700 * KIB, duration=42),
        FakeClip(title="What We Would Do Again", viral_score=58, size=1200 * KIB, duration=29),
        FakeClip(
            title="The Launch Day Panic",
            viral_score=88,
            error=True,
            error_message="Render failed: source segment too short",
        ),
        FakeClip(title="Lessons in Six Words", viral_score=49, size=900 * KIB, duration=22),
    ),
)


async def run_demo(dest: Path, out: Output) -> int:
    """Create a job on the fake API, wait for it, download its clips with the live display."""
    async with (
        FakeSsembleAPI(auto_job=DEMO_JOB, clip_bytes_per_second=1500 * KIB) as fake,
        Client(
            fake.api_key,
            base_url=fake.base_url,
            poll=PollPolicy(initial=0.5, maximum=1.0),
            connection=DIRECT,
            download_connection=DIRECT,
        ) as client,
    ):
        out.print(
            "[bold]ssemble demo[/]: the real client against the built-in fake Ssemble API"
            " on 127.0.0.1 (no key, no network)"
        )
        created = await client.create_short(
            url="https://www.youtube.com/watch?v=dQw4w9WgXcQ", start=0, end=600
        )
        out.print(f"1. created request {created.request_id} (1 credit)")
        out.print("2. waiting for the job to finish...")
        request = await wait_with_progress(client, created.request_id, 120, out)
        out.print(f"   completed with {len(request.shorts)} clips")
        out.print(f"3. downloading every clip into {dest}/ (verified, resumable)")
        return await download_with_display(
            client, [request], dest, out, concurrency=4, recompile_wait=10
        )


async def run_webhook_demo(dest: Path, out: Output) -> int:
    """Create a job with a webhook URL; the fake calls the local receiver; clips on disk."""
    from aiohttp import web  # noqa: PLC0415 - the server stack only for this demo

    from ssemble_async.webhooks import WebhookOutcome, webhook_app  # noqa: PLC0415

    ended = anyio.Event()
    outcomes: list[WebhookOutcome] = []

    def record(outcome: WebhookOutcome) -> None:
        outcomes.append(outcome)
        ended.set()

    async with (
        FakeSsembleAPI(auto_job=DEMO_JOB) as fake,
        Client(
            fake.api_key,
            base_url=fake.base_url,
            connection=DIRECT,
            download_connection=DIRECT,
        ) as client,
    ):
        out.print(
            "[bold]ssemble demo --webhooks[/]: the webhook receiver against the built-in fake"
            " Ssemble API on 127.0.0.1 (no key, no network, no polling)"
        )
        runner = web.AppRunner(
            webhook_app(client, dest=dest, on_outcome=record, recompile_wait=10),
            handle_signals=False,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/ssemble/webhook"
            out.print(f"1. a receiver listens at {url}")
            created = await client.create_short(
                url="https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                start=0,
                end=600,
                webhook_url=url,
            )
            out.print(f"2. created request {created.request_id} with that webhook URL")
            out.print("3. the job runs; nobody polls. When it ends, Ssemble (the fake) calls...")
            with anyio.fail_after(120):
                await ended.wait()
        finally:
            await runner.cleanup()
        (outcome,) = outcomes
        calls = sum(fake.calls.values())
        out.print(
            f"4. the receiver confirmed {outcome.request_id} ({outcome.status.value}) with one"
            f" call and downloaded its clips into {dest}/ ({calls} API calls in all, the"
            " create included)"
        )
        report = outcome.report
        if report is None:
            return 1
        for clip in report.outcomes:
            on_disk = clip.state.value in ("downloaded", "already_present")
            out.print(f"   {clip.state.value:<16} {clip.path if on_disk else clip.message or ''}")
        return 0 if report.ok else 1


async def run_fake_server(args: argparse.Namespace, out: Output) -> int:
    """Serve the fake API until interrupted, with a few completed jobs to download."""
    async with FakeSsembleAPI(
        api_key=args.api_key, port=args.port, clip_port=args.clip_port
    ) as fake:
        jobs = [fake.add_job(FakeJob(steps=())) for _ in range(args.jobs)]
        info = {"base_url": fake.base_url, "api_key": fake.api_key, "request_ids": jobs}
        if out.as_json:
            out.json(info)
        else:
            out.print(f"fake Ssemble API at {fake.base_url} (clip host {fake.clip_base_url})")
            # plain lines, never wrapped at the terminal's width: they are pasted whole
            print(f"export SSEMBLE_BASE_URL={fake.base_url}", flush=True)
            print(f"export SSEMBLE_API_KEY={fake.api_key}", flush=True)
            out.print("completed requests: " + " ".join(jobs))
            out.print("Ctrl-C stops it.")
        await anyio.sleep_forever()
    return 0
