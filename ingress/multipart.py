"""A multipart/form-data body read as it streams in: text fields kept
(bounded), each file handed to ``store`` a slice at a time, so an upload of
any size never sits in memory.

The parsing is ``multipart``'s ``PushMultipartParser`` (the parser litestar
uses): sans-IO, fed each ASGI body message, it yields a part's headers, its
body in slices, then its end. A file's slices go through a pipe of a few
slices to the ``store`` task that keeps them: when the store is slower than
the client, the pipe fills and the body is not read further (backpressure:
the client's TCP window closes), so memory stays at a few slices.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable

from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser, parse_options_header

from ingress.http import ClientDisconnected, Message, Receive, Scope, content_coding, header
from schemas.errors import InternalError, InvalidRequest, RequestTimeout, RequestTooLarge, UnsupportedEncoding
from schemas.tasks import BlobRef
from services.apis.base import Form

# (field name, file name, content type, its bytes as they come) -> where it was kept.
StoreFile = Callable[[str, str, str, AsyncIterator[bytes]], Awaitable[BlobRef]]

# Parts one form may have: OpenAI's largest form (an image edit) has up to 16
# images and a dozen fields.
MAX_PARTS = 64
# A part's headers: one line, and how many.
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 8
# Body slices waiting for the store (ASGI servers hand ~64 KB at a time).
PIPE_SLICES = 4
# What is neither a file's bytes nor a field's value (boundaries, part
# headers, a preamble or an epilogue): bounded, so a body that is all
# framing cannot be read for ever.
FRAMING_BYTES = MAX_PARTS * (MAX_HEADERS * MAX_HEADER_BYTES // 4) + 65536
MAX_NAME_CHARS = 255
# RFC 2046: 1 to 70 characters of this set, the last not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_OCTETS = "application/octet-stream"
_END = None  # what the pipe carries after a file's last slice


async def read_form(
    scope: Scope, receive: Receive, store: StoreFile, *, max_field_bytes: int, timeout_s: float
) -> Form:
    """The form; ``InvalidRequest`` (400) for a body that is not
    multipart/form-data or is malformed, 413 for text fields past
    ``max_field_bytes`` in all; ``ClientDisconnected`` when the client left;
    ``RequestTimeout`` (408) when the body went silent for ``timeout_s``
    (silence, not the whole body's time: a large upload may take long, a
    stalled one may not). Files it kept before it failed are the caller's
    to remove (its ``store`` knows them); a file cut short by the failure
    is removed by ``store`` (cancelled: ``BlobStore.put_stream`` purges)."""
    if content_coding(scope):
        raise UnsupportedEncoding("An upload is read as multipart/form-data as sent: no Content-Encoding.")
    reader = _FormReader(_boundary(scope), store, max_field_bytes)
    try:
        while True:
            message = await _next_message(receive, timeout_s)
            body = message.get("body", b"")
            await reader.feed(body)
            if not message.get("more_body", False):
                return reader.finish()
    except MultipartError as exc:
        raise _refusal(exc) from None
    finally:
        await reader.abandon()


async def _next_message(receive: Receive, timeout_s: float) -> Message:
    try:
        async with asyncio.timeout(timeout_s):
            message = await receive()
    except TimeoutError:
        raise RequestTimeout(f"The request body went silent for {timeout_s:g} s.") from None
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    return message


def _boundary(scope: Scope) -> str:
    content_type = header(scope, b"content-type") or ""
    media_type, options = parse_options_header(content_type)
    if media_type != "multipart/form-data":
        raise InvalidRequest(
            f"Expected a multipart/form-data body, not {media_type[:100] or 'no content type'!r}.",
            code="invalid_content_type",
        )
    boundary = options.get("boundary", "")
    # The options' parser stops at a character no option may hold: a header
    # with one is not cut short and taken, it is refused.
    if not _BOUNDARY.fullmatch(boundary) or not content_type.isprintable():
        raise InvalidRequest("The multipart/form-data content type has no valid boundary.", code="invalid_content_type")
    return boundary


def _refusal(exc: MultipartError) -> InvalidRequest | RequestTooLarge:
    if isinstance(exc, ParserLimitReached):
        return RequestTooLarge(f"The multipart body is past a limit: {exc}.")
    return InvalidRequest(f"The multipart body is malformed: {exc}.", code="invalid_multipart")


def clean_filename(raw: str) -> str:
    """The base name a client gave, without any path (either separator) and
    without control or formatting characters (which could forge a header or
    a log line downstream), at most ``MAX_NAME_CHARS``; "" when nothing is left."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    if kept in (".", ".."):
        return ""
    return kept[:MAX_NAME_CHARS]


def _field_name(segment: MultipartSegment) -> str:
    name = segment.name or ""
    if not name or len(name) > MAX_NAME_CHARS or any(unicodedata.category(ch)[0] == "C" for ch in name):
        raise InvalidRequest("A form part has no valid name.", code="invalid_multipart")
    return name


