"""The Batch API's parts in one ingress process: where batches are kept
(``BatchStore``), how a line runs (``BatchLines``, for the job runner) and
how a batch ends (``BatchFinisher``). Made and started by the job runner,
whose rounds take the lines; the HTTP door (``batches_endpoint``) uses it."""

from __future__ import annotations

import time

from ingress import batch_create, file_store
from ingress.batch_finish import BatchFinisher
from ingress.batch_native import NativeBatches
from ingress.batch_runner import BatchLines
from ingress.batch_store import BatchStore, HeldLease
from ingress.gateway import Gateway
from ingress.job_intake import JobIntake
from schemas.batches import BatchError, BatchRecord
from schemas.control import ApiKey
from schemas.errors import GatewayError
from services import batches


class BatchService:
    def __init__(self, gw: Gateway, intake: JobIntake) -> None:
        self.gw = gw
        self.intake = intake
        self.store = BatchStore(gw.nc.jetstream(), gw.nc.max_payload)
        self.natives = NativeBatches(gw, self.store, self._touched, self._requeue)
        self.finisher = BatchFinisher(gw, self.store, self._requeue, self.natives.swept)
        self.lines = BatchLines(gw, self.store, self.finisher.touched)

    async def start(self) -> None:
        await self.store.start()
        self.finisher.start()
        self.natives.start()

    async def stop(self) -> None:
        await self.natives.stop()
        await self.finisher.stop()

    async def create(self, caller: ApiKey, raw: bytes) -> BatchRecord:
        made = await batch_create.create(self.gw, self.store, self.intake, caller, raw)
        if made.native is not None:
            self.natives.watch(made.tenant_id, made.id)
        # Lines that ended while it was being queued found its lease held: look again now.
        self.finisher.touched(made.tenant_id, made.id)
        return made

    def _touched(self, tenant_id: str, batch_id: str) -> None:
        self.finisher.touched(tenant_id, batch_id)

    async def _requeue(self, record: BatchRecord, lease: HeldLease) -> None:
        """Queue a batch whose ingress died (or failed) while queueing it (its input file read again)."""
        try:
            source = await file_store.open_file(self.gw, record.tenant_id, record.input_file_id)
        except GatewayError as exc:  # deleted or expired meanwhile: the batch cannot run
            error = BatchError("input_file_unavailable", exc.message, "input_file_id")
            failed = await self.store.change(
                record.tenant_id, record.id, lambda r: batches.failed(r, [error], int(time.time()))
            )
            if failed is not None:
                await self.store.closed(failed)
            return
        await batch_create.check_and_queue(self.gw, self.store, self.intake, record, source, lease)
