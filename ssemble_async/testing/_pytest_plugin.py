"""pytest plugin of ssemble_async: the ``fake_ssemble`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._fake import FakeSsembleAPI

__all__ = ["fake_ssemble"]


@pytest.fixture
async def fake_ssemble() -> AsyncIterator[FakeSsembleAPI]:
    """Yield a started :class:`~ssemble_async.testing.FakeSsembleAPI` with default settings.

    The fake is closed after the test. Use it from tests marked ``@pytest.mark.anyio``.
    """
    async with FakeSsembleAPI() as fake:
        yield fake
