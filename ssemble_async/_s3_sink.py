"""Downloads into S3-compatible object storage (the ``s3`` extra: aiobotocore).

The pipeline is the folder's (`run_pipeline()`: reading requests, waiting, re-rendering
clips, fresh URLs, concurrency, outcomes); `_S3Pipeline` only changes where the bytes and
the records go:

```text
clip host ──GET (Range on resume)──► 8 MiB parts ──UploadPart + SHA-256──► unfinished upload
                                         │ size and MP4 head verified
                                         └──► CompleteMultipartUpload (If-None-Match: *)
```

A clip of one part or less is one ``PutObject`` (with its SHA-256 and ``If-None-Match``).
Each transfer holds at most two parts in memory: the one being filled and the one being
sent. A complete object is never overwritten (unless ``overwrite``): a store that already
has one answers 412, and the object is then checked (its size) and reported present.

The request's ``manifest.json`` is the folder's format, written whole: when an upload
starts (it records the validator of the clip's bytes, which makes the upload resumable
from another process: S3 cannot read back an unfinished upload's own metadata) and when
the request's last clip ends. A resume finds the upload with ``ListMultipartUploads``,
keeps the parts ``ListParts`` lists (1, 2, 3... of 8 MiB each), and asks the clip host for
the rest with ``Range`` and ``If-Range``: a changed file starts over.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import attrs
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ssemble_async import _clock
from ssemble_async._config import ConnectionSettings, RetryPolicy
from ssemble_async._download_models import (
    ClipOutcome,
    ClipState,
    DownloadPlan,
    PlannedAction,
    PlannedClip,
)
from ssemble_async._dryrun import _head_size
from ssemble_async._errors import (
    ConfigurationError,
    DownloadError,
    RequestFailedError,
    RequestNotReadyError,
    SsembleError,
)
from ssemble_async._fetch import fetch_tries, may_resume
from ssemble_async._manifest import (
    MANIFEST,
    Manifest,
    ManifestEntry,
    Partial,
    RequestStore,
    decode_manifest,
    encode_manifest,
    encode_sidecar,
)
from ssemble_async._models import RequestState, Short, ShortsRequest
from ssemble_async._pipeline import (
    DownloadOptions,
    DownloadStream,
    RequestReader,
    RequestRef,
    _Active,
    _Pipeline,
    _RequestContext,
    _Tracker,
    chosen_outcomes,
    entry_outcome,
    finished_entries,
    request_key,
    run_pipeline,
    skipped_error,
)
from ssemble_async._plan import (
    looks_like_mp4,
)
from ssemble_async._s3 import (
    PART_SIZE,
    S3Location,
    StaleUpload,
    UploadedPart,
    holds_clip,
    is_stale,
    parse_s3_url,
    part_checksum,
    plan_object,
    resumable_parts,
    upload_metadata,
)
from ssemble_async._transfer import (
    NotAClip,
    TransferState,
    Transient,
    accept_response,
    check_unsatisfiable,
    clip_response,
    open_download_session,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["abort_stale_uploads", "open_s3_client", "plan_s3_downloads", "run_s3_pipeline"]

logger = logging.getLogger("ssemble_async")

_S3_ERRORS = (ClientError, BotoCoreError)
#: Answers of a conditional write that mean "an object is there already" (409: another
#: writer's condition is being decided; NoSuchUpload: another run completed this upload).
_EXISTS = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchUpload"})
_HEAD_BYTES = 8
_ENDPOINT_HINT = "check s3_endpoint_url (or AWS_ENDPOINT_URL)"
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), as for any AWS tool"
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe_s3_error(exc: ClientError | BotoCoreError, url: str) -> str:
    """A sentence for a failed S3 call on ``url``, naming the usual causes plainly."""
    if isinstance(exc, NoCredentialsError):
        return f"no AWS credentials for {url}: {_CREDENTIALS_HINT}"
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return f"{url}: no such bucket"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (
                f"{url}: access denied ({code}); check the AWS credentials and the bucket's policy"
            )
        message = exc.response.get("Error", {}).get("Message") or ""
        return f"{url}: the store answered {status} {code}: {message}".rstrip(": ")
    if isinstance(exc, BotoCoreError) and "endpoint" in type(exc).__name__.lower():
        return f"cannot reach the S3 endpoint for {url} ({exc}); {_ENDPOINT_HINT}"
    return f"{url}: {type(exc).__name__}: {exc}"


def _s3_failure(exc: ClientError | BotoCoreError, url: str) -> SsembleError:
    """The library's error for a failed S3 call (no credentials: a configuration error)."""
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(describe_s3_error(exc, url))
    return DownloadError(describe_s3_error(exc, url))


