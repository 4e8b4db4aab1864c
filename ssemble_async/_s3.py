"""S3-compatible destinations (``dest="s3://bucket/prefix"``): the decisions, no I/O.

The layout in the bucket is the folder's: ``<prefix>/<request_id>/<clip file>.mp4``, its
sidecar ``<clip file>.mp4.json`` and a ``manifest.json`` per request, with the names the
folder would have (`safe_name()` and the pipeline's naming rules). The transfers live in
``_s3_sink`` (aiobotocore, the ``s3`` extra), loaded only when an ``s3://`` destination is
used; this module stays light, for the client and the command line to recognise one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import importlib.util
import os
from collections.abc import Mapping, Sequence

import attrs

from ssemble_async._download_models import PlannedAction
from ssemble_async._errors import ConfigurationError
from ssemble_async._plan import safe_name

__all__ = [
    "PART_SIZE",
    "S3Location",
    "StaleUpload",
    "UploadedPart",
    "holds_clip",
    "is_s3_url",
    "is_stale",
    "parse_s3_url",
    "part_checksum",
    "plan_object",
    "require_s3_extra",
    "resumable_parts",
    "upload_metadata",
]

SCHEME = "s3://"
#: Bytes per part of a multipart upload (S3 takes 5 MiB to 5 GiB, the last part smaller).
PART_SIZE = 8 * 1024 * 1024
#: The object metadata (``x-amz-meta-*``) an upload of this package sets: the size it
#: verified, and the validator of the clip host's file its bytes came from.
SIZE_KEY = "ssemble-size"
SOURCE_KEY = "ssemble-source"
#: The hint for a missing extra, in the library's terms.
INSTALL_HINT = "S3 destinations need the s3 extra: pip install 'ssemble-async[s3]'"


def is_s3_url(dest: str | os.PathLike[str]) -> bool:
    """True for a destination that names a bucket (``s3://...``, in any letter case)."""
    return isinstance(dest, str) and dest[: len(SCHEME)].lower() == SCHEME


@attrs.frozen(kw_only=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing ``/``; empty for the bucket's root)."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (``s3://bucket`` for the root)."""
        return self.url_of(self.prefix)

    def url_of(self, key: str) -> str:
        """The ``s3://`` address of a key of this bucket."""
        return f"{SCHEME}{self.bucket}/{key}" if key else f"{SCHEME}{self.bucket}"

    def request_key(self, request_id: str, name: str) -> str:
        """The key of ``name`` in a request's "folder": ``<prefix>/<safe id>/<name>``."""
        parts = (self.prefix, safe_name(request_id), name)
        return "/".join(part for part in parts if part)


def parse_s3_url(url: str) -> S3Location:
    """The bucket and prefix of ``s3://bucket/prefix``.

    Raises:
        ValueError: not an ``s3://`` URL, or one without a bucket name, or with a bucket
            name that no S3-compatible store takes (spaces, ``?``, ``#``...).
    """
    if not is_s3_url(url):
        raise ValueError(f"{url!r} is not an s3:// URL (s3://bucket/prefix)")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket; write s3://bucket/prefix")
    if any(c.isspace() or c in "?#\\" or not c.isprintable() for c in bucket):
        raise ValueError(f"{url!r}: {bucket!r} is not a bucket name")
    return S3Location(bucket=bucket, prefix="/".join(p for p in prefix.split("/") if p))


def require_s3_extra(what: str) -> None:
    """Refuse an ``s3://`` destination when aiobotocore is not installed.

    Raises:
        ConfigurationError: says which extra to install.
    """
    if importlib.util.find_spec("aiobotocore") is None:
        raise ConfigurationError(f"{what}: {INSTALL_HINT}")


def part_checksum(data: bytes | bytearray | memoryview) -> str:
    """A part's SHA-256 as S3 takes it (``ChecksumSHA256``: base64 of the digest)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@attrs.frozen(kw_only=True)
class UploadedPart:
    """A part that the store holds for an unfinished upload (as ``ListParts`` says)."""

    number: int
    size: int
    etag: str
    checksum: str | None = None


def resumable_parts(
    parts: Sequence[UploadedPart], *, part_size: int, total: int
) -> list[UploadedPart]:
    """The parts of an unfinished upload that a resume keeps: numbers 1, 2, 3... without a
    gap, each of exactly ``part_size`` bytes (a shorter part may have been cut when its
    run was killed), and together shorter than ``total`` (so that the clip host is asked
    for at least one byte, and its answer says the file is still the same)."""
    kept: list[UploadedPart] = []
    for number, part in enumerate(sorted(parts, key=lambda p: p.number), start=1):
        if part.number != number or part.size != part_size:
            break
        kept.append(part)
    while kept and len(kept) * part_size >= total:
        kept.pop()
    return kept


@attrs.frozen(kw_only=True)
class StaleUpload:
    """An unfinished multipart upload that ``ssemble s3-cleanup`` aborted (or would).

    Attributes:
        url: the ``s3://`` address of the object it was uploading.
        upload_id: the store's id of the upload.
        initiated: when it was started (UTC).
    """

    url: str
    upload_id: str
    initiated: dt.datetime


def is_stale(initiated: dt.datetime, now: dt.datetime, older_than: dt.timedelta) -> bool:
    """True for an upload started at least ``older_than`` before ``now``."""
    return now - initiated >= older_than


def upload_metadata(*, total: int | None, validator: str | None) -> dict[str, str]:
    """The metadata of a clip's object: its verified size and the validator of its source
    (left out when not plain ASCII, which S3 metadata must be)."""
    metadata: dict[str, str] = {}
    if total is not None:
        metadata[SIZE_KEY] = str(total)
    if validator and validator.isascii() and validator.isprintable():
        metadata[SOURCE_KEY] = validator
    return metadata


def holds_clip(size: int, metadata: Mapping[str, str], *, recorded: int | None) -> bool:
    """True when an object of ``size`` bytes is a complete clip: of the size the request's
    manifest recorded for it (``recorded``), or of the size its own upload verified (the
    ``ssemble-size`` metadata, set only by an upload that checked every byte's count)."""
    return size == recorded or metadata.get(SIZE_KEY) == str(size)


def plan_object(
    *, error: bool, downloadable: bool, present: bool, resumable: bool
) -> PlannedAction:
    """What a download into a bucket would do with a clip: the rules of ``plan_clip()``,
    with the object (``present``: it holds the clip, see `holds_clip()`) for the file and
    an unfinished upload the manifest vouches for (``resumable``) for the ``.part``."""
    if error:
        return PlannedAction.SKIP_ERROR
    if not downloadable:
        return PlannedAction.NOT_READY
    if present:
        return PlannedAction.PRESENT
    return PlannedAction.RESUME if resumable else PlannedAction.DOWNLOAD
