"""The gateway's object stores: bytes too large for a message, streamed in
and out a slice at a time, never held whole.

Named "<tenant>/<kind>/<id>" (``schemas.tasks.BlobRef``): kind "file" lives
in ``subjects.OBJ_BLOBS`` until deleted; "upload" and "image" in
``subjects.OBJ_MEDIA``, which ages them out (``media_ttl_s``). The stores are
JetStream object stores in NATS's own layout (nats-py's
``nats/js/object_store.py``, the Go client's alike): stream ``OBJ_<bucket>``,
an object's chunks on ``$O.<bucket>.C.<nuid>``, then its meta (JSON: size,
chunk count, ``SHA-256=`` digest) on ``$O.<bucket>.M.<base64url name>``,
written last with a rollup, so a reader never sees an object whose chunks
are not all stored, and ``nats object get`` or nats-py's ``ObjectStore``
read ours.

Writing keeps a few chunks' acks in flight (a window, not one round trip a
chunk, and never the whole stream). Reading asks for one chunk at a time by
sequence (a direct get of the next message on the object's chunk subject,
the next one asked for while the caller takes the current): memory stays at
two chunks however large the object and however slow the caller, where an
ordered push consumer would have the server push up to its flow-control
window (32 MiB since nats-server 2.11) into the client. It needs no consumer
either, so a reading role gets no right to make them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.kv import MSG_ROLLUP_SUBJECT
from nats.nuid import NUID

from schemas import subjects
from schemas.control import NO_TENANT
from schemas.errors import InternalError, InvalidRequest, RecordNotFound, RequestTooLarge
from schemas.tasks import BlobRef

T = TypeVar("T")
log = logging.getLogger("sluice.blobs")

# nats-py's and the Go client's default: well under the 8 MB a message may hold.
CHUNK_BYTES = 128 * 1024
# Chunks published whose ack has not come back yet (1 MB at 128 KB a chunk).
ACKS_IN_FLIGHT = 8
# How long one ack or one chunk read may take before the store counts as unavailable.
OP_TIMEOUT_S = 10.0

KINDS: dict[str, str] = {"file": subjects.OBJ_BLOBS, "upload": subjects.OBJ_MEDIA, "image": subjects.OBJ_MEDIA}
# The tenant as ``schemas.control.ID_PATTERN`` (``NO_TENANT`` for a key of no tenant),
# the kind, an id of ``secrets.token_urlsafe``'s alphabet.
_NAME = re.compile(r"([A-Za-z0-9_-]{1,64})/(file|upload|image)/([A-Za-z0-9_-]{16,64})")
_ID_BYTES = 18  # 24 characters, 144 random bits


def new_name(tenant_id: str, kind: str) -> str:
    """A fresh name for a blob of ``kind`` ("file", "upload", "image"): its
    id unguessable, so a name is never reused and never found by trying."""
    name = f"{tenant_id or NO_TENANT}/{kind}/{secrets.token_urlsafe(_ID_BYTES)}"
    bucket_of(name)
    return name


def bucket_of(name: str) -> str:
    """The store a name lives in; ``InvalidRequest`` for a name not of the
    gateway's form (the name becomes a subject token, so nothing else)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise InvalidRequest("Not a valid stored file name.", code="invalid_file_name")
    return KINDS[match.group(2)]


def tenant_of(name: str) -> str:
    """Whose blob it is ("" for a key of no tenant)."""
    bucket_of(name)
    tenant = name.split("/", 1)[0]
    return "" if tenant == NO_TENANT else tenant


def _stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


