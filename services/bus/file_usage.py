"""A tenant's files in all, bytes and number, held to its totals
(``services.files.StorageLimits``) across every ingress replica.

Two counters per tenant, in the spend stream beside the budgets' (a stream
whose counters never age out): "sluice.v1.quota.spend.files.<tenant>.bytes"
and "...count". An add answers the counter's new total, exactly, whichever
process sent it (``quota_ledger.Counters.add``), so a file is admitted by
adding first and looking after: of two uploads that together pass the
total, the add that passes it sees so and takes its share back. An upload
is counted at what it may become (``services.files.reservation``) before
its first byte, then settled to its size once its record is made, or
given back if it is not; a delete gives back what the file counted.

Between the first add and the settling, a hold in ``KV_FILES``
(``schemas.files.FileHold``) says what was counted for the file. Its
writer renews it while the bytes move; a process that dies mid-write
leaves it to run out, and the sweep (``settle_abandoned``) settles it as
its writer would have: to the record's size if the record was made, else
to nothing, the bytes deleted. Whoever removes a hold (at the revision it
read) is the one that settles it, so each file is settled once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import msgspec
import nats.errors
from nats.js.errors import APIError, NotFoundError

from schemas import subjects
from schemas.errors import InternalError, QuotaUnavailable
from schemas.files import FileHold
from services import files
from services.bus.blobs import BlobStore
from services.bus.file_records import FileRecords, tenant_token
from services.bus.quota_ledger import Counters

log = logging.getLogger("sluice.files")

# A hold not renewed for this long was left by a process that died.
HOLD_S = 600.0
# How often a write renews its hold while its bytes move.
RENEW_S = 60.0
# Tries of one add, under one message id (a retried add counts once).
ADD_TRIES = 3
_NATS_TROUBLE = (TimeoutError, nats.errors.Error, APIError)


def counter_subjects(tenant_id: str) -> tuple[str, str]:
    """The tenant's bytes counter and its files counter."""
    base = f"{subjects.QUOTA}.spend.files.{tenant_token(tenant_id)}"
    return f"{base}.bytes", f"{base}.count"


class FileUsage:
    """The tenant totals' counters and the holds of files being written."""

    def __init__(self, counters: Counters, records: FileRecords) -> None:
        self.counters = counters
        self.records = records

    async def hold(
        self,
        tenant_id: str,
        file_id: str,
        blob_name: str,
        reserved: int,
        limits: files.StorageLimits | None,
    ) -> Held:
        """Count a file about to be written as one file of ``reserved``
        bytes. Past ``limits``' totals nothing stays counted and
        ``files.storage_full`` is raised; without ``limits`` (a file the
        gateway makes) it is counted whatever the totals say."""
        hold = FileHold(
            tenant_id=tenant_id, file_id=file_id, blob_name=blob_name, reserved=reserved, until=time.time() + HOLD_S
        )
        # The hold first: a process that dies after it and before the adds
        # leaves a tenant counted short by one write, never long for ever.
        revision = await self.records.create_hold(hold)
        bytes_subject, count_subject = counter_subjects(tenant_id)
        added: list[tuple[str, int]] = []
        try:
            total_count = await self._add(count_subject, 1, f"{file_id}.take")
            added.append((count_subject, 1))
            total_bytes = await self._add(bytes_subject, reserved, f"{file_id}.take") if reserved else 0
            added.append((bytes_subject, reserved))
        except BaseException:
            await self._undo(added, hold, revision)
            raise
        if limits is not None and files.over_total(limits, total_bytes, total_count):
            await self._undo(added, hold, revision)
            raise files.storage_full(limits)
        return Held(self, hold, revision)

    async def _undo(self, added: list[tuple[str, int]], hold: FileHold, revision: int) -> None:
        for subject, delta in added:
            await self._adjust(subject, -delta, f"{hold.file_id}.undo")
        try:
            await self.records.drop_hold(hold, revision)
        except Exception:  # it runs out; the sweep finds no record and gives back what it says
            log.exception("could not remove the hold of %s; the sweep settles it", hold.file_id)

    async def adjust(self, tenant_id: str, bytes_delta: int, count_delta: int, msg_id: str) -> None:
        """Change the tenant's totals (a settling, a give-back), without
        raising: trouble leaves the change to the counters' background retries."""
        bytes_subject, count_subject = counter_subjects(tenant_id)
        for subject, delta in ((bytes_subject, bytes_delta), (count_subject, count_delta)):
            if delta:
                await self._adjust(subject, delta, msg_id)

    async def _adjust(self, subject: str, delta: int, msg_id: str) -> None:
        try:
            await self._add(subject, delta, msg_id)
        except QuotaUnavailable:
            log.warning("counter %s %+d: sent in the background", subject, delta)
            self.counters.add_later(subject, delta)

    async def _add(self, subject: str, delta: int, msg_id: str) -> int:
        """The counter's total after adding. Tried again under the same
        message id, so an add whose answer was lost counts once (its
        retry is answered as a duplicate: the total is read then)."""
        for attempt in range(1, ADD_TRIES + 1):
            try:
                total = await self.counters.add(subject, delta, f"{subject}.{msg_id}")
                return total if total is not None else await self.total(subject)
            except _NATS_TROUBLE as exc:
                log.warning("counter %s %+d: try %d failed: %r", subject, delta, attempt, exc)
                await asyncio.sleep(0.05 * attempt)
        raise QuotaUnavailable("The gateway cannot count this tenant's files right now; try again.")

    async def total(self, subject: str) -> int:
        """A counter's value (0 before its first add)."""
        try:
            msg = await self.counters.js.get_last_msg(subjects.SPEND_STREAM, subject, direct=True)
        except NotFoundError:
            return 0
        return int(msgspec.json.decode(msg.data)["val"])

    async def used(self, tenant_id: str) -> tuple[int, int]:
        """The tenant's bytes and files counted now (files being written at what they hold)."""
        bytes_subject, count_subject = counter_subjects(tenant_id)
        return await self.total(bytes_subject), await self.total(count_subject)

    async def settle_abandoned(self, blobs: BlobStore, now_s: float | None = None) -> int:
        """Settle each hold that ran out (its writer died): to its record's
        size if the record was made, else to nothing, its bytes deleted.
        How many were settled."""
        now = time.time() if now_s is None else now_s
        settled = 0
        async with aclosing(self.records.holds()) as holds:
            async for hold, revision in holds:
                if hold.until > now:
                    continue
                record = await self.records.get(hold.tenant_id, hold.file_id)
                if not await self.records.drop_hold(hold, revision):
                    continue  # renewed meanwhile, or settled by another sweep
                if record is not None:
                    await self.adjust(hold.tenant_id, record.bytes - hold.reserved, 0, f"{hold.file_id}.settle")
                else:
                    await self.adjust(hold.tenant_id, -hold.reserved, -1, f"{hold.file_id}.release")
                    await blobs.delete(hold.blob_name)
                settled += 1
        return settled


