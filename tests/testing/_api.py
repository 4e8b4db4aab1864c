"""A raw HTTP client of the fake API for its own tests (no SDK in between)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import attrs

from ssemble_async.testing import FakeSsembleAPI

UNKNOWN_ID = "0123456789abcdef01234567"
VALID_BODY: dict[str, Any] = {
    "url": "https://www.youtube.com/watch?v=AbCdEfGhIjK",
    "start": 0,
    "end": 600,
}


def iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def code(self) -> str:
        return str(self.body["error"]["code"])

    @property
    def date(self) -> datetime:
        return parsedate_to_datetime(self.headers["Date"])

    @property
    def reset(self) -> datetime:
        return iso(self.headers["X-RateLimit-Reset"])


@attrs.frozen
class Api:
    fake: FakeSsembleAPI
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Reply:
        headers = {"X-API-Key": self.fake.api_key} if headers is None else headers
        url = self.fake.base_url + path
        async with self.session.request(method, url, headers=headers, **kw) as resp:
            raw = await resp.read()
            body = json.loads(raw) if resp.content_type == "application/json" else raw
            return Reply(resp.status, resp.headers.copy(), body)

    async def data(self, method: str, path: str, **kw: Any) -> Any:
        reply = await self.call(method, path, **kw)
        assert 200 <= reply.status < 300, reply
        return reply.body["data"]

    async def statuses(self, request_id: str, reads: int) -> list[tuple[str, str]]:
        bodies = [await self.data("GET", f"/shorts/{request_id}/status") for _ in range(reads)]
        return [(b["status"], b["step"]) for b in bodies]

    async def listed(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.data("GET", "/shorts", params=params))["requests"]
        return items


@contextlib.asynccontextmanager
async def running(**options: Any) -> AsyncIterator[Api]:
    async with FakeSsembleAPI(**options) as fake, aiohttp.ClientSession() as session:
        yield Api(fake, session)