def _digest(sha: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(sha).decode()


def _unavailable(exc: BaseException) -> InternalError:
    return InternalError(f"The object store is not available ({exc!r}).", status=503)


# JetStream's code for "no such stream" (a 404 like "no such message").
_NO_STREAM = 10059


async def _nats(op: Awaitable[T]) -> T:
    """``op``'s result; NATS's trouble (no stream, no answer, refused) as a 503."""
    try:
        return await op
    except (nats.errors.Error, TimeoutError) as exc:
        raise _unavailable(exc) from exc


async def _found(op: Awaitable[api.RawStreamMsg]) -> api.RawStreamMsg | None:
    """A message get's message, None when there is no such message."""
    try:
        return await op
    except NotFoundError as exc:
        if exc.err_code == _NO_STREAM:
            raise _unavailable(exc) from exc
        return None
    except (nats.errors.Error, TimeoutError) as exc:
        raise _unavailable(exc) from exc


async def ensure_stores(js: JetStreamContext, media_ttl_s: float, replicas: int = 1) -> None:
    """Both stores made where missing (by the bootstrap, as ``admin``: no
    process role may make a stream). ``OBJ_MEDIA``'s age follows
    ``media_ttl_s`` when it changed; anything else a store in use keeps."""
    for bucket, max_age in ((subjects.OBJ_BLOBS, None), (subjects.OBJ_MEDIA, media_ttl_s)):
        try:
            info = await js.stream_info(_stream(bucket))
        except NotFoundError:
            await js.add_stream(_store_config(bucket, max_age, replicas))
            continue
        if max_age is not None and info.config.max_age != max_age:
            info.config.max_age = max_age
            await js.update_stream(info.config)


def _store_config(bucket: str, max_age: float | None, replicas: int) -> api.StreamConfig:
    # As nats-py's ``create_object_store`` makes one, with an age for media.
    return api.StreamConfig(
        name=_stream(bucket),
        description="Sluice: files (until deleted)" if max_age is None else "Sluice: uploads and images (age out)",
        subjects=[f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        max_age=max_age,
        max_bytes=-1,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )


class BlobStore:
    """``services.providers.tasks.BlobAccess`` over NATS.

    ``may_purge`` False for a role without the right to purge (the provider
    stage, which only writes images into ``OBJ_MEDIA``): a write it could not
    finish leaves chunks that no meta names, and the store's age removes them.
    """

    new_name = staticmethod(new_name)

    def __init__(self, js: JetStreamContext, *, may_purge: bool = True) -> None:
        self.js = js
        self.may_purge = may_purge
        self._nuid = NUID()
        # Clean-ups under way, held so a second cancellation cannot drop one.
        self._cleanups: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Ready to write. The stores are made by the bootstrap
        (``ensure_stores``); a process may start before they exist, so they
        are not looked up here: a write or read then fails with 503."""
        # The inbox asynchronous acks come back on, made once rather than
        # on the first upload (nats-py makes it lazily, unguarded against two
        # first writers at once).
        if not self.js._async_reply_prefix:
            await self.js._init_async_reply()

    async def put_stream(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = "",
        filename: str = "",
        max_bytes: int | None = None,
    ) -> BlobRef:
        """Keep what ``chunks`` yields as ``name``; its size and sha256 on the
        ref. Past ``max_bytes`` it stops reading, removes what it kept and
        raises ``schemas.errors.RequestTooLarge``. Whatever ends it early (an
        error of ``chunks``, of NATS, a cancellation) removes what it kept
        and is raised as it was (NATS's as a 503)."""
        bucket = bucket_of(name)
        # A name is written once (``new_name`` never gives one twice), so no
        # older object's chunks are looked for to remove, as nats-py does.
        chunk_subject = _chunk_subject(bucket, self._nuid.next().decode())
        acks: deque[asyncio.Future[api.PubAck]] = deque()
        sha = hashlib.sha256()
        size = count = 0
        buffer = bytearray()
        try:
            async for piece in chunks:
                size += len(piece)
                if max_bytes is not None and size > max_bytes:
                    raise RequestTooLarge(
                        f"The file is larger than the limit of {max_bytes} bytes.", code="file_too_large"
                    )
                sha.update(piece)
                buffer += piece
                while len(buffer) >= CHUNK_BYTES:
                    await self._publish(bucket, chunk_subject, bytes(buffer[:CHUNK_BYTES]), acks)
                    del buffer[:CHUNK_BYTES]
                    count += 1
            if buffer:
                await self._publish(bucket, chunk_subject, bytes(buffer), acks)
                count += 1
            while acks:
                await self._ack(acks.popleft())
            digest = sha.digest()
            info = api.ObjectInfo(
                name=name,
                bucket=bucket,
                nuid=chunk_subject.rsplit(".", 1)[1],
                size=size,
                chunks=count,
                digest=_digest(digest),
                mtime=datetime.now(UTC).isoformat(),
                headers=_headers(content_type, filename),
                options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
            )
            await _nats(
                self.js.publish(
                    _meta_subject(bucket, name),
                    json.dumps(info.as_dict()).encode(),
                    timeout=OP_TIMEOUT_S,
                    stream=_stream(bucket),
                    headers={api.Header.ROLLUP: MSG_ROLLUP_SUBJECT},
                )
            )
        except BaseException:
            await self._discard(bucket, chunk_subject, acks)
            raise
        return BlobRef(name=name, size=size, sha256=digest.hex(), content_type=content_type, filename=filename)

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        """Keep ``data`` (an image made: a few MB at most) as ``name``. How
        long it is kept is its store's: ``ttl_s`` is what the caller expects
        of it, and an "image" name's store (``OBJ_MEDIA``) keeps it
        ``media_ttl_s``."""

        async def pieces() -> AsyncIterator[bytes]:
            view = memoryview(data)
            for at in range(0, len(data), CHUNK_BYTES):
                yield bytes(view[at : at + CHUNK_BYTES])

        return await self.put_stream(name, pieces(), content_type=content_type)

    def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        """The blob's bytes in order, a chunk at a time. ``RecordNotFound``
        when it is not there (deleted, aged out); ``InternalError`` when what
        is stored is not what ``ref`` names (size, sha256) or is incomplete
        (checked as the chunks come, the digest at the end: the caller may
        have used all but the last chunk when it hears)."""
        return self._chunks(ref)

    async def _chunks(self, ref: BlobRef) -> AsyncIterator[bytes]:
        bucket = bucket_of(ref.name)
        stream = _stream(bucket)
        info = await self.info(ref.name)
        if info is None:
            raise RecordNotFound(
                f"Stored file {ref.name!r} is not there (deleted, or aged out).", code="file_not_found"
            )
        if info.size != ref.size or info.is_link() or not info.nuid:
            raise InternalError(f"Stored file {ref.name!r} is not the one referred to.")
        chunk_subject = _chunk_subject(bucket, info.nuid)
        want = info.chunks or 0
        sha = hashlib.sha256()
        size = got = 0
        ahead: asyncio.Task[api.RawStreamMsg] | None = None
        if want:
            ahead = asyncio.ensure_future(self._next_chunk(stream, chunk_subject, 1))
        try:
            while ahead is not None:
                msg = await ahead
                got += 1
                ahead = (
                    asyncio.ensure_future(self._next_chunk(stream, chunk_subject, (msg.seq or 0) + 1))
                    if got < want
                    else None
                )
                data = msg.data or b""
                size += len(data)
                if size > info.size:
                    raise InternalError(f"Stored file {ref.name!r} is larger than its meta says.")
                sha.update(data)
                yield data
        finally:
            if ahead is not None:
                ahead.cancel()
        if size != info.size or _digest(sha.digest()) != info.digest or (ref.sha256 and sha.hexdigest() != ref.sha256):
            raise InternalError(f"Stored file {ref.name!r} does not match its digest.")

    async def _next_chunk(self, stream: str, chunk_subject: str, from_seq: int) -> api.RawStreamMsg:
        """The first chunk at or after ``from_seq``. Asked of any replica
        first (direct get); one that has not yet stored it says "not found",
        so the stream's leader is asked then."""
        for direct in (True, False):
            msg = await _found(self.js.get_msg(stream, seq=from_seq, subject=chunk_subject, direct=direct, next=True))
            if msg is not None:
                return msg
        raise InternalError("A stored file is incomplete: a chunk is missing.")

    async def info(self, name: str) -> api.ObjectInfo | None:
        """The object's meta, or None when there is none (or a deleted one's)."""
        bucket = bucket_of(name)
        subject = _meta_subject(bucket, name)
        for direct in (True, False):
            msg = await _found(self.js.get_last_msg(_stream(bucket), subject, direct=direct))
            if msg is None:
                continue
            try:
                info = api.ObjectInfo.from_response(json.loads(msg.data or b""))
            except (ValueError, TypeError, AttributeError) as exc:
                raise InternalError(f"Stored file {name!r} has a meta that does not decode.") from exc
            return None if info.deleted else info
        return None

    async def delete(self, name: str) -> None:
        """Gone (no error if it was not there): its meta first, then its
        chunks, so a delete cut short leaves chunks no meta names (a leak,
        removed by the age of ``OBJ_MEDIA``), never a meta naming lost chunks."""
        bucket = bucket_of(name)
        info = await self.info(name)
        if info is None:
            return
        stream = _stream(bucket)
        await _nats(self.js.purge_stream(stream, subject=_meta_subject(bucket, name)))
        await _nats(self.js.purge_stream(stream, subject=_chunk_subject(bucket, info.nuid)))

    async def _publish(self, bucket: str, subject: str, data: bytes, acks: deque[asyncio.Future[api.PubAck]]) -> None:
        while len(acks) >= ACKS_IN_FLIGHT:
            await self._ack(acks.popleft())
        acks.append(await _nats(self.js.publish_async(subject, data, stream=_stream(bucket))))

    async def _ack(self, ack: asyncio.Future[api.PubAck]) -> None:
        await _nats(asyncio.wait_for(ack, OP_TIMEOUT_S))

    async def _discard(self, bucket: str, chunk_subject: str, acks: deque[asyncio.Future[api.PubAck]]) -> None:
        """Remove the chunks of a write that did not finish, in a task of
        its own: a second cancellation of the writer does not stop it."""
        task = asyncio.ensure_future(self._purge_after_acks(bucket, chunk_subject, list(acks)))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        await asyncio.shield(task)

    async def _purge_after_acks(self, bucket: str, chunk_subject: str, acks: list[asyncio.Future[api.PubAck]]) -> None:
        # A chunk still in flight could be stored after the purge ran (the
        # server takes API calls and stored messages on separate queues), so
        # its ack comes first.
        if acks:
            await asyncio.wait(acks, timeout=OP_TIMEOUT_S)
            for ack in acks:  # their errors are this failure's, already raised: retrieved, not logged
                if ack.done() and not ack.cancelled():
                    ack.exception()
        if not self.may_purge:
            return
        try:
            await self.js.purge_stream(_stream(bucket), subject=chunk_subject)
        except Exception as exc:  # the store's own trouble: what is left is orphaned, never read
            log.warning("could not remove the chunks of an unfinished write (%s): %r", chunk_subject, exc)


def _headers(content_type: str, filename: str) -> dict[str, list[str]] | None:
    # The Go client's ``nats.Header`` shape (a list per name), so its CLI shows them.
    out: dict[str, list[str]] = {}
    if content_type:
        out["Content-Type"] = [content_type]
    if filename:
        out["Content-Disposition"] = [f'attachment; filename="{filename}"']
    return out or None
