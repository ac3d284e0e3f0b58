"""OpenAI's Batch API over HTTP: ``POST /v1/batches``, ``GET
/v1/batches``, ``GET /v1/batches/{id}`` and ``POST
/v1/batches/{id}/cancel``, in OpenAI's shapes. A key sees its own
tenant's batches only: any other id is 404, as one that never existed.

These calls are not model requests: they get no ``requests`` row (the
lines' requests do, each with the batch's id). ``GET /v1/batches/{id}`` of
a batch not yet ended shows its ``request_counts`` as counted from its
lines' outcomes, at most COUNTS_FRESH_S ago (counting asks the server for
two consumers: a client polling in a loop must not make two a poll). A
list shows each batch's counts as stored (the total until it ends), and
reads only the records of the page it shows (``BatchStore.ids_of_tenant``).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

import msgspec

from ingress.batch_service import BatchService
from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import JSON_HEADERS, Receive, Scope, Send, header, read_body, send_bytes, send_gateway_error
from schemas.batches import Batch, BatchList, BatchRecord, RequestCounts
from schemas.control import ApiKey
from schemas.errors import GatewayError, InvalidRequest
from services import batches, policy

PATH = "/v1/batches"
# A create's body: a file id, an endpoint and at most 16 metadata pairs.
MAX_CREATE_BYTES = 64 * 1024
# How long a batch's counts are shown as counted, and how many batches' are kept.
COUNTS_FRESH_S = 1.0
COUNTS_KEPT = 4096
_encode = msgspec.json.Encoder().encode


def matches(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


class BatchesEndpoint:
    def __init__(self, gw: Gateway, service: BatchService) -> None:
        self.gw = gw
        self.service = service
        # batch id -> (when counted, its counts)
        self._counts: dict[str, tuple[float, RequestCounts]] = {}

    async def serve(self, scope: Scope, receive: Receive, send: Send, *, busy: GatewayError | None = None) -> None:
        """One call; ``busy``: the process holds all it may, the call is refused with it."""
        received_ns, request_id = request_of(scope)
        id_header = [(b"x-request-id", request_id.encode())]
        method = scope["method"]
        batch_id, _, action = scope["path"].rstrip("/")[len(PATH) + 1 :].partition("/")
        try:
            if busy is not None:
                raise busy
            key = policy.authenticate(header(scope, b"authorization"), self.gw.keys.by_hash, received_ns // 1_000_000)
            if (method, batch_id, action) == ("POST", "", ""):
                raw = await read_body(scope, receive, MAX_CREATE_BYTES, self.gw.settings.body_timeout_s)
                answer: object = (await self.service.create(key, raw)).public()
            elif (method, batch_id, action) == ("GET", "", ""):
                answer = await self._list(key, parse_qs(scope.get("query_string", b"").decode("latin-1")))
            elif batch_id and (method, action) == ("GET", ""):
                answer = await self._shown(await self._find(key, batch_id))
            elif batch_id and (method, action) == ("POST", "cancel"):
                answer = await self._cancel(key, batch_id)
            elif action in ("", "cancel"):
                raise InvalidRequest(f"Method {method} is not allowed on {scope['path']}.", status=405)
            else:
                raise InvalidRequest(f"Unknown request URL: {method} {scope['path']}.", status=404, code="unknown_url")
        except GatewayError as exc:
            return await send_gateway_error(send, exc, id_header)
        await send_bytes(send, 200, _encode(answer), [*JSON_HEADERS, *id_header])

    async def _find(self, key: ApiKey, batch_id: str) -> BatchRecord:
        record = None
        if batches.is_batch_id(batch_id):
            record, _ = await self.service.store.get(key.tenant_id, batch_id)
        if record is None or record.tenant_id != key.tenant_id:
            raise batches.not_found(batch_id)
        return record

    async def _shown(self, record: BatchRecord) -> Batch:
        """The batch as its owner sees it, its counts as they were at most COUNTS_FRESH_S ago."""
        if record.status in batches.ENDED or record.in_progress_at is None:
            return record.public()
        counts = await self._counted(record)
        if counts.completed + counts.failed >= counts.total:
            self.service.finisher.touched(record.tenant_id, record.id)
        return msgspec.structs.replace(record.public(), request_counts=counts)

    async def _counted(self, record: BatchRecord) -> RequestCounts:
        now = time.monotonic()
        kept = self._counts.get(record.id)
        if kept is not None and now - kept[0] < COUNTS_FRESH_S:
            return kept[1]
        counts = await self.service.store.counts(record.id, record.request_counts.total)
        if len(self._counts) >= COUNTS_KEPT:
            self._counts = {k: v for k, v in self._counts.items() if now - v[0] < COUNTS_FRESH_S}
        self._counts[record.id] = (now, counts)
        return counts

    async def _list(self, key: ApiKey, query: dict[str, list[str]]) -> BatchList:
        limit = batches.list_limit((query.get("limit") or [None])[0])
        after = (query.get("after") or [""])[0]
        if after and not batches.is_batch_id(after):
            raise InvalidRequest("'after' must be a batch id.", code="invalid_after")
        store = self.service.store
        chosen, more = batches.page(await store.ids_of_tenant(key.tenant_id), after, limit)
        records = await asyncio.gather(*(store.get(key.tenant_id, batch_id) for batch_id in chosen))
        # Counts as stored: a page of 100 batches in progress must not count 100 batches' lines.
        data = [r.public() for r, _ in records if r is not None and r.tenant_id == key.tenant_id]
        return BatchList(
            data=data, has_more=more, first_id=data[0].id if data else None, last_id=data[-1].id if data else None
        )

    async def _cancel(self, key: ApiKey, batch_id: str) -> Batch:
        await self._find(key, batch_id)
        record = await self.service.store.change(
            key.tenant_id, batch_id, lambda r: batches.cancelling(r, int(time.time()))
        )
        if record is None:
            raise batches.not_found(batch_id)
        # Lines not started end without a request; the batch ends once the running ones have.
        self.service.finisher.touched(record.tenant_id, record.id)
        return await self._shown(record)
