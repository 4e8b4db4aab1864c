"""An aiohttp service that downloads every finished job's clips when Ssemble calls it.

Mount the receiver in your own application::

    python3 examples/webhooks_aiohttp.py      # serves http://127.0.0.1:8787

then create jobs with ``webhook_url="https://<your public host>/hooks/ssemble/webhook/<token>"``
(``ssemble create --webhook-url ...``). The token in the path keeps strangers out: the
payload carries no signature, and every delivery is confirmed with one ``GET /shorts/:id``
anyway. Needs ``SSEMBLE_API_KEY``.
"""

# not-run: a server that runs until Ctrl-C; tests/docs/test_examples.py serves it

from __future__ import annotations

import secrets

from aiohttp import web

from ssemble_async import Client, ShortsRequest
from ssemble_async.webhooks import webhook_app

TOKEN = secrets.token_urlsafe(16)


async def announce(request: ShortsRequest) -> None:
    print(f"{request.request_id}: {request.status_raw}, {len(request.shorts)} clips")


async def make_app() -> web.Application:
    client = Client()  # the key comes from SSEMBLE_API_KEY
    app = web.Application()
    app.add_subapp(
        "/hooks",
        webhook_app(
            client,
            dest="clips/",
            on_request=announce,
            path=f"/ssemble/webhook/{TOKEN}",
            reconcile=True,  # a delivery missed while the service was down is found later
        ),
    )

    async def close_client(_: web.Application) -> None:
        await client.close()

    app.on_cleanup.append(close_client)
    print(f"webhook URL: http://127.0.0.1:8787/hooks/ssemble/webhook/{TOKEN}")
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8787)
