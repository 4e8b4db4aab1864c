"""What an MP4 file's own structure says about its completeness (pure, no I/O).

An MP4 (ISO base media file) is a sequence of top-level boxes, each opening with its size.
When a clip host sends no ``Content-Length``, the sizes of those boxes are the only way to
tell a whole file from one cut off mid-body: they must add up to the file's size exactly.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable

__all__ = ["Mp4Layout", "mp4_layout"]

_HEADER = 8
_LARGE_HEADER = 16
#: A file whose walk needs more boxes than this is not believed to be an MP4.
MAX_TOP_LEVEL_BOXES = 4096


class Mp4Layout(enum.Enum):
    """The verdict of `mp4_layout()`."""

    COMPLETE = "complete"
    """The top-level boxes end exactly at the end of the file; the index (``moov``) and the
    media (``mdat``) are both there."""
    SHORT = "short"
    """Bytes are missing: the last box runs past the end, or the index or the media is not
    there yet."""
    UNKNOWN = "unknown"
    """The boxes cannot tell (a box "to the end of the file", or no valid box structure)."""


def mp4_layout(read_at: Callable[[int, int], bytes], size: int) -> Mp4Layout:
    """Walk the top-level boxes of a file of ``size`` bytes.

    ``read_at(offset, count)`` returns up to ``count`` bytes of the file from ``offset``;
    only box headers are read (a few bytes per box).
    """
    offset = 0
    seen: set[bytes] = set()
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if offset == size:
            # A cut that falls exactly between two boxes still has to hold the index and
            # the media data (either may come last).
            return Mp4Layout.COMPLETE if {b"moov", b"mdat"} <= seen else Mp4Layout.SHORT
        header = read_at(offset, _LARGE_HEADER)
        if len(header) < _HEADER:
            return Mp4Layout.SHORT
        box_size, kind = struct.unpack(">I4s", header[:_HEADER])
        if not kind.isascii() or not all(32 <= byte < 127 for byte in kind):
            return Mp4Layout.UNKNOWN
        if box_size == 0:
            return Mp4Layout.UNKNOWN  # "extends to the end of the file": says nothing
        if box_size == 1:
            if len(header) < _LARGE_HEADER:
                return Mp4Layout.SHORT
            (box_size,) = struct.unpack(">Q", header[_HEADER:_LARGE_HEADER])
            if box_size < _LARGE_HEADER:
                return Mp4Layout.UNKNOWN
        elif box_size < _HEADER:
            return Mp4Layout.UNKNOWN
        seen.add(kind)
        offset += box_size
        if offset > size:
            return Mp4Layout.SHORT
    return Mp4Layout.UNKNOWN
