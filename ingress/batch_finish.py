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
the lines bucket in line order, a window at a time, and streamed into
``create_file``, so 10,000 answers are never held at once. The counts the
batch ends with are the lines each file got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from ingress import file_store
from ingress.batch_store import BatchStore
from ingress.gateway import Gateway
from schemas.batches import BatchRecord, RequestCounts, decode_output
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
# Outcomes read at once while writing a file, and the size of each piece written.
READ_WINDOW = 256
PIECE_BYTES = 64 * 1024

Requeue = Callable[[BatchRecord], Awaitable[None]]


class BatchFinisher:
    def __init__(self, gw: Gateway, store: BatchStore, requeue: Requeue) -> None:
        self.gw = gw
        self.store = store
        self._requeue = requeue
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
        counts = await self.store.counts(batch_id, record.request_counts.total)
        if counts.completed + counts.failed >= counts.total and batch_id not in self._looking:
            self._looking.add(batch_id)
            try:
                await self._finish(record, counts)
            finally:
                self._looking.discard(batch_id)
        return counts

    async def _requeue_stale(self, record: BatchRecord) -> None:
        if not await self.store.take_lease(record, self.holder):
            return
        try:
            log.warning("batch %s was left validating; queueing it again", record.id)
            await self._requeue(record)
        finally:
            await self.store.release_lease(record)

    async def _finish(self, record: BatchRecord, counted: RequestCounts) -> None:
        if not await self.store.take_lease(record, self.holder):
            return
        try:
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
            # No failure marked: no line goes in the error file (each is marked before its outcome is kept).
            output_id = await self._file(current, total, True, written)
            error_id = await self._file(current, total, False, written) if counted.failed else None
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
            if ended is not None:
                took = time.monotonic() - began
                log.info("batch %s %s: %s (its files written in %.1f s)", ended.id, ended.status, counts, took)
                await self.store.closed(ended)
        finally:
            await self.store.release_lease(record)

    async def _file(self, record: BatchRecord, total: int, succeeded: bool, written: _Written) -> str | None:
        """The output (``succeeded``) or error file, if any line goes in it."""
        lines = self._lines(record, total, succeeded, written)
        first = await anext(lines, None)
        if first is None:
            return None

        async def pieces() -> AsyncIterator[bytes]:
            yield first
            async for piece in lines:
                yield piece

        kind = "output" if succeeded else "error"
        made = await file_store.create_file(
            self.gw, record.tenant_id, record.key_id, f"{record.id}_{kind}.jsonl", "batch_output", pieces()
        )
        return made.id

    async def _lines(self, record: BatchRecord, total: int, succeeded: bool, written: _Written) -> AsyncIterator[bytes]:
        """The file's lines in input order, in pieces of about PIECE_BYTES."""
        piece = bytearray()
        for start in range(1, total + 1, READ_WINDOW):
            numbers = range(start, min(start + READ_WINDOW, total + 1))
            stored = await asyncio.gather(*(self.store.outcome(record.id, n) for n in numbers))
            for number, raw in zip(numbers, stored, strict=True):
                if raw is None:  # counted, so never: said rather than hidden
                    log.error("batch %s: line %s has no outcome", record.id, number)
                    continue
                output = decode_output(raw)
                if output.succeeded != succeeded:
                    continue
                written.count(output.succeeded, output.error is not None and output.error.code == batches.EXPIRED[0])
                piece += raw + b"\n"
            if len(piece) >= PIECE_BYTES:
                yield bytes(piece)
                piece.clear()
        if piece:
            yield bytes(piece)


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