@asynccontextmanager
async def open_s3_client(endpoint_url: str | None, *, connections: int) -> AsyncIterator[S3Client]:
    """An S3 client of aiobotocore's credential chain (``AWS_*`` variables, profiles...).

    Checksums are computed only where an operation requires one (and where this module
    sends its own SHA-256): some S3-compatible stores refuse the SDK's default CRC32.

    Raises:
        ConfigurationError: ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) is not a URL.
    """
    config = AioConfig(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=connections,
        retries={"mode": "standard"},
    )
    async with AsyncExitStack() as stack:
        try:
            s3 = await stack.enter_async_context(
                get_session().create_client("s3", endpoint_url=endpoint_url or None, config=config)
            )
        except ValueError:  # botocore: "Invalid endpoint: ..." (never repeated: it may hold
            # a user and password)
            raise ConfigurationError(
                f"the S3 endpoint is not a valid URL (give http(s)://host[:port]); {_ENDPOINT_HINT}"
            ) from None
        yield s3


@attrs.frozen(kw_only=True)
class _Object:
    size: int
    metadata: Mapping[str, str]


class _Bucket:
    """The S3 calls of a download, on one bucket and prefix."""

    def __init__(self, s3: S3Client, location: S3Location) -> None:
        self.s3 = s3
        self.location = location

    def url_of(self, key: str) -> str:
        return self.location.url_of(key)

    async def check(self) -> None:
        """Fail early (before any API call) when the bucket cannot be used.

        Raises:
            ConfigurationError: no credentials.
            DownloadError: no such bucket, access denied, the endpoint is unreachable.
        """
        url = self.location.url_of("")
        try:
            await self.s3.head_bucket(Bucket=self.location.bucket)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchBucket"):  # a HEAD's answer has no body
                raise DownloadError(f"{url}: no such bucket") from exc
            raise _s3_failure(exc, url) from exc
        except BotoCoreError as exc:
            raise _s3_failure(exc, url) from exc

    async def head(self, key: str) -> _Object | None:
        """The object's size and metadata; None when there is none (or it cannot be read)."""
        try:
            found = await self.s3.head_object(Bucket=self.location.bucket, Key=key)
        except _S3_ERRORS:
            return None  # absent, or unreadable: a transfer says why if it fails too
        return _Object(size=found["ContentLength"], metadata=found.get("Metadata", {}))

    async def read_manifest(self, request_id: str) -> Manifest | None:
        """The request's manifest; None when there is none or it is not one.

        Raises:
            ClientError, BotoCoreError: the store could not be read.
        """
        key = self.location.request_key(request_id, MANIFEST)
        try:
            answer = await self.s3.get_object(Bucket=self.location.bucket, Key=key)
            async with answer["Body"] as body:
                data = await body.read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return decode_manifest(data)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self.s3.put_object(
            Bucket=self.location.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            ChecksumSHA256=part_checksum(data),
        )

    async def uploads_of(self, key: str) -> list[str]:
        """The ids of the unfinished uploads of exactly ``key``, oldest first."""
        found: list[tuple[dt.datetime, str]] = []
        pages = self.s3.get_paginator("list_multipart_uploads")
        async for page in pages.paginate(Bucket=self.location.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload.get("Key") == key and "UploadId" in upload:
                    initiated = upload.get("Initiated") or dt.datetime.min.replace(
                        tzinfo=dt.timezone.utc
                    )
                    found.append((initiated, upload["UploadId"]))
        return [upload_id for _, upload_id in sorted(found, key=lambda f: f[0])]

    async def parts_of(self, key: str, upload_id: str) -> list[UploadedPart]:
        parts: list[UploadedPart] = []
        pages = self.s3.get_paginator("list_parts")
        async for page in pages.paginate(Bucket=self.location.bucket, Key=key, UploadId=upload_id):
            parts.extend(
                UploadedPart(
                    number=part["PartNumber"],
                    size=part["Size"],
                    etag=part["ETag"],
                    checksum=part.get("ChecksumSHA256"),
                )
                for part in page.get("Parts", [])
                if "PartNumber" in part and "Size" in part and "ETag" in part
            )
        return parts

    async def finished(self, request_id: str) -> list[ClipOutcome] | None:
        """The outcomes of a request whose every clip is in the bucket, else None (the
        rules of ``finished_on_disk()``, with a HEAD for each object's size)."""
        try:
            manifest = await self.read_manifest(request_id)
        except _S3_ERRORS:
            return None
        entries = None if manifest is None else finished_entries(manifest)
        if entries is None:
            return None
        outcomes: list[ClipOutcome] = []
        for clip_id, entry in entries:
            if skipped_error(entry):
                outcomes.append(entry_outcome(request_id, clip_id, entry))
                continue
            key = self.location.request_key(request_id, str(entry.file))
            found = await self.head(key)
            if found is None or found.size != entry.size:
                return None
            outcomes.append(
                entry_outcome(request_id, clip_id, entry, url=self.url_of(key), size=found.size)
            )
        return outcomes

    async def resumable(
        self, key: str, entry: ManifestEntry, name: str, *, overwrite: bool
    ) -> tuple[str | None, list[UploadedPart], list[str]]:
        """The unfinished upload of ``key`` that a transfer can resume, and its parts kept:
        only when the manifest ``entry`` vouches for its bytes (the validator they came
        with, for the same file ``name``). Also returns the other uploads of the key, of
        no use (an earlier run's)."""
        partial = entry.partial
        if partial is None or entry.file != name:
            return None, [], []
        uploads = await self.uploads_of(key)
        if uploads and may_resume(entry, name, overwrite=overwrite) and partial.total:
            parts = await self.parts_of(key, uploads[-1])
            kept = resumable_parts(parts, part_size=PART_SIZE, total=partial.total)
            if kept:
                return uploads[-1], kept, uploads[:-1]
        return None, [], uploads

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort an unfinished upload (one already gone is no error)."""
        try:
            await self.s3.abort_multipart_upload(
                Bucket=self.location.bucket, Key=key, UploadId=upload_id
            )
        except ClientError as exc:
            if _code(exc) not in ("NoSuchUpload", "404"):
                raise


class _Parts:
    """The parts of one multipart upload, sent in order: one in flight while the next fills.

    Each part goes with its SHA-256 (``ChecksumSHA256``), which the store checks; a store
    that echoes another checksum fails the part.
    """

    def __init__(self, bucket: _Bucket, key: str, task_group: TaskGroup) -> None:
        self.bucket = bucket
        self.key = key
        self.task_group = task_group
        self.upload_id: str | None = None
        self.done: list[UploadedPart] = []
        self.uploaded = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._error: BaseException | None = None

    def resume(self, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        self.upload_id, self.done = upload_id, list(parts)
        self.uploaded = sum(part.size for part in parts)

    async def send(self, data: bytes) -> None:
        """Start sending ``data`` as the next part, once the one before it is through.

        Raises:
            ClientError, BotoCoreError, DownloadError: the part before it failed.
        """
        await self.settle()
        assert self.upload_id is not None
        self._idle = anyio.Event()
        self.task_group.start_soon(self._send, self.upload_id, len(self.done) + 1, data)

    async def _send(self, upload_id: str, number: int, data: bytes) -> None:
        try:
            checksum = await anyio.to_thread.run_sync(part_checksum, data)
            answer = await self.bucket.s3.upload_part(
                Bucket=self.bucket.location.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=checksum,
            )
            self._check_echo(number, answer.get("ChecksumSHA256"), checksum)
            self.done.append(
                UploadedPart(number=number, size=len(data), etag=answer["ETag"], checksum=checksum)
            )
            self.uploaded += len(data)
        except (*_S3_ERRORS, DownloadError) as exc:
            self._error = exc
        finally:
            self._idle.set()

    def _check_echo(self, number: int, echoed: str | None, sent: str) -> None:
        """Refuse a part whose SHA-256, as the store computed it, is not the one sent."""
        if echoed and echoed != sent:
            raise DownloadError(
                f"the store took part {number} of {self.bucket.url_of(self.key)} with another"
                " SHA-256 than was sent"
            )

    async def idle(self) -> None:
        """Wait for the part in flight, however it ends (a failed part is not kept)."""
        await self._idle.wait()

    async def settle(self) -> None:
        """Wait for the part in flight; raise its error, if it failed."""
        await self._idle.wait()
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def drop(self) -> None:
        """Abort the upload (after the part in flight): its parts are of no use."""
        with anyio.CancelScope(shield=True):
            await self._idle.wait()
        self._error = None
        upload_id, self.upload_id = self.upload_id, None
        self.done, self.uploaded = [], 0
        if upload_id is not None:
            await self.bucket.abort(self.key, upload_id)

    async def discard(self) -> None:
        """`drop()` on the way out of a failed transfer: a store that refuses the abort
        only leaves an upload for ``ssemble s3-cleanup`` (said in the log)."""
        try:
            await self.drop()
        except _S3_ERRORS as exc:
            logger.warning(
                "an unfinished upload of %s stays: %s", self.bucket.url_of(self.key), exc
            )

    def completed(self) -> list[CompletedPartTypeDef]:
        parts: list[CompletedPartTypeDef] = []
        for part in self.done:
            completed: CompletedPartTypeDef = {"PartNumber": part.number, "ETag": part.etag}
            if part.checksum is not None:
                completed["ChecksumSHA256"] = part.checksum
            parts.append(completed)
        return parts


class _Transfer:
    """One clip from its clip host into its object: the fetch loop and the upload."""

    def __init__(
        self,
        pipeline: _S3Pipeline,
        context: _RequestContext,
        clip_id: str,
        active: _Active,
        task_group: TaskGroup,
    ) -> None:
        self.pipeline = pipeline
        self.context = context
        self.clip_id = clip_id
        self.active = active
        self.bucket = pipeline.bucket
        self.key = pipeline.key_of(context, clip_id)
        self.url = self.bucket.url_of(self.key)
        self.parts = _Parts(self.bucket, self.key, task_group)
        self.state = TransferState()
        self.buffer = bytearray()
        self.partial_recorded = False

    # -- where to start ---------------------------------------------------------------------

    async def prepare(self) -> None:
        """Resume the upload an earlier run left, when the manifest vouches for its bytes
        (the validator they came with); abort the uploads of the key that cannot be used."""
        entry = self.context.store.entry(self.clip_id)
        upload_id, kept, stale = await self.bucket.resumable(
            self.key,
            entry,
            self.context.names[self.clip_id],
            overwrite=self.pipeline.options.overwrite,
        )
        if upload_id is not None and entry.partial is not None:
            self.parts.resume(upload_id, kept)
            # the head was checked before part 1 was sent: the bytes are this clip's
            self.state = TransferState(
                offset=self.parts.uploaded,
                validator=entry.partial.validator,
                total=entry.partial.total,
                head_checked=True,
            )
            self.partial_recorded = True
        for upload in stale:  # an earlier run's, for this very key: of no use now
            await self.bucket.abort(self.key, upload)

    async def reset(self) -> None:
        """Start over from zero: no bytes kept, the upload aborted."""
        self.buffer.clear()
        self.state.offset, self.state.head_checked = 0, False
        await self.parts.drop()

    # -- the fetch loop -------------------------------------------------------------------

    async def fetch(self, session: aiohttp.ClientSession) -> None:
        """Fetch until every byte of the clip is in the upload (or the buffer of a clip of
        one part): `fetch_tries()`, the decisions of every destination between tries.

        Raises:
            NotAClip: the host sent something that is not a clip.
            DownloadError: tries ran out, or no retry can mend the failure.
            SsembleError: a fresh URL was needed and reading the request failed.
            ClientError, BotoCoreError: the store refused a part or the upload.
        """
        await fetch_tries(
            self.context,
            self.clip_id,
            self.state,
            self.pipeline.fetch,
            functools.partial(self._try, session),
        )

    async def _try(self, session: aiohttp.ClientSession, url: str) -> None:
        """One request to the clip host, from the first byte not yet kept."""
        state, connection = self.state, self.pipeline.fetch.connection
        headers: dict[str, str] = {}
        if state.offset > 0 and state.validator:
            headers["Range"] = f"bytes={state.offset}-"
            headers["If-Range"] = state.validator
        elif state.offset > 0 or self.parts.upload_id is not None or self.buffer:
            # nothing can tell these bytes' rest from another file's (a refused resume
            # sets the offset back to 0: the bytes held for it go too)
            await self.reset()
        idle = self.pipeline.fetch.idle_timeout
        async with clip_response(session, url, headers, idle, connection) as response:
            await self._receive(response)

    async def _receive(self, response: aiohttp.ClientResponse) -> None:
        state = self.state
        if response.status == 416:
            check_unsatisfiable(response, state)  # every byte is here, or start over
            return
        kept = state.offset > 0
        total = accept_response(response, state)
        if kept and state.offset == 0:
            await self.reset()  # a full answer: start over
        if total is None:
            raise DownloadError(
                "the clip host did not say the clip's size; an s3:// destination needs it"
            )
        state.total = self.active.total = total
        if self.parts.upload_id is None and total > PART_SIZE:
            await self._begin()
        await self._stream(response, total)

    async def _begin(self) -> None:
        """Start the multipart upload; record what makes it resumable before any part."""
        state = self.state
        answer = await self.bucket.s3.create_multipart_upload(
            Bucket=self.bucket.location.bucket,
            Key=self.key,
            ContentType="video/mp4",
            ChecksumAlgorithm="SHA256",
            Metadata=upload_metadata(total=state.total, validator=state.validator),
        )
        self.parts.upload_id = answer["UploadId"]
        if state.validator:
            await self.pipeline.note_partial(
                self.context, self.clip_id, Partial(validator=state.validator, total=state.total)
            )
            self.partial_recorded = True

    async def _stream(self, response: aiohttp.ClientResponse, total: int) -> None:
        state = self.state
        from_start = state.offset == 0
        self.active.done = state.offset
        async for data, _ in response.content.iter_chunks():
            self.buffer += data
            state.offset += len(data)
            state.transferred += len(data)
            self.active.done += len(data)
            self.pipeline.tracker.bytes_received += len(data)
            if state.offset > total:  # never hold more than the clip: start over instead
                state.validator = None
                await self.reset()  # and keep none of this answer's parts for a later run
                raise Transient(f"the clip host sent more than the {total} bytes it announced")
            if from_start and not state.head_checked and len(self.buffer) >= _HEAD_BYTES:
                head = bytes(self.buffer[:_HEAD_BYTES])
                if not looks_like_mp4(head):
                    raise NotAClip(f"the clip host sent something that is not an MP4 ({head!r}...)")
                state.head_checked = True
            if self.parts.upload_id is not None:
                while len(self.buffer) >= PART_SIZE:
                    # the part before is through first: two parts in memory at most
                    await self.parts.settle()
                    with memoryview(self.buffer) as view:
                        part = bytes(view[:PART_SIZE])
                    del self.buffer[:PART_SIZE]
                    await self.parts.send(part)
        if state.offset != total:
            raise Transient(f"the body ended after {state.offset} of {total} bytes")
        if not state.head_checked:
            raise NotAClip(f"the clip host sent {state.offset} bytes, too few for an MP4")

    # -- the object ---------------------------------------------------------------------

    async def store(self) -> tuple[ClipState, int]:
        """Make the object of the fetched clip, never over a complete one (unless
        ``overwrite``); return how the clip ended and the object's size.

        Raises:
            DownloadError: the parts do not add up to the clip, or another object is there.
            ClientError, BotoCoreError: the store refused the object.
        """
        state = self.state
        total = state.total if state.total is not None else state.offset
        condition: dict[str, Any] = {} if self.pipeline.options.overwrite else {"IfNoneMatch": "*"}
        try:
            if self.parts.upload_id is None:
                data = bytes(self.buffer)
                await self.bucket.s3.put_object(
                    Bucket=self.bucket.location.bucket,
                    Key=self.key,
                    Body=data,
                    ContentType="video/mp4",
                    ChecksumSHA256=await anyio.to_thread.run_sync(part_checksum, data),
                    Metadata=upload_metadata(total=total, validator=state.validator),
                    **condition,
                )
                return ClipState.DOWNLOADED, len(data)
            if self.buffer:
                await self.parts.settle()
                await self.parts.send(bytes(self.buffer))
                self.buffer.clear()
            await self.parts.settle()
            if self.parts.uploaded != total:
                raise DownloadError(
                    f"the uploaded parts hold {self.parts.uploaded} bytes, the clip {total}:"
                    " not completed"
                )
            await self.bucket.s3.complete_multipart_upload(
                Bucket=self.bucket.location.bucket,
                Key=self.key,
                UploadId=self.parts.upload_id,
                MultipartUpload={"Parts": self.parts.completed()},
                **condition,
            )
            return ClipState.DOWNLOADED, total
        except ClientError as exc:
            if _code(exc) not in _EXISTS:
                raise
            if self.parts.upload_id is not None:
                await self.parts.discard()
            return await self._existing(total, exc)

    async def _existing(self, total: int, refusal: ClientError) -> tuple[ClipState, int]:
        """The store refused to write over an object: present when it is this clip."""
        found = await self.bucket.head(self.key)
        if found is not None and found.size == total:
            return ClipState.ALREADY_PRESENT, found.size
        if found is None:
            raise DownloadError(
                f"{self.url}: the store refused the object ({_code(refusal)}) and holds none;"
                " run again"
            ) from refusal
        raise DownloadError(
            f"{self.url} already holds another object ({found.size} bytes; the clip has"
            f" {total}); it is never overwritten: pass overwrite=True to replace it"
        ) from refusal

    async def kept(self) -> str:
        """What a failed transfer left for the next run (once the part in flight is through),
        in a few words; empty when nothing."""
        await self.parts.idle()
        if self.parts.upload_id is not None and self.parts.uploaded and self.partial_recorded:
            return (
                f"; {self.parts.uploaded} bytes kept in an unfinished upload: run again to resume"
            )
        return ""


class _S3Pipeline(_Pipeline):
    """The download pipeline with a bucket for a folder."""

    def __init__(
        self,
        reader: RequestReader,
        root: Path,
        options: DownloadOptions,
        retry: RetryPolicy,
        stream: DownloadStream,
        tracker: _Tracker,
        outcomes: MemoryObjectSendStream[ClipOutcome],
        connection: ConnectionSettings,
        *,
        bucket: _Bucket,
    ) -> None:
        super().__init__(reader, root, options, retry, stream, tracker, outcomes, connection)
        self.bucket = bucket
        self._writing: dict[RequestStore, anyio.Lock] = {}

    def key_of(self, context: _RequestContext, clip_id: str) -> str:
        return self.bucket.location.request_key(context.request_id, context.names[clip_id])

    def outcome(
        self, context: _RequestContext, short: Short, state: ClipState, **fields: Any
    ) -> ClipOutcome:
        url = self.bucket.url_of(self.key_of(context, short.id))
        return attrs.evolve(super().outcome(context, short, state, **fields), path=None, url=url)

    # -- the request's records ----------------------------------------------------------

    async def _save_manifest(self, store: RequestStore) -> None:
        """Write the request's manifest whole (one writer at a time, the newest state last)."""
        lock = self._writing.setdefault(store, anyio.Lock())
        async with lock:
            request = store.request
            manifest = Manifest(
                request_id=request.request_id,
                title=request.title,
                source_url=request.url or request.file_url,
                status=request.status_raw,
                written_at=_clock.utcnow().isoformat(),
                clip_ids=tuple(dict.fromkeys(short.id for short in request.shorts)),
                clips=dict(store.clips),
            )
            key = self.bucket.location.request_key(request.request_id, MANIFEST)
            await self.bucket.put(key, encode_manifest(manifest), "application/json")

    async def note_partial(self, context: _RequestContext, clip_id: str, partial: Partial) -> None:
        """Record the validator of an upload's bytes before its first part is sent."""
        entry = attrs.evolve(
            context.store.entry(clip_id),
            file=context.names[clip_id],
            complete=False,
            partial=partial,
        )
        context.store.clips[clip_id] = entry
        await self._save_manifest(context.store)

    async def record(
        self, context: _RequestContext, outcome: ClipOutcome, changes: dict[str, Any]
    ) -> ClipOutcome:
        """Keep a final outcome in the request's manifest (written when the request ends),
        with a sidecar object for a clip in the bucket."""
        short = context.short(outcome.clip_id) or Short(id=outcome.clip_id)
        complete = outcome.state in (ClipState.DOWNLOADED, ClipState.ALREADY_PRESENT)
        entry = attrs.evolve(
            context.store.entry(outcome.clip_id),
            file=context.names[outcome.clip_id],
            state=outcome.state.value,
            complete=complete,
            title=short.title,
            viral_score=short.viral_score,
            message=outcome.message,
            **changes,
        )
        if complete:
            entry = attrs.evolve(entry, size=outcome.size, mtime_ns=None, partial=None)
        context.store.clips[outcome.clip_id] = entry
        if not complete:
            return outcome
        key = self.key_of(context, outcome.clip_id) + ".json"
        sidecar = encode_sidecar(context.store.sidecar_of(short))
        try:
            await self.bucket.put(key, sidecar, "application/json")
        except _S3_ERRORS as exc:
            note = describe_s3_error(exc, self.bucket.url_of(key))
            return attrs.evolve(outcome, message=f"clip saved; its metadata not: {note}")
        return outcome

    async def close_store(self, store: RequestStore) -> None:
        if store not in self.open_stores:
            return
        self.open_stores.discard(store)
        try:
            await self._save_manifest(store)
        except _S3_ERRORS as exc:
            url = self.bucket.url_of(self.bucket.location.request_key(store.request.request_id, ""))
            logger.warning("the manifest of %s could not be written: %s", url, exc)
        finally:
            self._writing.pop(store, None)

    # -- requests -----------------------------------------------------------------------

    async def open_folder(self, context: _RequestContext, *, wait: bool = True) -> bool | None:
        """Read the request's manifest from the bucket (there is no lock to take)."""
        try:
            manifest = await self.bucket.read_manifest(context.request_id)
        except _S3_ERRORS as exc:
            where = self.bucket.location.request_key(context.request_id, MANIFEST)
            message = describe_s3_error(exc, self.bucket.url_of(where))
            for short in context.shorts.values():
                self.tracker.count(ClipState.FAILED)
                await self.outcomes.send(
                    self.outcome(
                        context,
                        short,
                        ClipState.FAILED,
                        message=message,
                        error=_s3_failure(exc, where),
                    )
                )
            return None
        context.store.clips = {} if manifest is None else dict(manifest.clips)
        self.open_stores.add(context.store)
        return True

    async def _present(self, context: _RequestContext, short: Short) -> bool:
        found = await self.bucket.head(self.key_of(context, short.id))
        entry = context.store.entry(short.id)
        recorded = entry.size if entry.complete and entry.file == context.names[short.id] else None
        if found is None or not holds_clip(found.size, found.metadata, recorded=recorded):
            return False
        await self.finish(
            context, self.outcome(context, short, ClipState.ALREADY_PRESENT, size=found.size)
        )
        return True

    async def skip_finished(self, requests: Sequence[RequestRef]) -> list[RequestRef]:
        """Report the requests whose every clip is in the bucket; return the others."""
        if self.options.overwrite:
            return list(requests)
        rest: list[RequestRef] = []
        for item in requests:
            outcomes = await self.bucket.finished(request_key(item))
            if outcomes is None:
                rest.append(item)
                continue
            await self.report_finished(outcomes)
        return rest

    # -- transfers ----------------------------------------------------------------------

    async def download(
        self, session: aiohttp.ClientSession, context: _RequestContext, clip_id: str
    ) -> None:
        short = context.short(clip_id) or Short(id=clip_id)
        key = (context.request_id, clip_id)
        active = self.tracker.active[key] = _Active(short.title)
        try:
            async with anyio.create_task_group() as uploads:
                transfer = _Transfer(self, context, clip_id, active, uploads)
                outcome, changes = await self._transfer(session, transfer, short)
        finally:
            self.tracker.active.pop(key, None)
        await self.finish(context, outcome, **changes)

    async def _transfer(
        self, session: aiohttp.ClientSession, transfer: _Transfer, short: Short
    ) -> tuple[ClipOutcome, dict[str, Any]]:
        context, clip_id, state = transfer.context, transfer.clip_id, transfer.state
        try:
            await transfer.prepare()
            state = transfer.state
            transfer.active.done = state.offset
            await transfer.fetch(session)
            ended, size = await transfer.store()
        except NotAClip as exc:
            await transfer.parts.discard()  # bytes known to be wrong
            return self._failed(context, short, state, str(exc), exc), {"partial": None}
        except DownloadError as exc:
            kept = await transfer.kept()
            if not kept:
                await transfer.parts.discard()  # nothing a later run could use
            return self._failed(context, short, state, f"{exc}{kept}", exc), {}
        except _S3_ERRORS as exc:
            gone = isinstance(exc, ClientError) and _code(exc) == "NoSuchUpload"
            kept = "" if gone else await transfer.kept()  # aborted elsewhere: nothing kept
            message = describe_s3_error(exc, transfer.url) + kept
            return self._failed(context, short, state, message, _s3_failure(exc, transfer.url)), {}
        except SsembleError as exc:
            return self._failed(context, short, state, f"no fresh URL: {exc}", exc), {}
        outcome = self.outcome(
            context,
            context.short(clip_id) or short,
            ended,
            size=size,
            transferred=state.transferred,
        )
        return outcome, {"etag": state.etag, "last_modified": state.last_modified}


def _connections(options: DownloadOptions) -> int:
    """Connections to the store: a part and a record per transfer, and some to spare."""
    return max(10, 2 * options.concurrency + 2)


@asynccontextmanager
async def run_s3_pipeline(
    reader: RequestReader,
    requests: Sequence[RequestRef],
    location: S3Location,
    options: DownloadOptions,
    *,
    retry: RetryPolicy,
    user_agent: str,
    connection: ConnectionSettings,
    endpoint_url: str | None,
) -> AsyncIterator[DownloadStream]:
    """`run_pipeline()` into a bucket: the same stream of outcomes, objects for files.

    Raises:
        ConfigurationError: no AWS credentials.
        DownloadError: the bucket cannot be used (missing, access denied, unreachable).
    """
    async with open_s3_client(endpoint_url, connections=_connections(options)) as s3:
        bucket = _Bucket(s3, location)
        await bucket.check()
        make = functools.partial(_S3Pipeline, bucket=bucket)
        async with run_pipeline(
            reader,
            requests,
            Path(location.prefix),
            options,
            retry=retry,
            user_agent=user_agent,
            connection=connection,
            make_pipeline=make,
        ) as stream:
            yield stream


async def _plan_request(
    bucket: _Bucket,
    reader: RequestReader,
    request: ShortsRequest,
    options: DownloadOptions,
    session: aiohttp.ClientSession,
    connection: ConnectionSettings,
    limiter: anyio.CapacityLimiter,
) -> list[PlannedClip]:
    """The plan of one completed request: its objects, uploads and manifest read."""
    location = bucket.location
    context = _RequestContext(reader, request, Path(location.prefix), options)
    manifest = await bucket.read_manifest(request.request_id)
    context.store.clips = {} if manifest is None else dict(manifest.clips)
    if not options.overwrite:
        context.keep_recorded_names()

    async def plan(short: Short) -> PlannedClip:
        name = context.names[short.id]
        key = location.request_key(request.request_id, name)
        entry = context.store.entry(short.id)
        fetched = not short.error and short.is_downloadable
        found = await bucket.head(key) if fetched and not options.overwrite else None
        recorded = entry.size if entry.complete and entry.file == name else None
        present = found is not None and holds_clip(found.size, found.metadata, recorded=recorded)
        kept: list[UploadedPart] = []
        if fetched and not present:
            _, kept, _ = await bucket.resumable(key, entry, name, overwrite=options.overwrite)
        action = plan_object(
            error=bool(short.error),
            downloadable=short.is_downloadable,
            present=present,
            resumable=bool(kept),
        )
        size: int | None = found.size if present and found is not None else None
        to_fetch: int | None = 0
        if action in (PlannedAction.DOWNLOAD, PlannedAction.RESUME) and short.video_url:
            async with limiter:
                size = await _head_size(session, short.video_url, connection)
            if size is None and entry.partial is not None and kept:
                size = entry.partial.total
            to_fetch = None if size is None else max(size - sum(p.size for p in kept), 0)
        return PlannedClip(
            request_id=request.request_id,
            clip_id=short.id,
            action=action,
            url=bucket.url_of(key),
            size=size,
            to_fetch=to_fetch,
            title=short.title,
            viral_score=short.viral_score,
        )

    planned: dict[str, PlannedClip] = {}

    async def one(short: Short) -> None:
        planned[short.id] = await plan(short)

    async with anyio.create_task_group() as plans:
        for short in context.shorts.values():
            plans.start_soon(one, short)
    return [planned[clip_id] for clip_id in context.shorts]  # highest score first


async def plan_s3_downloads(
    reader: RequestReader,
    requests: Sequence[RequestRef],
    location: S3Location,
    options: DownloadOptions,
    *,
    user_agent: str,
    connection: ConnectionSettings,
    endpoint_url: str | None,
) -> DownloadPlan:
    """What ``download_many(requests, "s3://...")`` would do now, with nothing written: the
    rules of ``plan_downloads()``, with objects for files and unfinished uploads for
    ``.part`` files (``to_fetch`` of a resume: what its kept parts do not hold).

    Raises:
        ConfigurationError: no AWS credentials.
        DownloadError: the bucket cannot be used (missing, access denied, unreachable).
    """
    clips: list[PlannedClip] = []
    errors: dict[str, SsembleError] = {}
    limiter = anyio.CapacityLimiter(options.concurrency)
    async with open_s3_client(endpoint_url, connections=_connections(options)) as s3:
        bucket = _Bucket(s3, location)
        await bucket.check()
        session = open_download_session(
            read_bufsize=64 * 1024, user_agent=user_agent, connection=connection
        )
        try:
            for item in requests:
                key = request_key(item)
                present = None if options.overwrite else await bucket.finished(key)
                if present is not None:
                    clips.extend(_planned_present(present, options))
                    continue
                try:
                    request = (
                        item if isinstance(item, ShortsRequest) else await reader.get_shorts(key)
                    )
                    if request.status in (RequestState.FAILED, RequestState.CANCELLED):
                        errors[key] = RequestFailedError(
                            request.request_id, request.status_raw, request.failure_reason
                        )
                    elif request.status is not RequestState.COMPLETED:
                        errors[key] = RequestNotReadyError(request.request_id, request.status_raw)
                    else:
                        clips.extend(
                            await _plan_request(
                                bucket, reader, request, options, session, connection, limiter
                            )
                        )
                except SsembleError as exc:
                    errors[key] = exc
                except _S3_ERRORS as exc:
                    errors[key] = _s3_failure(exc, location.url_of(key))
        finally:
            with anyio.CancelScope(shield=True):
                await session.close()
    return DownloadPlan(clips=tuple(clips), request_errors=errors)


def _planned_present(outcomes: list[ClipOutcome], options: DownloadOptions) -> list[PlannedClip]:
    """The plan of a request whose every clip is in the bucket (after ``top`` / ``min_score``)."""
    return [
        PlannedClip(
            request_id=outcome.request_id,
            clip_id=outcome.clip_id,
            action=(
                PlannedAction.SKIP_ERROR
                if outcome.state is ClipState.SKIPPED_ERROR
                else PlannedAction.PRESENT
            ),
            url=outcome.url,
            size=outcome.size or None,
            to_fetch=0,
            title=outcome.title,
            viral_score=outcome.viral_score,
        )
        for outcome in chosen_outcomes(outcomes, options, by_score=True)
    ]


async def abort_stale_uploads(
    dest: str,
    *,
    older_than: dt.timedelta = dt.timedelta(hours=24),
    endpoint_url: str | None = None,
) -> list[StaleUpload]:
    """Abort the unfinished multipart uploads under ``s3://bucket/prefix`` started at least
    ``older_than`` ago (what killed downloads left); return them.

    An upload still running is younger than the longest transfer: keep ``older_than``
    above it (the default, a day, is).

    Raises:
        ValueError: ``dest`` is not an ``s3://bucket/prefix`` URL.
        ConfigurationError: no AWS credentials.
        DownloadError: the bucket cannot be listed or an upload cannot be aborted.
    """
    location = parse_s3_url(dest)
    prefix = f"{location.prefix}/" if location.prefix else ""
    now = _clock.utcnow()
    aborted: list[StaleUpload] = []
    async with open_s3_client(endpoint_url, connections=4) as s3:
        bucket = _Bucket(s3, location)
        try:
            pages = s3.get_paginator("list_multipart_uploads")
            async for page in pages.paginate(Bucket=location.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload.get("Key"), upload.get("UploadId")
                    initiated = upload.get("Initiated")
                    if key is None or upload_id is None or initiated is None:
                        continue
                    if not is_stale(initiated, now, older_than):
                        continue
                    await bucket.abort(key, upload_id)
                    aborted.append(
                        StaleUpload(
                            url=location.url_of(key),
                            upload_id=upload_id,
                            initiated=initiated.astimezone(dt.timezone.utc),
                        )
                    )
        except _S3_ERRORS as exc:
            raise _s3_failure(exc, location.url) from exc
    return aborted
