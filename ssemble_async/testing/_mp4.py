"""Deterministic stand-in MP4 files for the fake clip host."""

from __future__ import annotations

import hashlib
import struct

__all__ = ["make_mp4"]

# ftyp box as written by common encoders: size 0x20, major brand isom, minor version 0x200,
# compatible brands isom, iso2, avc1, mp41.
_FTYP = struct.pack(">I4s4sI", 0x20, b"ftyp", b"isom", 0x200) + b"isomiso2avc1mp41"
_MDAT_HEADER_SIZE = 8
MIN_MP4_SIZE = len(_FTYP) + _MDAT_HEADER_SIZE


def make_mp4(size: int, seed: str) -> bytes:
    """Build deterministic bytes that look like an MP4 file.

    The result is an ``ftyp`` box followed by one ``mdat`` box that fills the rest of the
    file with pseudo-random bytes derived from ``seed`` (one SHAKE-256 output stream, never
    a repeated block, so a copy with a block duplicated, dropped or shifted differs from
    the original). It is not playable video, but any check of the container's first boxes
    (such as looking for ``ftyp``) passes. Generating 32 MiB takes about a tenth of a second.

    Args:
        size: Exact length of the result in bytes; at least 40 and below 4 GiB.
        seed: Any string; equal seeds and sizes give equal bytes.

    Returns:
        The file contents.

    Raises:
        ValueError: If ``size`` is out of range.
    """
    if not MIN_MP4_SIZE <= size < 2**32:
        raise ValueError(f"size must be between {MIN_MP4_SIZE} and 2**32 - 1, got {size}")
    payload_size = size - MIN_MP4_SIZE
    payload = hashlib.shake_256(seed.encode()).digest(payload_size)
    mdat = struct.pack(">I4s", size - len(_FTYP), b"mdat")
    return b"".join((_FTYP, mdat, payload))
