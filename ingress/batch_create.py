"""Making a batch: its input file checked line by line (streamed, never
held whole), then each line queued as a durable job of the tenant's batch
queue (``JobIntake.queue_lines``), carrying the batch id and its line
number. A bad line fails the batch before any line is queued, so before
any upstream call.

The file is read twice: once to check every line (a failed batch queues
nothing), once to queue them. Each line is queued with a Nats-Msg-Id of
its own ("<batch id>.<line>"), so queueing again (a sweeper finishing a
batch whose ingress died mid-way) adds no line twice.

What a create may cost is bounded before anything is read: a tenant has
at most ``max_open_batches`` batches not ended, an input file is at most
MAX_INPUT_BYTES (OpenAI's limit), and checking stops at the first MAX_LINES
+ 1 lines (blank ones too) or MAX_ERRORS errors.

Once the batch's record exists, the create answers with it, whatever
fails after (queueing, reading its file): the record as it then stands,
"validating" if its lines were not all queued, which the sweeper then
finishes (``BatchFinisher``). An error answered after the record was made
would tell the caller nothing of a batch whose queued lines run anyway,
and a client retrying it would run them twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator

import msgspec

from ingress import file_store
from ingress.batch_store import BatchStore, HeldLease
from ingress.gateway import Gateway
from ingress.job_intake import JobIntake
from schemas.batches import BatchRecord, encode_line
from schemas.control import ApiKey
from schemas.errors import InvalidRequest, PermissionDenied, RateLimitExceeded
from schemas.files import FileRecord
from schemas.native_batch import NativeRun
from services import batches, native_batch
from services.apis.table import BY_PATH
from services.bus import process

log = logging.getLogger("sluice.ingress.batches")
# The lease is looked at (renewed if due) every this many lines checked or queued.
KEEP_EVERY_LINES = 1024


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
    if source.bytes > batches.MAX_INPUT_BYTES:
        raise InvalidRequest(
            f"A batch's input file is at most {batches.MAX_INPUT_BYTES} bytes; this one is {source.bytes}.",
            code="input_file_too_large",
        )
    most = gw.settings.max_open_batches
    if await store.open_of_tenant(caller.tenant_id) >= most:
        raise RateLimitExceeded(
            f"The tenant has {most} batches not yet ended, as many as it may; create this one once one has ended.",
            code="too_many_open_batches",
            retry_after_s=60,
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
        output_expires_after_s=req.output_expires_after.seconds if req.output_expires_after is not None else 0,
        tenant_id=caller.tenant_id,
        key_id=caller.id,
    )
    await store.create(record)
    lease: HeldLease | None = None
    try:
        # Held while its lines are queued: a sweeper queues them again only if this process died doing it.
        lease = await store.take_lease(record, process.instance_name("ingress"))
        if lease is None:  # a new batch's lease is free: only a store that failed says otherwise
            return await _as_it_stands(store, record)
        return await check_and_queue(gw, store, intake, record, source, lease)
    except Exception:
        log.exception("batch %s was made but not queued; the sweeper queues it", record.id)
        return await _as_it_stands(store, record)
    finally:
        if lease is not None:
            with contextlib.suppress(Exception):
                await lease.release()


async def _as_it_stands(store: BatchStore, record: BatchRecord) -> BatchRecord:
    """The batch's record as stored now (as it was made, if even that cannot be read)."""
    try:
        stored, _ = await store.get(record.tenant_id, record.id)
    except Exception:
        log.exception("batch %s could not be read back", record.id)
        return record
    return stored if stored is not None else record


async def check_and_queue(
    gw: Gateway, store: BatchStore, intake: JobIntake, record: BatchRecord, source: FileRecord, lease: HeldLease
) -> BatchRecord:
    """Check every line, then queue them all; the record as it then stands."""
    api = BY_PATH[record.endpoint]
    checker = batches.LineChecker(record.endpoint, api.parse, gw.settings.max_body_bytes)
    splitter = _splitter(gw)
    async with contextlib.aclosing(lines_of(gw, source, splitter)) as lines:
        async for number, raw in lines:
            checker.check(number, raw)
            if checker.full:  # a failed batch lists no more errors than these
                break
            if number % KEEP_EVERY_LINES == 0:
                await lease.keep()
    if splitter.too_many:
        checker.too_many(splitter.read)
    errors = checker.finish()
    if errors:
        failed = await store.change(record.tenant_id, record.id, lambda r: batches.failed(r, errors, int(time.time())))
        assert failed is not None
        await store.closed(failed)
        return failed
    native = _native(gw, record, checker)
    if native is not None:
        # One batch of the provider's own: the native driver (``ingress.batch_native``) runs it.
        ran = await store.change(
            record.tenant_id, record.id, lambda r: batches.started_native(r, checker.lines, int(time.time()), native)
        )
        assert ran is not None
        return ran
    total = await intake.queue_lines(record.tenant_id, record.key_id, api.name, _queued(gw, record, source, lease))
    await lease.keep()
    started = await store.change(record.tenant_id, record.id, lambda r: batches.started(r, total, int(time.time())))
    assert started is not None
    return started


def _native(gw: Gateway, record: BatchRecord, checker: batches.LineChecker) -> NativeRun | None:
    """How the batch runs natively, if every line names one model with a
    ``native_batch`` deployment for its endpoint (and it was not sent back
    to run as jobs)."""
    if record.native is not None or len(checker.models) != 1:
        return None
    (model,) = checker.models
    if native_batch.native_deployment(gw.table.find(model), record.endpoint) is None:
        return None
    return NativeRun(model=model)


def _splitter(gw: Gateway) -> batches.LineSplitter:
    return batches.LineSplitter(batches.line_bytes(gw.settings.max_body_bytes))


async def lines_of(
    gw: Gateway, source: FileRecord, splitter: batches.LineSplitter
) -> AsyncIterator[tuple[int, bytes | None]]:
    """The file's lines, read no further than the splitter's cap of lines."""
    async with contextlib.aclosing(file_store.read_file(gw, source)) as chunks:
        async for chunk in chunks:
            for line in splitter.feed(chunk):
                yield line
            if splitter.too_many:
                return
    for line in splitter.finish():
        yield line


async def _queued(
    gw: Gateway, record: BatchRecord, source: FileRecord, lease: HeldLease
) -> AsyncIterator[tuple[str, bytes]]:
    """Each line as its job: (its Nats-Msg-Id, the job's payload). Stops
    (``LeaseLost``) if a sweeper took the batch over meanwhile."""
    decode = msgspec.json.Decoder(batches.InputLine).decode
    async with contextlib.aclosing(lines_of(gw, source, _splitter(gw))) as lines:
        async for number, raw in lines:
            assert raw is not None  # every line was checked
            if number % KEEP_EVERY_LINES == 0:
                await lease.keep()
            line = decode(raw)
            yield f"{record.id}.{number}", encode_line(batches.queued_line(record.id, number, line))
