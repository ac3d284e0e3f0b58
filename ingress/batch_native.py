"""Running a batch as one batch of its provider's own batch API (its
model's deployment is marked ``native_batch``; ``services.native_batch``
says which batches may): submit it, poll it, and write each line's outcome,
row and cost when it ended, at the provider's batch price.

Each step is a request through the pipeline (``schemas.tasks.
NativeBatchRequest``), so the key's policy, routing and the provider's
keys stay where they are for every request:

* **submit** runs as a durable job (``JobRun.run_task``): policy reserves
  the lines' worst case at batch price from the key's and tenant's budgets
  (and counts one request); the provider uploads the lines and creates the
  upstream batch. A driver taking over from one that died finds the submit's
  answer kept on its reply subject, so the upstream gets one batch.
* **poll** (every ``native_batch_poll_s``) until the upstream says it
  ended, sending a **cancel** first if the caller cancelled; its counts are
  the batch's ``request_counts`` meanwhile.
* **results**: each line's answer, rendered as ``POST <endpoint>`` would
  have answered it, is written to the lines bucket (the first write wins),
  with a row per line (request id ``<batch id>-<line>``: a driver that
  writes them again writes the same rows); the reservation is then settled
  with what the lines cost, once (the record's ``reservation`` is cleared
  by compare-and-set first). The finisher (``BatchFinisher``) then writes
  the output and error files as for any batch.

Which ingress drives a batch: whichever takes its lease for one step; every
ingress looks at the native batches it knows each TICK_S, and learns of the
others' from the finisher's sweep of open batches (one that died leaves its
batches to the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from ingress import batch_create, file_store
from ingress.batch_runner import line_answer
from ingress.batch_store import BatchStore, HeldLease
from ingress.gateway import Gateway
from ingress.job_run import JobRun
from ingress.session import BusSession
from schemas.batches import BatchError, BatchRecord, RequestCounts
from schemas.errors import GatewayError, RateLimitExceeded
from schemas.ids import new_id
from schemas.native_batch import NativeLine, NativeLineEnds, NativeRun
from schemas.replies import Failure, Final
from schemas.reservation import Reservation
from schemas.tasks import BlobRef, NativeBatchRequest, NativeBatchResult
from services import batches, native_batch, quota
from services.apis.base import ClientApi
from services.apis.table import BY_PATH
from services.bus import process, quota_ledger
from services.bus.blobs import new_name

log = logging.getLogger("sluice.ingress.batches")
TICK_S = 0.2
MIN_STEP_STALE_S = 20.0
# A batch still not ended this long past its completion window (its upstream
# unreachable, its key or model gone) ends: its lines expired, unbilled.
EXPIRED_GRACE_S = 3600.0
# A submit that failed for a reason that may pass (the upstream busy, the
# provider process gone) is tried as a new job this many times, this far apart.
MAX_SUBMIT_JOBS = 3
SUBMIT_RETRY_S = 5.0
# Failures after which an upstream batch may exist though no answer said so.
MAYBE_MADE = frozenset({"worker_died", "upstream_timeout", "gateway_timeout", "internal_error"})
# A line the upstream said the batch completed without.
NOT_ANSWERED = ("batch_line_missing", "The provider's batch ended without an answer for this request.")
_decode_body = msgspec.json.Decoder(dict[str, Any]).decode
_decode_input = msgspec.json.Decoder(batches.InputLine).decode
_decode_ends = msgspec.msgpack.Decoder(NativeLineEnds).decode
_encode = msgspec.msgpack.Encoder()

# Run a batch's lines as jobs after all, holding its lease (``BatchService``).
AsJobs = Callable[[BatchRecord, HeldLease], Awaitable[None]]


class NativeBatches:
    def __init__(self, gw: Gateway, store: BatchStore, ended: Callable[[str, str], None], as_jobs: AsJobs) -> None:
        self.gw = gw
        self.store = store
        self._ended = ended
        self._as_jobs = as_jobs
        self.holder = process.instance_name("ingress")
        # batch id -> its tenant: the native batches this process looks at.
        self._known: dict[str, str] = {}
        # batch id -> not looked at again before (unix s): a step that failed,
        # or a cancel the upstream refused, waits a poll interval.
        self._not_before: dict[str, float] = {}
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._ticks())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    def watch(self, tenant_id: str, batch_id: str) -> None:
        self._known[batch_id] = tenant_id

    def swept(self, record: BatchRecord) -> None:
        """An open batch the finisher's sweep read: driven from here too if
        it is a native one (the ingress that drove it may have died)."""
        if _driven(record):
            self._known.setdefault(record.id, record.tenant_id)

    def _later(self, batch_id: str) -> None:
        self._not_before[batch_id] = time.time() + max(1.0, self.gw.settings.native_batch_poll_s)

    def _forget(self, batch_id: str) -> None:
        self._known.pop(batch_id, None)
        self._not_before.pop(batch_id, None)

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for batch_id, tenant_id in list(self._known.items()):
                if time.time() < self._not_before.get(batch_id, 0.0):
                    continue
                try:
                    await self.step(tenant_id, batch_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("native batch %s: a step failed; it is tried again", batch_id)
                    self._later(batch_id)

    async def step(self, tenant_id: str, batch_id: str) -> None:
        """One step of the batch, if one is due and this process gets its lease."""
        record, _ = await self.store.get(tenant_id, batch_id)
        if record is None or not _driven(record):
            self._forget(batch_id)
            return
        if not _due(record, time.time()):
            return
        # A step lasts one request at most (a submit's, up to its deadline),
        # so a lease left by a driver that died is taken over sooner than a finisher's.
        stale_s = max(MIN_STEP_STALE_S, 2 * self.gw.settings.request_timeout_s)
        lease = await self.store.take_lease(record, self.holder, stale_s)
        if lease is None:
            return
        try:
            record, _ = await self.store.get(tenant_id, batch_id)  # as it stands under the lease
            if record is None or not _driven(record):
                return
            native = record.native
            assert native is not None
            if record.expires_at is not None and time.time() > record.expires_at + EXPIRED_GRACE_S:
                await self._abandon(record, lease)
            elif native.phase == "submit":
                await self._submit(record, native, lease)
            elif native.phase == "running":
                await self._poll(record, native, lease)
            else:
                await self._collect(record, native, lease)
        finally:
            await lease.release()

    async def _change(self, record: BatchRecord, how: Callable[[NativeRun], NativeRun]) -> BatchRecord:
        def changed(r: BatchRecord) -> BatchRecord:
            assert r.native is not None
            return msgspec.structs.replace(r, native=how(r.native))

        stored = await self.store.change(record.tenant_id, record.id, changed)
        assert stored is not None
        return stored

    async def _submit(self, record: BatchRecord, native: NativeRun, lease: HeldLease) -> None:
        dep = native_batch.native_deployment(self.gw.table.find(native.model), record.endpoint)
        if dep is None:  # no longer configured so: its lines run as jobs
            await self._run_as_jobs(record, lease)
            return
        if record.status == "cancelling" and native.submit_job == 0 and native.submit_tries == 0:
            # Cancelled before anything was sent: every line ends unrun, nothing is charged.
            await self._write_outcomes(record, {}, batches.CANCELLED, lease)
            return
        tries = native.submit_tries + 1
        record = await self._change(record, lambda n: msgspec.structs.replace(n, submit_tries=tries))
        job = JobRun(
            self.gw, f"{record.id}-submit{native.submit_job}", "native_batch", "", record.key_id, record.tenant_id
        )
        # Taken over: a submit that ended needs no lines read again (its input file may be gone).
        done = await job.ended_before() if tries > 1 else None
        if done is None:
            try:
                lines, cost = await self._lines(record, dep.catalog_model, lease)
            except GatewayError as exc:
                if exc.status != 404:
                    raise
                # Its input file deleted or expired meanwhile.
                await self._fail(record, BatchError("input_file_unavailable", exc.message, "input_file_id"))
                return
            task = NativeBatchRequest(
                model=native.model,
                op="submit",
                batch_id=record.id,
                endpoint=record.endpoint,
                lines=lines,
                line_count=record.request_counts.total,
                cost_pico_usd=cost,
            )
            done = await job.run_task(task, tries)
        reply = done.result
        if isinstance(reply, Final) and isinstance(reply.task_result, NativeBatchResult):
            result = reply.task_result
            log.info("batch %s submitted as %s at %s", record.id, result.upstream_id, result.deployment)
            await self._change(
                record,
                lambda n: msgspec.structs.replace(
                    n,
                    phase="running",
                    upstream_id=result.upstream_id,
                    deployment=result.deployment,
                    reservation=result.reservation,
                    next_poll_at=time.time() + self.gw.settings.native_batch_poll_s,
                ),
            )
            return
        assert isinstance(reply, Failure)
        refused_here = reply.code == RateLimitExceeded.code  # the key's own limits: nothing went upstream
        if reply.code in native_batch.RUN_AS_JOBS:
            log.info("batch %s: %s; its lines run as jobs", record.id, reply.message)
            await self._run_as_jobs(record, lease)
        elif refused_here or (_may_pass(reply, dep.provider) and native.submit_failures + 1 < MAX_SUBMIT_JOBS):
            log.warning("batch %s: its submit failed (%s); trying again", record.id, reply.message)
            await self._change(
                record,
                lambda n: msgspec.structs.replace(
                    n,
                    submit_job=n.submit_job + 1,
                    submit_tries=0,
                    submit_failures=n.submit_failures + (0 if refused_here else 1),
                    next_poll_at=time.time() + SUBMIT_RETRY_S,
                ),
            )
        else:
            await self._fail(record, BatchError(reply.code or reply.type, reply.message))

    async def _lines(self, record: BatchRecord, catalog_model: str | None, lease: HeldLease) -> tuple[BlobRef, int]:
        """The lines as the provider stage reads them (``NativeLines``, in the
        blob store, written as they are read: a msgpack map of one array), and
        the most they may cost at the batch price."""
        api = BY_PATH[record.endpoint]
        total = record.request_counts.total
        most = 0
        default_output = self.gw.settings.default_max_output_tokens

        async def pieces() -> AsyncIterator[bytes]:
            nonlocal most
            yield b"\x81\xa5lines\xdd" + total.to_bytes(4, "big")
            async for number, line in _input_lines(self.gw, record, lease):
                parsed = api.parse(bytes(line.body))
                native = NativeLine(custom_id=line.custom_id, chat=parsed.body, embeddings=parsed.embeddings)
                prompt, output = quota.estimate(parsed.body, parsed.embeddings, catalog_model, default_output)
                most += quota.estimate_cost(prompt, output, catalog_model)
                yield _encode.encode(native)
                if number == total:
                    return

        ref = await self.gw.blobs.put_stream(
            new_name(record.tenant_id, "upload"), pieces(), content_type="application/x-msgpack"
        )
        return ref, most * native_batch.BATCH_PRICE_PERCENT // 100

    async def _poll(self, record: BatchRecord, native: NativeRun, lease: HeldLease) -> None:
        cancel = record.status == "cancelling" and not native.cancel_sent
        reply = await self._ask(record, native, "cancel" if cancel else "poll")
        next_at = time.time() + self.gw.settings.native_batch_poll_s
        if not isinstance(reply, Final) or not isinstance(reply.task_result, NativeBatchResult):
            log.warning("batch %s: asking its upstream batch failed: %s", record.id, _said(reply))
            await self._change(record, lambda n: msgspec.structs.replace(n, next_poll_at=next_at))
            if cancel:
                self._later(record.id)  # a cancel refused or lost: asked again a poll interval on
            return
        result = reply.task_result
        ended = result.state == "ended"
        counts = RequestCounts(total=record.request_counts.total, completed=result.completed, failed=result.failed)

        def progressed(r: BatchRecord) -> BatchRecord:
            assert r.native is not None
            n = msgspec.structs.replace(
                r.native,
                phase="collect" if ended else "running",
                next_poll_at=next_at,
                cancel_sent=r.native.cancel_sent or cancel,
            )
            return msgspec.structs.replace(r, native=n, request_counts=counts)

        record = await self.store.change(record.tenant_id, record.id, progressed)  # type: ignore[assignment]
        if ended and record is not None and record.native is not None:
            await self._collect(record, record.native, lease)

    async def _collect(self, record: BatchRecord, native: NativeRun, lease: HeldLease) -> None:
        reply = await self._ask(record, native, "results")
        result = reply.task_result if isinstance(reply, Final) else None
        if not isinstance(result, NativeBatchResult) or result.results is None:
            log.warning("batch %s: fetching its results failed: %s", record.id, _said(reply))
            next_at = time.time() + self.gw.settings.native_batch_poll_s
            await self._change(record, lambda n: msgspec.structs.replace(n, next_poll_at=next_at))
            return
        data = bytearray()
        async for piece in self.gw.blobs.read(result.results):
            data += piece
        ends = {end.custom_id: end.reply for end in _decode_ends(data).ends}
        del data
        try:
            await self.gw.blobs.delete(result.results.name)  # read: a driver after this one fetches its own
        except GatewayError:
            log.warning("batch %s: its results blob could not be removed; it ages out", record.id)
        why_not = batches.CANCELLED if record.status == "cancelling" else NOT_ANSWERED
        if result.upstream_status == "expired":
            why_not = batches.EXPIRED
        elif result.error:  # the upstream failed the whole batch
            why_not = ("batch_failed_upstream", f"The provider failed the batch: {result.error[:1000]}")
        await self._write_outcomes(record, ends, why_not, lease)

    async def _abandon(self, record: BatchRecord, lease: HeldLease) -> None:
        """Past its window and the grace after it, and not ended (its upstream
        unreachable, its key or deployment gone): every line not answered
        ends as expired, and what was reserved is given back."""
        log.error("batch %s: its upstream batch did not end within its window; its lines end expired", record.id)
        await self._write_outcomes(record, {}, batches.EXPIRED, lease)

    async def _write_outcomes(
        self, record: BatchRecord, ends: dict[str, Final | Failure], why_not: tuple[str, str], lease: HeldLease
    ) -> None:
        """Each line's outcome (and row) from its end upstream, or not run
        for ``why_not``; then the settlement, and the finisher's turn."""
        api = BY_PATH[record.endpoint]
        received_ns = (record.in_progress_at or record.created_at) * 1_000_000_000
        # What the upstream billed, a failure's too (an answer too large to keep).
        billed = sum(end.cost.total for end in ends.values())
        total = record.request_counts.total
        try:
            async for number, line in _input_lines(self.gw, record, lease):
                end = ends.pop(line.custom_id, None)
                request_id = native_batch.line_request_id(record.id, number)
                if end is None:
                    output = batches.not_run(line.custom_id, why_not)
                else:
                    end.id, end.key_id, end.tenant_id = request_id, record.key_id, record.tenant_id
                    output = line_answer(api, request_id, line.custom_id, _decode_body(bytes(line.body)), end)
                    self._record_line(record, api, request_id, received_ns, end)
                await self.store.write_outcome(record.id, number, output)
                if number == total:
                    break
        except GatewayError as exc:
            if exc.status != 404:
                raise
            # The input file deleted meanwhile: its lines can no longer be numbered.
            for custom_id, end in ends.items():  # billed upstream all the same: each its row
                request_id = native_batch.orphan_request_id(record.id, custom_id)
                end.id, end.key_id, end.tenant_id = request_id, record.key_id, record.tenant_id
                self._record_line(record, api, request_id, received_ns, end)
            await self._settle(record, billed)
            await self._fail(record, BatchError("input_file_unavailable", exc.message, "input_file_id"))
            return
        await self._settle(record, billed)
        await self._change(record, lambda n: msgspec.structs.replace(n, phase="written"))
        self._forget(record.id)
        self._ended(record.tenant_id, record.id)

    def _record_line(
        self, record: BatchRecord, api: ClientApi, request_id: str, received_ns: int, reply: Final | Failure
    ) -> None:
        # The model the line asked for, as on every row (the upstream's own is its deployment's).
        model = record.native.model if record.native is not None else ""
        self.gw.record(request_id, received_ns, api.name, model, False, reply, [], origin="job", batch_id=record.id)

    async def _settle(self, record: BatchRecord, cost: int) -> None:
        """The submit's reservation, replaced by what the lines cost: once, by
        the driver whose compare-and-set took it off the record (one that dies
        between the two leaves the worst case charged, never less than was spent)."""
        taken: list[Reservation | None] = [None]

        def take(n: NativeRun) -> NativeRun:
            taken[0] = n.reservation  # as stored at this write (a write that lost its race runs again)
            return msgspec.structs.replace(n, reservation=None)

        await self._change(record, take)
        if taken[0] is not None:
            quota_ledger.settle(self.gw.counters, taken[0], 0, cost)

    async def _ask(self, record: BatchRecord, native: NativeRun, op: str) -> Final | Failure | None:
        """One poll, results or cancel step: a plain request (each is safe to send again)."""
        task = NativeBatchRequest(
            model=native.model,
            op=op,  # type: ignore[arg-type]
            batch_id=record.id,
            upstream_id=native.upstream_id,
            deployment=native.deployment,
            line_count=record.request_counts.total,
        )
        session = BusSession(self.gw, "native_batch", native.model, False, time.time_ns(), new_id(), origin="job")
        try:
            await session.publish(None, task=task, key_id=record.key_id)
            return await session.collect()
        finally:
            session.close()

    async def _run_as_jobs(self, record: BatchRecord, lease: HeldLease) -> None:
        def as_jobs(r: BatchRecord) -> BatchRecord:
            assert r.native is not None
            return msgspec.structs.replace(
                r, native=msgspec.structs.replace(r.native, phase="jobs"), status="validating", in_progress_at=None
            )

        stored = await self.store.change(record.tenant_id, record.id, as_jobs)
        self._forget(record.id)
        if stored is not None:
            await self._as_jobs(stored, lease)

    async def _fail(self, record: BatchRecord, error: BatchError) -> None:
        log.warning("batch %s failed: %s", record.id, error.message)
        failed = await self.store.change(
            record.tenant_id, record.id, lambda r: batches.failed(r, [error], int(time.time()))
        )
        self._forget(record.id)
        if failed is not None:
            await self.store.closed(failed)


