from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _instant(instant: None) -> None:
    """Backoff and polling are instant in these tests."""