def _media_type(segment: MultipartSegment) -> str:
    kind = segment.content_type or ""
    return kind if _MEDIA_TYPE.fullmatch(kind) else _OCTETS


class _FormReader:
    """The parser's events turned into the form: one part open at a time."""

    def __init__(self, boundary: str, store: StoreFile, max_field_bytes: int) -> None:
        self.parser = PushMultipartParser(
            boundary,
            max_header_size=MAX_HEADER_BYTES,
            max_header_count=MAX_HEADERS,
            max_segment_count=MAX_PARTS,
        )
        self.store = store
        self.field_bytes_left = max_field_bytes
        self.fields: dict[str, list[str]] = {}
        self.files: dict[str, list[BlobRef]] = {}
        self.parts = 0
        self.framing = 0
        # The open part: a text field's name and value so far, or a file's pipe.
        self.field: tuple[str, bytearray] | None = None
        self.file: _FilePipe | None = None

    async def feed(self, body: bytes) -> None:
        if not body:
            return
        self.framing += len(body)
        if self.parser.closed:
            self._check_framing()
            return
        for event in self.parser.parse(body):
            if isinstance(event, MultipartSegment):
                self._open(event)
            elif event is None:
                await self._close()
            else:
                self.framing -= len(event)
                await self._take(event)
        self._check_framing()

    def _check_framing(self) -> None:
        if self.framing > FRAMING_BYTES:
            raise RequestTooLarge("The multipart body has too much besides its fields and files.")

    def _open(self, segment: MultipartSegment) -> None:
        self.parts += 1
        name = _field_name(segment)
        if segment.filename is None:
            self.field = (name, bytearray())
            return
        self.file = _FilePipe(self.store, name, clean_filename(segment.filename), _media_type(segment))

    async def _take(self, data: bytes) -> None:
        if self.file is not None:
            await self.file.put(data)
            return
        assert self.field is not None
        self.field_bytes_left -= len(data)
        if self.field_bytes_left < 0:
            raise RequestTooLarge("The form's text fields are larger than the limit in all.")
        self.field[1].extend(data)

    async def _close(self) -> None:
        if self.file is not None:
            pipe, self.file = self.file, None
            self.files.setdefault(pipe.field, []).append(await pipe.close())
            return
        assert self.field is not None
        (name, value), self.field = self.field, None
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise InvalidRequest(f"Form field {name!r} is not UTF-8 text.", code="invalid_multipart") from None
        self.fields.setdefault(name, []).append(text)

    def finish(self) -> Form:
        """The form, once the body ended: a body that ended before its last
        boundary is malformed."""
        self.parser.close()  # raises ParserError when incomplete
        if self.parts == 0:
            raise InvalidRequest("The multipart body has no parts.", code="invalid_multipart")
        return Form(fields=self.fields, files=self.files)

    async def abandon(self) -> None:
        """A file being kept when the form failed is cut short (its store
        removes what it kept) before the failure is raised."""
        if self.file is not None:
            pipe, self.file = self.file, None
            await pipe.abandon()


class _FilePipe:
    """One file part's slices on their way to ``store``, which runs as a
    task of its own reading them as they come."""

    def __init__(self, store: StoreFile, field: str, filename: str, content_type: str) -> None:
        self.field = field
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(PIPE_SLICES)
        self.task: asyncio.Task[BlobRef] = asyncio.ensure_future(store(field, filename, content_type, self._slices()))

    async def _slices(self) -> AsyncIterator[bytes]:
        while (data := await self.queue.get()) is not _END:
            yield data

    async def put(self, data: bytes | None) -> None:
        if self.task.done():
            self._stopped()
        if not self.queue.full():
            self.queue.put_nowait(data)
            return
        waiting = asyncio.ensure_future(self.queue.put(data))
        try:
            await asyncio.wait((waiting, self.task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiting.done():
                waiting.cancel()
        if not waiting.done() or waiting.cancelled():
            self._stopped()

    def _stopped(self) -> None:
        """The store ended before the file did: its error, or an internal one
        (a store must read a file to its end)."""
        if self.task.cancelled():
            raise InternalError("Keeping an uploaded file was cancelled.")
        exc = self.task.exception()
        if exc is not None:
            raise exc
        raise InternalError("The store stopped reading an uploaded file before its end.")

    async def close(self) -> BlobRef:
        await self.put(_END)
        return await self.task

    async def abandon(self) -> None:
        if not self.task.done():
            self.task.cancel()
        # The store's clean-up (a purge) runs before the form's failure is
        # raised; its own error or cancellation says nothing new.
        await asyncio.wait((self.task,))
        if not self.task.cancelled():
            self.task.exception()  # retrieved: never "exception was never retrieved"