class Held:
    """One file's hold, from before its first byte until it is settled."""

    def __init__(self, usage: FileUsage, hold: FileHold, revision: int) -> None:
        self.usage = usage
        self.hold = hold
        self.revision = revision
        self._renewed = time.monotonic()
        # Set once settled or given back (by this writer or, after it ran out, a sweep).
        self._done = False

    async def renewing(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``chunks``, the hold renewed every ``RENEW_S`` while they come."""
        async for piece in chunks:
            if time.monotonic() - self._renewed >= RENEW_S:
                await self.renew()
            yield piece

    async def renew(self) -> None:
        """Push the hold's end away; ``InternalError`` if it ran out and a
        sweep settled it (the write must not go on: its bytes are deleted)."""
        hold = msgspec.structs.replace(self.hold, until=time.time() + HOLD_S)
        revision = await self.usage.records.renew_hold(hold, self.revision)
        if revision is None:
            self._done = True
            raise InternalError("The file's write ran out of time and was given up; upload it again.", status=503)
        self.hold, self.revision, self._renewed = hold, revision, time.monotonic()

    async def settle(self, size: int) -> None:
        """The file's record is made, of ``size`` bytes: counted at that."""
        if self._done:
            return
        self._done = True
        try:
            dropped = await self.usage.records.drop_hold(self.hold, self.revision)
        except Exception:  # it runs out; the sweep finds the record and settles it
            log.exception("could not remove the hold of %s; the sweep settles it", self.hold.file_id)
            return
        if dropped:
            await self.usage.adjust(self.hold.tenant_id, size - self.hold.reserved, 0, f"{self.hold.file_id}.settle")
        else:
            log.error("the hold of %s was settled by a sweep while its record was made", self.hold.file_id)

    async def release(self) -> None:
        """The file was not kept: what it counted is given back."""
        if self._done:
            return
        self._done = True
        try:
            dropped = await self.usage.records.drop_hold(self.hold, self.revision)
        except Exception:
            log.exception("could not remove the hold of %s; the sweep gives it back", self.hold.file_id)
            return
        if dropped:
            await self.usage.adjust(self.hold.tenant_id, -self.hold.reserved, -1, f"{self.hold.file_id}.release")
