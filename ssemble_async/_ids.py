"""The shape of Ssemble's ids (24 hexadecimal characters), with no import cost."""

from __future__ import annotations

import re

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")


def is_hex24(value: str) -> bool:
    """True when ``value`` is exactly 24 hexadecimal characters."""
    return _HEX24.fullmatch(value) is not None
