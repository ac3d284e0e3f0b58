"""Where batches are kept, in two KV buckets.

``sluice_batches``: each batch's record, "<tenant>.<batch id>"; beside it,
while it has not ended, "<tenant>.<batch id>.open" (what the sweeper looks
for) and, while one runner writes its files, "<tenant>.<batch id>.lease".
Records change only with the revision they were read at, so a cancel and
the end of a batch never overwrite each other.

``sluice_batch_lines``: each line's outcome, "<batch id>.o.<line>", written
with a KV create: the first write wins, so a line that runs again after a
crash (or a second runner that finds it ended) never writes a second one.
Once it is kept, the line is marked with what the kept one is:
"<batch id>.s.<line>" (succeeded) or "<batch id>.f.<line>" (failed).
``request_counts`` are counted from the marks (an ephemeral consumer's
pending count), not kept in memory, so they are exact across restarts and
never move backwards (a mark is never taken back, and names the outcome
kept); a line counted has its outcome kept. Beside them, "<batch id>.r.<line>"
names the one job that runs the line (``own_line``), should it be queued twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.batches import (
    BatchError,
    BatchOutput,
    BatchRecord,
    RequestCounts,
    decode_output,
    decode_record,
    encode_output,
    encode_record,
)
from schemas.errors import InternalError
from services.bus.kv import kv_key

log = logging.getLogger("sluice.ingress.batches")

# An outcome is kept in one message: this much of the server's largest is left for its headers.
PAYLOAD_HEADROOM = 4096
TOO_LARGE = BatchError("response_too_large", "The answer to this request was too large to keep in the output file.")
# A lease whose holder wrote nothing for this long is taken over (its holder
# died); a holder renews its lease this often while it works (``HeldLease.keep``).
LEASE_STALE_S = 120.0
LEASE_RENEW_S = 10.0
# JetStream's "wrong last sequence": a write at a revision that is no longer the key's.
_WRONG_LAST = (10071, 10164)
# Times a record changed meanwhile is read again before giving up.
CHANGE_TRIES = 20


def _token(tenant_id: str) -> str:
    # One KV token whatever the tenant's name holds (a dot would add one).
    return kv_key(tenant_id).replace(".", "=2E") or "-"


def record_key(tenant_id: str, batch_id: str) -> str:
    return f"{_token(tenant_id)}.{batch_id}"


class Lease(msgspec.Struct):
    holder: str
    at_ns: int


class LeaseLost(Exception):
    """Another runner took the batch's lease over (this one was thought
    dead): this one stops, and leaves the batch to it."""


class HeldLease:
    """A batch's lease as its holder has it: the revision it last wrote, so
    it renews and releases the lease only while it is still its own."""

    def __init__(self, kv: KeyValue, key: str, holder: str, revision: int) -> None:
        self._kv = kv
        self.key = key
        self.holder = holder
        self.revision = revision
        self._renewed = time.monotonic()

    async def keep(self) -> None:
        """Renew the lease if LEASE_RENEW_S went by since it was written;
        ``LeaseLost`` if another holder has it now."""
        if not self.revision:
            raise LeaseLost(self.key)
        if time.monotonic() - self._renewed < LEASE_RENEW_S:
            return
        lease = msgspec.msgpack.encode(Lease(self.holder, time.time_ns()))
        try:
            self.revision = await self._kv.update(self.key, lease, last=self.revision)
        except KeyWrongLastSequenceError as exc:
            self.revision = 0
            raise LeaseLost(self.key) from exc
        self._renewed = time.monotonic()

    async def release(self) -> None:
        """Give the lease up, if it is still this holder's (one taken over is the new holder's)."""
        revision, self.revision = self.revision, 0
        if not revision:
            return
        try:
            await self._kv.delete(self.key, last=revision)
        except APIError as exc:
            if exc.err_code not in _WRONG_LAST:
                raise


class BatchStore:
    def __init__(self, js: JetStreamContext, max_payload: int) -> None:
        self.js = js
        self.max_payload = max_payload
        self.records: KeyValue | None = None
        self.lines: KeyValue | None = None

    async def start(self) -> None:
        self.records = await self.js.key_value(subjects.KV_BATCHES)
        self.lines = await self.js.key_value(subjects.KV_BATCH_LINES)

    # -- records ---------------------------------------------------------------

    async def create(self, record: BatchRecord) -> None:
        """A new batch, marked open first: a sweeper finds it even if this
        process dies before it is queued."""
        assert self.records is not None
        key = record_key(record.tenant_id, record.id)
        await self.records.put(f"{key}.open", b"1")
        await self.records.create(key, encode_record(record))

    async def get(self, tenant_id: str, batch_id: str) -> tuple[BatchRecord | None, int]:
        assert self.records is not None
        try:
            entry = await self.records.get(record_key(tenant_id, batch_id))
        except NotFoundError:
            return None, 0
        if not entry.value:
            return None, 0
        return decode_record(entry.value), entry.revision or 0

    async def change(
        self, tenant_id: str, batch_id: str, how: Callable[[BatchRecord], BatchRecord]
    ) -> BatchRecord | None:
        """The record as ``how`` makes it from the one stored, written with
        the revision it was read at (read again if it changed meanwhile);
        None if there is no such batch. ``how`` may raise to refuse."""
        assert self.records is not None
        for _ in range(CHANGE_TRIES):
            record, revision = await self.get(tenant_id, batch_id)
            if record is None:
                return None
            changed = how(record)
            if changed == record:
                return record
            try:
                await self.records.update(record_key(tenant_id, batch_id), encode_record(changed), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return changed
        raise InternalError("The batch kept changing; try again.", status=503)

    async def ids_of_tenant(self, tenant_id: str) -> list[str]:
        """The ids of the tenant's batches (the keys of its records, without
        their values: a page of them is then read by id)."""
        token = _token(tenant_id)
        return [key[len(token) + 1 :] for key, _ in await self._entries(f"{token}.*", meta_only=True)]

    async def open_of_tenant(self, tenant_id: str) -> int:
        """How many of the tenant's batches have not ended."""
        return len(await self._entries(f"{_token(tenant_id)}.*.open", meta_only=True))

    async def open_batches(self) -> list[tuple[str, str]]:
        """(tenant key token, batch id) of every batch not ended."""
        out = []
        for key, _ in await self._entries("*.*.open", meta_only=True):
            token, batch_id, _ = key.split(".")
            out.append((token, batch_id))
        return out

    async def by_token(self, token: str, batch_id: str) -> BatchRecord | None:
        assert self.records is not None
        try:
            entry = await self.records.get(f"{token}.{batch_id}")
        except NotFoundError:
            return None
        return decode_record(entry.value) if entry.value else None

    async def closed(self, record: BatchRecord) -> None:
        """The batch ended: no sweeper looks at it again."""
        assert self.records is not None
        key = record_key(record.tenant_id, record.id)
        for name in (f"{key}.open", f"{key}.lease"):
            with contextlib.suppress(NotFoundError):
                await self.records.delete(name)

    async def take_lease(self, record: BatchRecord, holder: str, stale_s: float | None = None) -> HeldLease | None:
        """The batch's lease, if this holder may queue its lines or write its
        files (a KV create); a lease older than ``stale_s`` (LEASE_STALE_S) is taken over."""
        assert self.records is not None
        key = f"{record_key(record.tenant_id, record.id)}.lease"
        lease = msgspec.msgpack.encode(Lease(holder, time.time_ns()))
        try:
            return HeldLease(self.records, key, holder, await self.records.create(key, lease))
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.records.get(key)
        except NotFoundError:
            return None  # released meanwhile: the next look takes it
        held = msgspec.msgpack.decode(entry.value or b"", type=Lease) if entry.value else None
        stale_s = LEASE_STALE_S if stale_s is None else stale_s
        if held is not None and time.time_ns() - held.at_ns < stale_s * 1e9:
            return None
        try:
            return HeldLease(self.records, key, holder, await self.records.update(key, lease, last=entry.revision))
        except KeyWrongLastSequenceError:
            return None

    async def _entries(self, pattern: str, meta_only: bool = False) -> list[tuple[str, bytes]]:
        assert self.records is not None
        watcher = await self.records.watch(pattern, ignore_deletes=True, meta_only=meta_only)
        out = []
        try:
            async for entry in watcher:
                if entry is None:
                    break
                out.append((entry.key, entry.value or b""))
        finally:
            await watcher.stop()
        return out

    # -- lines -----------------------------------------------------------------

    async def outcome(self, batch_id: str, line: int) -> bytes | None:
        """A line's outcome as stored (JSON, one output line), or None."""
        assert self.lines is not None
        try:
            entry = await self.lines.get(f"{batch_id}.o.{line}")
        except NotFoundError:
            return None
        return entry.value or None

    async def own_line(self, batch_id: str, line: int, job_id: str) -> str:
        """The job that runs the line: ``job_id``, or the job that claimed it
        first (a KV create), if the line was queued twice."""
        assert self.lines is not None
        key = f"{batch_id}.r.{line}"
        try:
            await self.lines.create(key, job_id.encode())
            return job_id
        except KeyWrongLastSequenceError:
            entry = await self.lines.get(key)
        return (entry.value or b"").decode()

    async def write_outcome(self, batch_id: str, line: int, output: BatchOutput) -> BatchOutput:
        """The line's outcome: ``output``, or the one written first; then
        the line is marked with what the kept one is (again, if a run died
        between the two), which is when it is counted."""
        assert self.lines is not None
        payload = encode_output(output)
        if len(payload) > self.max_payload - PAYLOAD_HEADROOM:
            # Larger than a message may be: the line ran, its answer cannot be kept.
            output = msgspec.structs.replace(output, response=None, error=TOO_LARGE)
            payload = encode_output(output)
        kept = output
        try:
            await self.lines.create(f"{batch_id}.o.{line}", payload)
        except KeyWrongLastSequenceError:
            stored = await self.outcome(batch_id, line)
            if stored is None:  # deleted since (its batch long gone): the line is delivered again
                raise InternalError(f"The outcome of line {line} of batch {batch_id} went missing.") from None
            kept = decode_output(stored)
            if kept.succeeded != output.succeeded:  # two runs at once ended unalike: never, a line runs once
                log.error("batch %s line %s: ended unalike twice; the first end is kept", batch_id, line)
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.lines.create(f"{batch_id}.{'s' if kept.succeeded else 'f'}.{line}", b"1")
        return kept

    async def counts(self, batch_id: str, total: int) -> RequestCounts:
        """How many of the batch's lines ended (their outcome kept and
        marked), and how many of those failed."""
        completed = await self._count(f"{batch_id}.s.>")
        failed = await self._count(f"{batch_id}.f.>")
        return RequestCounts(total=total, completed=completed, failed=failed)

    async def _count(self, keys: str) -> int:
        # A consumer's pending count is the server counting the keys for us;
        # the consumer is never read, and the server drops it soon after.
        config = ConsumerConfig(
            filter_subject=f"$KV.{subjects.KV_BATCH_LINES}.{keys}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=2.0,
            mem_storage=True,
            headers_only=True,
        )
        info = await self.js.add_consumer(f"KV_{subjects.KV_BATCH_LINES}", config)
        return info.num_pending or 0
