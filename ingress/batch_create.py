"""Making a batch: its input file checked line by line (streamed, never
held whole), then each line queued as a durable job of the tenant's batch
queue (``JobIntake.queue_lines``), carrying the batch id and its line
number. A bad line fails the batch before any line is queued, so before
any upstream call.

The file is read twice: once to check every line (a failed batch queues
nothing), once to queue them. Each line is queued with a Nats-Msg-Id of
its own ("<batch id>.<line>"), so queueing again (a sweeper finishing a
batch whose ingress died mid-way) adds no line twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import msgspec

from ingress import file_store
from ingress.batch_store import BatchStore
from ingress.gateway import Gateway
from ingress.job_intake import JobIntake
from schemas.batches import BatchRecord, encode_line
from schemas.control import ApiKey
from schemas.errors import InvalidRequest, PermissionDenied
from schemas.files import FileRecord
from services import batches
from services.apis.table import BY_PATH
from services.bus import process

log = logging.getLogger("sluice.ingress.batches")


async def create(gw: Gateway, store: BatchStore, intake: JobIntake, caller: ApiKey, raw: bytes) -> BatchRecord:
    """``POST /v1/batches``: the batch as it stands once its lines are
    queued ("in_progress"), or failed with the errors of its lines."""
    if not caller.tenant_id:
        raise PermissionDenied("A batch runs under a tenant: use one of its keys.", code="tenant_required")
    req = batches.create_request(raw)
    source = await file_store.open_file(gw, caller.tenant_id, req.input_file_id)
    if source.purpose != "batch":
        raise InvalidRequest(
            f"The input file must have purpose 'batch', not '{source.purpose}'.",
            code="invalid_file_purpose",
        )
    now_ns = time.time_ns()
    record = BatchRecord(
        id=batches.new_batch_id(now_ns),
        endpoint=req.endpoint,
        input_file_id=req.input_file_id,
        completion_window=req.completion_window,
        status="validating",
        created_at=now_ns // 1_000_000_000,
        expires_at=now_ns // 1_000_000_000 + batches.WINDOW_S,
        metadata=req.metadata,
        tenant_id=caller.tenant_id,
        key_id=caller.id,
    )
    await store.create(record)
    # Held while its lines are queued: a sweeper queues them again only if this process died doing it.
    await store.take_lease(record, process.instance_name("ingress"))
    try:
        return await check_and_queue(gw, store, intake, record, source)
    finally:
        await store.release_lease(record)


async def check_and_queue(
    gw: Gateway, store: BatchStore, intake: JobIntake, record: BatchRecord, source: FileRecord
) -> BatchRecord:
    """Check every line, then queue them all; the record as it then stands."""
    api = BY_PATH[record.endpoint]
    checker = batches.LineChecker(record.endpoint, api.parse, gw.settings.max_body_bytes)
    async for number, raw in _lines(gw, source):
        checker.check(number, raw)
    errors = checker.finish()
    if errors:
        failed = await store.change(record.tenant_id, record.id, lambda r: batches.failed(r, errors, int(time.time())))
        assert failed is not None
        await store.closed(failed)
        return failed
    total = await intake.queue_lines(record.tenant_id, record.key_id, api.name, _queued(gw, record, source))
    started = await store.change(record.tenant_id, record.id, lambda r: batches.started(r, total, int(time.time())))
    assert started is not None
    return started


async def _lines(gw: Gateway, source: FileRecord) -> AsyncIterator[tuple[int, bytes | None]]:
    splitter = batches.LineSplitter(batches.line_bytes(gw.settings.max_body_bytes))
    async for chunk in file_store.read_file(gw, source):
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.finish():
        yield line


async def _queued(gw: Gateway, record: BatchRecord, source: FileRecord) -> AsyncIterator[tuple[str, bytes]]:
    """Each line as its job: (its Nats-Msg-Id, the job's payload)."""
    decode = msgspec.json.Decoder(batches.InputLine).decode
    async for number, raw in _lines(gw, source):
        assert raw is not None  # every line was checked
        line = decode(raw)
        yield f"{record.id}.{number}", encode_line(batches.queued_line(record.id, number, line))
