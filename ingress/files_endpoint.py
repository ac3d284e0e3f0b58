"""OpenAI's Files API: ``POST /v1/files`` (a multipart upload), ``GET
/v1/files`` (a page of the tenant's files), ``GET`` and ``DELETE
/v1/files/{id}``, ``GET /v1/files/{id}/content``.

The key is checked before anything else, the body included: who may not
call learns nothing, not even which paths exist. A key sees its own
tenant's files only; any other id is a 404, as one never made.

An upload streams into the object store as it arrives
(``ingress.multipart.read_form`` hands the file part to
``BlobStore.put_stream`` a slice at a time), within the tenant's cap
(413 past it, what was kept removed); the record is made once the whole
body was read and its fields checked. Before the body, the file is counted
in the tenant's totals of bytes and files (``file_store.hold_file``): past
them, 400 ``file_storage_limit``, as OpenAI answers an organisation over
its storage. A download streams out of the store
the same way, each write waiting while the client's socket is full, so a
file of any size passes through in a bounded window. A transfer that
moves nothing for ``files_idle_timeout_s`` is ended.

These are not model requests: no ``requests`` row, as the admin API's
calls have none; every answer carries its ``x-request-id``, errors in
OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import msgspec

from ingress import file_store
from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import JSON_HEADERS, ClientDisconnected, Receive, Scope, Send, header, send_bytes, send_gateway_error
from ingress.multipart import read_form
from schemas import subjects
from schemas.control import ApiKey
from schemas.errors import GatewayError, InvalidRequest, RequestTooLarge, StageTimeout
from schemas.files import FileDeleted, FileList, FileRecord
from schemas.tasks import BlobRef
from services import files, policy
from services.apis.base import Form

log = logging.getLogger("sluice.ingress.files")

PREFIX = "/v1/files"
# An upload's text fields (purpose, expires_after[...]) together: a few
# short strings; anything near this is not an upload the API defines.
FIELD_BYTES = 16 * 1024
# What a multipart body holds besides the file: boundaries, part headers, fields.
FORM_ROOM = 64 * 1024
# Listing reads the tenant's records from the stream: past this, NATS is in trouble.
LIST_TIMEOUT_S = 10.0
# Each path and the methods it answers.
_ALLOWED = {"": ("GET", "POST"), "id": ("GET", "DELETE"), "content": ("GET",)}

_json = msgspec.json.Encoder()


def matches(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _route(path: str) -> tuple[str, str] | None:
    """("", "") for /v1/files, ("id", id) for /v1/files/{id}, ("content", id)
    for /v1/files/{id}/content; None for any other path under the prefix."""
    parts = path.rstrip("/")[len(PREFIX) :].split("/")
    if parts == [""]:
        return "", ""
    if len(parts) == 2 and parts[1]:
        return "id", parts[1]
    if len(parts) == 3 and parts[1] and parts[2] == "content":
        return "content", parts[1]
    return None


async def serve_files(
    gw: Gateway, scope: Scope, receive: Receive, send: Send, *, busy: GatewayError | None = None
) -> None:
    """Serve one Files API call (the app routes every path under ``PREFIX``
    here); ``busy``: the process holds all it may, the call is refused with it."""
    call = FilesCall(gw, scope, receive, send)
    try:
        if busy is not None:
            raise busy
        await call.serve()
    except ClientDisconnected:  # gone before its answer: nothing to send
        return
    except GatewayError as exc:
        if call.started:
            log.warning("request %s: a file's content was cut after its head: %s", call.id, exc.message)
            return
        await send_gateway_error(send, exc, call.headers)


class FilesCall:
    """One call, from its request line to its answer's last byte."""

    def __init__(self, gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        self.gw = gw
        self.scope, self.receive = scope, receive
        self._send = send
        self.received_ns, self.id = request_of(scope)
        self.headers: list[tuple[bytes, bytes]] = [(b"x-request-id", self.id.encode())]
        # Whether the answer's head went out (an error after it can only cut the body).
        self.started = False

    async def send(self, message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def serve(self) -> None:
        scope = self.scope
        key = policy.authenticate(header(scope, b"authorization"), self.gw.keys.by_hash, self.received_ns // 1_000_000)
        method = scope["method"]
        route = _route(scope["path"])
        if route is None:
            raise InvalidRequest(
                f"Unknown request URL: {method} {scope['path'][:200]}.", status=404, code="unknown_url"
            )
        kind, file_id = route
        if method not in _ALLOWED[kind]:
            raise InvalidRequest(
                f"Method {method} is not allowed on {scope['path'][:200]}.", status=405, code="method_not_allowed"
            )
        if kind == "" and method == "POST":
            return await self._answer((await self.upload(key)).public())
        if kind == "":
            return await self._list(key)
        record = await file_store.open_file(self.gw, key.tenant_id, file_id)
        if kind == "content":
            return await self._content(record)
        if method == "DELETE":
            await file_store.delete_file(self.gw, record)
            return await self._answer(FileDeleted(id=record.id, deleted=True))
        await self._answer(record.public())

    async def _answer(self, obj: object) -> None:
        await send_bytes(self.send, 200, _json.encode(obj), JSON_HEADERS + self.headers)

    async def upload(self, key: ApiKey) -> FileRecord:
        """Keep the uploaded file and make its record. The file is counted
        in its tenant's totals before its body is read, at the most it may
        be (``files.reservation``), and may be no larger than that."""
        gw, settings = self.gw, self.gw.settings
        limits = files.storage_limits(gw.mirrors[subjects.KV_TENANTS].items.get(key.tenant_id), settings)
        cap = limits.max_bytes
        declared = header(self.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap + FORM_ROOM:
            raise RequestTooLarge(f"The file is larger than this tenant's limit of {cap} bytes.", code="file_too_large")
        reserved = files.reservation(limits, declared)
        file_id, name, held = await file_store.hold_file(gw, key.tenant_id, reserved, limits)
        kept: list[BlobRef] = []
        taken = False

        async def store(field: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> BlobRef:
            nonlocal taken
            if field != "file" or taken:
                raise InvalidRequest("An upload has one file, in the field 'file'.", code="invalid_file")
            taken = True
            ref = await gw.blobs.put_stream(
                name,
                held.renewing(chunks),
                content_type=content_type,
                filename=files.safe_filename(filename),
                max_bytes=reserved,
            )
            kept.append(ref)
            return ref

        try:
            form = await read_form(
                self.scope, self.receive, store, max_field_bytes=FIELD_BYTES, timeout_s=settings.files_idle_timeout_s
            )
            record = _record_of(form, key, kept, settings.files_retention_s, file_id)
        except BaseException:
            for ref in kept:
                await file_store.discard_blob(gw, ref.name)
            await held.release()
            raise
        return await file_store.keep_record(gw, record, held)

    async def _list(self, key: ApiKey) -> None:
        pager = files.Pager(
            files.list_query(parse_qs(self.scope.get("query_string", b"").decode("latin-1"))), time.time()
        )
        records = self.gw.files.of_tenant(key.tenant_id)
        try:
            async with asyncio.timeout(LIST_TIMEOUT_S):
                async for record in records:
                    pager.offer(record)
        except TimeoutError:
            raise StageTimeout("Listing the files took too long; retry shortly.") from None
        finally:
            await records.aclose()  # the watch ends now, also when the listing was cut
        chosen, more = pager.result()
        data = [r.public() for r in chosen]
        listed = FileList(
            data=data, has_more=more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
        )
        await self._answer(listed)

    async def _content(self, record: FileRecord) -> None:
        """The bytes as kept, streamed: each read of the store and each
        write to the client bounded by the idle timeout."""
        headers = [
            (b"content-type", files.download_type(record).encode()),
            (b"content-length", str(record.bytes).encode()),
            (b"content-disposition", files.content_disposition(record.filename).encode()),
            (b"x-content-type-options", b"nosniff"),
            *self.headers,
        ]
        idle = self.gw.settings.files_idle_timeout_s
        chunks = file_store.read_file(self.gw, record)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + idle) as stall:
                first = await anext(chunks, b"")  # a store that cannot read fails before the head, as a 5xx
                await self.send({"type": "http.response.start", "status": 200, "headers": headers})
                chunk = first
                while chunk:
                    stall.reschedule(loop.time() + idle)
                    await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
                    stall.reschedule(loop.time() + idle)
                    chunk = await anext(chunks, b"")
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            if not self.started:
                raise StageTimeout("The file's content could not be read in time; retry shortly.") from None
            log.warning("request %s: the client or the store stalled; the file's content was cut", self.id)
        finally:
            await _close(chunks)


async def _close(chunks: AsyncIterator[object]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def _one(form: Form, name: str) -> str | None:
    values = form.fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"'{name}' was given more than once.", code="invalid_request")
    return values[0]


def _record_of(form: Form, key: ApiKey, kept: list[BlobRef], retention_s: float, file_id: str) -> FileRecord:
    """The new file's record from the checked form (its blob is kept)."""
    purpose_text = _one(form, "purpose")
    if purpose_text is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", code="missing_required_parameter")
    purpose = files.upload_purpose(purpose_text)
    if not kept:
        raise InvalidRequest("Missing required parameter: 'file'.", code="missing_required_parameter")
    created_at = int(time.time())
    anchor, seconds = _one(form, "expires_after[anchor]"), _one(form, "expires_after[seconds]")
    blob = kept[0]
    return file_store.record_of(
        tenant_id=key.tenant_id,
        key_id=key.id,
        filename=blob.filename,
        purpose=purpose,
        blob=blob,
        created_at=created_at,
        expires_at=files.expires_at(purpose, created_at, anchor, seconds, retention_s),
        file_id=file_id,
    )
