"""pytest plugin of ssemble_async: the ``fake_ssemble`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._fake import FakeSsembleAPI

__all__ = ["fake_ssemble"]


@pytest.fixture
async def fake_ssemble() -> AsyncIterator[FakeSsembleAPI]:
    """Yield a started fake API with default settings.

    A [`FakeSsembleAPI`][ssemble_async.testing.FakeSsembleAPI] on 127.0.0.1, closed after the
    test. Use it from tests marked ``@pytest.mark.anyio``.
    """
    async with FakeSsembleAPI() as fake:
        yield fake
