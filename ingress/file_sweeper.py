"""The Files API's retention: files past their ``expires_at`` deleted,
bytes and record (``file_store.delete_file``).

Every ingress process sweeps, each at its own moment in the interval (a
random offset): deletes are idempotent, so two replicas that happen to
sweep at once only repeat each other's work, and no lease is needed for
the rare overlap. An expired file not swept yet is already a 404 for its
owner (``file_store.open_file`` and listing check the time themselves):
the sweep frees storage, it does not decide what callers see.

It also settles the holds of writes whose process died before it settled
them (``FileUsage.settle_abandoned``), so a tenant's totals do not keep a
dead upload counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from ingress import file_store
from services import files

if TYPE_CHECKING:
    from ingress.gateway import Gateway

log = logging.getLogger("sluice.files")

INTERVAL_S = 300.0


async def sweep(gw: Gateway, now_s: float | None = None) -> int:
    """Delete every expired file once, and settle the writes left by a
    dead process; how many files were deleted."""
    now = time.time() if now_s is None else now_s
    settled = await file_store.usage_of(gw).settle_abandoned(gw.blobs, now)
    if settled:
        log.info("settled %d writes of files left by a process that died", settled)
    deleted = 0
    records = gw.files.every()
    try:
        async for record in records:
            if not files.is_expired(record, now):
                continue
            try:
                await file_store.delete_file(gw, record)
            except Exception:  # the next sweep tries again
                log.exception("could not delete the expired file %s of tenant %r", record.id, record.tenant_id)
                continue
            deleted += 1
    finally:
        await records.aclose()
    return deleted


class FileSweeper:
    """Sweeps every ``interval_s``, from a random point in the first one."""

    def __init__(self, gw: Gateway, interval_s: float = INTERVAL_S) -> None:
        self.gw = gw
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="file-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        await asyncio.sleep(random.uniform(0, self.interval_s))
        while True:
            try:
                deleted = await sweep(self.gw)
                if deleted:
                    log.info("deleted %d expired files", deleted)
            except Exception:  # NATS away for a while: the next round tries again
                log.exception("the sweep of expired files failed")
            await asyncio.sleep(self.interval_s)
