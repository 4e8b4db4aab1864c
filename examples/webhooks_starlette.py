"""The same receiver in an ASGI application (Starlette; FastAPI works the same way).

``pip install starlette uvicorn``, then ``uvicorn examples.webhooks_starlette:app``. The
receiver runs for the application's lifetime (its lifespan); each delivery's body is handed
to :meth:`WebhookReceiver.deliver`, which answers at once and does the work (one
``GET /shorts/:id``, then the download) in the receiver's own task group.
"""

# not-run: needs starlette, which is not a dependency of the package

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ssemble_async import Client
from ssemble_async.webhooks import WebhookReceiver

client = Client()  # the key comes from SSEMBLE_API_KEY
receiver = WebhookReceiver(client, dest="clips/", reconcile=True)


async def hook(request: Request) -> JSONResponse:
    status, answer = receiver.deliver(await request.body(), request.headers.get("content-type"))
    return JSONResponse(answer, status_code=status)


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    async with client, receiver:
        yield


app = Starlette(routes=[Route("/ssemble/webhook", hook, methods=["POST"])], lifespan=lifespan)
