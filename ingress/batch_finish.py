"""Ending a batch: once every line's outcome is kept, one runner (the
holder of the batch's lease, a KV create) writes the output and error
files and sets the batch's end (completed, cancelled or expired).

Who looks, and when: a runner that ended a line of a batch looks at that
batch soon after (``touched``; at most every LOOK_S, however many lines
end); every ingress sweeps the batches not yet ended every SWEEP_S (a
runner may die between a batch's last line and its look); and a read of
the batch (``GET /v1/batches/{id}``) looks too. Looking counts the
outcomes (``BatchStore.counts``): nothing is counted in memory.

The files are written as they are read: each line's outcome is read from
the lines bucket in line order, READ_WINDOW ahead of the one written, and
passed on in pieces of PIECE_BYTES to ``create_file``: an outcome may be as
large as a message (megabytes), so what a finisher holds is a few outcomes
and a piece, whatever the batch's size. The counts the batch ends with are
the lines each file got.

The finisher holds the batch's lease while it writes, renewing it as it
goes (``HeldLease.keep``, looked at every READ_WINDOW lines): a finisher
that stalls past the lease's age loses it to another, notices at its next
renewal, and stops; its file is discarded (``put_stream`` removes what a
failed source kept), and files it made for an end that did not stand are
deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from ingress import file_store
from ingress.batch_store import BatchStore, HeldLease, LeaseLost
from ingress.gateway import Gateway
from schemas.batches import BatchError, BatchRecord, RequestCounts, decode_output
from services import batches
from services.bus import process

log = logging.getLogger("sluice.ingress.batches")
# How often touched batches are looked at, and all open ones swept.
LOOK_S = 0.5
SWEEP_S = 10.0
# A batch whose lines were not all queued this long after it was made lost
# the process that was queueing them: a sweeper queues it again (its lines are queued
# under their own message ids, so none twice).
STALE_VALIDATING_S = 120.0
# Outcomes read ahead while writing a file (each may be megabytes: what a
# finisher holds is about this many), and the size of each piece written.
READ_WINDOW = 8
PIECE_BYTES = 64 * 1024
# A batch whose lines could not be queued by the end of its window fails with this.
NOT_QUEUED = BatchError("batch_not_queued", "The batch's lines could not be queued within its completion window.")

# Queue a batch left validating (``BatchService._requeue``), holding its lease.
Requeue = Callable[[BatchRecord, HeldLease], Awaitable[None]]
# Told of each open batch a sweep read (``NativeBatches.swept``).
Swept = Callable[[BatchRecord], None]


class BatchFinisher:
    def __init__(self, gw: Gateway, store: BatchStore, requeue: Requeue, swept: Swept = lambda record: None) -> None:
        self.gw = gw
        self.store = store
        self._requeue = requeue
        self._swept = swept
        self.holder = process.instance_name("ingress")
        # batch id -> its tenant: batches with a line ended since their last look.
        self._touched: dict[str, str] = {}
        self._looking: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._looks()), asyncio.create_task(self._sweeps())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def touched(self, tenant_id: str, batch_id: str) -> None:
        self._touched[batch_id] = tenant_id

    async def _looks(self) -> None:
        while True:
            await asyncio.sleep(LOOK_S)
            touched, self._touched = self._touched, {}
            for batch_id, tenant_id in touched.items():
                await self._quietly(self.look(tenant_id, batch_id))

    async def _sweeps(self) -> None:
        while True:
            # Replicas spread their sweeps rather than all looking at once.
            await asyncio.sleep(SWEEP_S * random.uniform(0.5, 1.5))
            try:
                open_batches = await self.store.open_batches()
            except Exception:
                log.exception("listing open batches failed")
                continue
            for token, batch_id in open_batches:
                record = await self.store.by_token(token, batch_id)
                if record is None:
                    continue
                self._swept(record)
                if record.in_progress_at is None and record.status not in batches.ENDED:
                    if time.time() - record.created_at > STALE_VALIDATING_S:
                        await self._quietly(self._requeue_stale(record))
                    continue
                await self._quietly(self.look(record.tenant_id, batch_id))

    async def _quietly(self, look: Awaitable[object]) -> None:
        try:
            await look
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("looking at a batch failed; the next look tries again")

    async def look(self, tenant_id: str, batch_id: str) -> RequestCounts | None:
        """The batch's counts now; if every line is accounted, its end
        (here, if this process gets its lease)."""
        record, _ = await self.store.get(tenant_id, batch_id)
        if record is None:
            return None
        if record.status in batches.ENDED:
            await self.store.closed(record)
            return record.request_counts
        if record.in_progress_at is None:  # its lines are still being queued
            return record.request_counts
        if record.native is not None and record.native.phase in ("submit", "running", "collect"):
            return record.request_counts  # as its upstream batch counts them (``ingress.batch_native``)
        counts = await self.store.counts(batch_id, record.request_counts.total)
        if counts.completed + counts.failed >= counts.total and batch_id not in self._looking:
            self._looking.add(batch_id)
            try:
                await self._finish(record, counts)
            finally:
                self._looking.discard(batch_id)
        return counts

    async def _requeue_stale(self, record: BatchRecord) -> None:
        lease = await self.store.take_lease(record, self.holder)
        if lease is None:
            return
        try:
            if record.expires_at is not None and time.time() >= record.expires_at:
                # Tried every sweep since, and never queued: it ends rather than being tried for ever.
                log.warning("batch %s was never queued in its window; it fails", record.id)
                failed = await self.store.change(
                    record.tenant_id,
                    record.id,
                    lambda r: r if r.in_progress_at is not None else batches.failed(r, [NOT_QUEUED], int(time.time())),
                )
                if failed is not None and failed.status in batches.ENDED:
                    await self.store.closed(failed)
                return
            log.warning("batch %s was left validating; queueing it again", record.id)
            await self._requeue(record, lease)
        finally:
            await lease.release()

    async def _finish(self, record: BatchRecord, counted: RequestCounts) -> None:
        lease = await self.store.take_lease(record, self.holder)
        if lease is None:
            return
        try:
            await self._write_end(record, counted, lease)
        except LeaseLost:
            log.warning("batch %s: its lease was taken over as its files were written; it stops", record.id)
        finally:
            await lease.release()

    async def _write_end(self, record: BatchRecord, counted: RequestCounts, lease: HeldLease) -> None:
        """Write the batch's files and end it (``_finish``, holding its lease)."""
        now = int(time.time())
        current = await self.store.change(
            record.tenant_id,
            record.id,
            lambda r: r if r.status in batches.ENDED else batches.finalizing(r, now),
        )
        if current is None or current.status in batches.ENDED:
            return
        total = current.request_counts.total
        began = time.monotonic()
        written = _Written()
        output_id = error_id = None
        try:
            output_id = await self._file(current, total, True, written, lease)
            # No failure counted: no line goes in the error file (a line is counted once its outcome is kept).
            error_id = await self._file(current, total, False, written, lease) if counted.failed else None
            await lease.keep()
        except Exception:
            # Lost the lease (the new holder writes its own), or failed: the next finisher writes them anew.
            await self._discard(record.tenant_id, output_id, error_id)
            raise
        counts = RequestCounts(total=total, completed=written.succeeded, failed=written.failed)
        ended = await self.store.change(
            record.tenant_id,
            record.id,
            # Ended meanwhile by a runner that took over a lease it thought stale: that end stands.
            lambda r: (
                r
                if r.status in batches.ENDED
                else batches.ended(r, counts, written.expired, output_id, error_id, int(time.time()))
            ),
        )
        if ended is None:
            return
        if (ended.output_file_id, ended.error_file_id) != (output_id, error_id):
            # Another end stood: these files name nothing.
            await self._discard(record.tenant_id, output_id, error_id)
            return
        took = time.monotonic() - began
        log.info("batch %s %s: %s (its files written in %.1f s)", ended.id, ended.status, counts, took)
        await self.store.closed(ended)

    async def _discard(self, tenant_id: str, *file_ids: str | None) -> None:
        for file_id in file_ids:
            if file_id is None:
                continue
            try:
                await file_store.delete_file(self.gw, await file_store.open_file(self.gw, tenant_id, file_id))
            except Exception:
                log.exception("could not delete the file %s, made for an end that did not stand", file_id)

    async def _file(
        self, record: BatchRecord, total: int, succeeded: bool, written: _Written, lease: HeldLease
    ) -> str | None:
        """The output (``succeeded``) or error file, if any line goes in it."""
        lines = self._lines(record, total, succeeded, written, lease)
        async with contextlib.aclosing(lines):
            first = await anext(lines, None)
            if first is None:
                return None

            async def pieces() -> AsyncIterator[bytes]:
                yield first
                async for piece in lines:
                    yield piece

            kind = "output" if succeeded else "error"
            made = await file_store.create_file(
                self.gw,
                record.tenant_id,
                record.key_id,
                f"{record.id}_{kind}.jsonl",
                "batch_output",
                pieces(),
                record.output_expires_after_s,
            )
        return made.id

    async def _lines(
        self, record: BatchRecord, total: int, succeeded: bool, written: _Written, lease: HeldLease
    ) -> AsyncIterator[bytes]:
        """The file's lines in input order, in pieces of about PIECE_BYTES,
        read READ_WINDOW outcomes ahead; the lease renewed as it goes."""
        piece = bytearray()
        reads: deque[asyncio.Task[bytes | None]] = deque()
        ahead = iter(range(1, total + 1))
        try:
            for number in range(1, total + 1):
                while len(reads) < READ_WINDOW and (n := next(ahead, None)) is not None:
                    reads.append(asyncio.ensure_future(self.store.outcome(record.id, n)))
                if number % READ_WINDOW == 0:
                    await lease.keep()
                raw = await reads.popleft()
                if raw is None:  # counted, so never: said rather than hidden
                    log.error("batch %s: line %s has no outcome", record.id, number)
                    continue
                output = decode_output(raw)
                if output.succeeded != succeeded:
                    continue
                written.count(output.succeeded, output.error is not None and output.error.code == batches.EXPIRED[0])
                piece += raw
                piece += b"\n"
                if len(piece) >= PIECE_BYTES:
                    yield bytes(piece)
                    piece.clear()
            if piece:
                yield bytes(piece)
        finally:
            for read in reads:
                read.cancel()


class _Written:
    """What the files got: the counts the batch ends with."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.expired = False

    def count(self, succeeded: bool, expired: bool) -> None:
        if succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
        self.expired = self.expired or expired