def _driven(record: BatchRecord) -> bool:
    """A native batch whose lines have not all been written yet."""
    native = record.native
    return native is not None and native.phase not in ("written", "jobs") and record.status not in batches.ENDED


def _due(record: BatchRecord, now_s: float) -> bool:
    native = record.native
    assert native is not None
    if native.phase == "running" and record.status == "cancelling" and not native.cancel_sent:
        return True
    return now_s >= native.next_poll_at


def _may_pass(failure: Failure, family: str) -> bool:
    """A failure another submit may not meet: the upstream busy or down, the
    provider process gone, the gateway's own deadline. Not at Anthropic once
    the create may have reached it (the provider gone, a timeout): its
    batches carry no mark of ours, so a second submit would be a second batch."""
    if family == "anthropic" and failure.code in MAYBE_MADE:
        return False
    return failure.status in (408, 429, 500, 502, 503, 504) and failure.type != "insufficient_quota"


def _said(reply: Final | Failure | None) -> str:
    return reply.message if isinstance(reply, Failure) else "no answer"


async def _input_lines(
    gw: Gateway, record: BatchRecord, lease: HeldLease
) -> AsyncIterator[tuple[int, batches.InputLine]]:
    """The batch's input lines, numbered as when it was checked; the lease kept as it goes."""
    source = await file_store.open_file(gw, record.tenant_id, record.input_file_id)
    splitter = batches.LineSplitter(batches.line_bytes(gw.settings.max_body_bytes))
    async with contextlib.aclosing(batch_create.lines_of(gw, source, splitter)) as lines:
        async for number, raw in lines:
            assert raw is not None  # every line was checked when the batch was made
            if number % batch_create.KEEP_EVERY_LINES == 0:
                await lease.keep()
            yield number, _decode_input(raw)
