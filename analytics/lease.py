"""One writer among the sink's replicas: a lease in a NATS KV bucket.

The sink looks up a batch's request ids and then inserts the ones not
stored (``analytics.conflicts``): two sinks doing that at once could both
insert one request's row, and the rollups would count it twice. ClickHouse's
insert deduplication does not help: it matches whole blocks (one token per
insert), and an event redelivered comes back in a pull composed
differently; a token per row would take an insert per row, measured on chdb
at 23-36 ms a row against 0.02 ms in an insert of 1,000. So one replica
writes at a time, and the others stand by (they still answer named queries).

What the lease cannot fence: a writer paused for longer than half the lease
between its check and its insert (the check runs under the store's lock,
just before the look-up and insert, a few milliseconds).

The lease is the key ``writer`` of the bucket ``sluice_sink_lease``: taken
with ``create`` (or an update at the revision seen), renewed every
``renew_s`` by an update at its own last revision, so a renewal fails as soon
as anyone else has taken it. A standby takes it over when it has seen the
same revision for ``lease_s`` on its own clock: no clocks are compared
across machines. The writer writes only while its last renewal (counted from
when it was sent) is younger than half the lease, so a writer that was
paused, or cut off from NATS, stops before a standby can have taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from services.bus.kv import ensure_kv

log = logging.getLogger("sluice.sink")
BUCKET = subjects.KV_SINK_LEASE
KEY = "writer"
LEASE_S = 10.0
RENEW_S = 2.0
# A lease operation that takes longer than this has failed: the next round tries again.
OP_TIMEOUT_S = 2.0
# What the sink's NATS user must be allowed to publish for the lease, as
# nats-py 2.16 sends it: the bucket's info, a key's read (direct, or through
# the stream's leader) and the key's writes. Answers come to its own inbox.
PUBLISH = (
    f"$JS.API.STREAM.INFO.KV_{BUCKET}",
    f"$JS.API.DIRECT.GET.KV_{BUCKET}",
    f"$JS.API.DIRECT.GET.KV_{BUCKET}.>",
    f"$JS.API.STREAM.MSG.GET.KV_{BUCKET}",
    f"$KV.{BUCKET}.>",
)


async def ensure_bucket(nc: Client, replicas: int = 1) -> None:
    """Made at start-up (``services.cli.bootstrap``): the sink may read
    and write its key, not make buckets."""
    js = nc.jetstream()
    # One revision is enough: only the latest holder matters.
    await ensure_kv(js, KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE, replicas=replicas))


def holder_name(process_name: str) -> str:
    """Who holds it, for people reading the bucket; unique per process, so a
    holder recognises its own entry (compose's replicas share one name)."""
    return f"{process_name}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    def __init__(
        self,
        nc: Client,
        holder: str,
        *,
        lease_s: float = LEASE_S,
        renew_s: float = RENEW_S,
        take_over_at_once: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``take_over_at_once``: for a writer that knows no other can write
        (the embedded ClickHouse locks its data to one process), so it need
        not wait out the lease a dead predecessor left."""
        self.nc, self.holder, self.lease_s, self.renew_s = nc, holder.encode(), lease_s, renew_s
        # Opened in the first round that can: until then the lease is not ours.
        self.kv: KeyValue | None = None
        self.take_over_at_once, self.clock = take_over_at_once, clock
        # Our entry's revision while we hold the lease (0: we do not).
        self.revision = 0
        # When our last successful write of the entry was sent.
        self.renewed_at: float | None = None
        # Another holder's entry as first seen: (revision, when).
        self.seen: tuple[int, float] | None = None
        # Whether the last round failed for want of NATS (not for losing a race).
        self.failing = False

    def may_write(self) -> bool:
        return self.renewed_at is not None and self.clock() - self.renewed_at < self.lease_s / 2

    @property
    def held(self) -> bool:
        return self.revision != 0

    async def step(self) -> None:
        """One round: renew the lease if ours, else take it if free or left to go stale."""
        try:
            if self.kv is None:
                self.kv = await self.nc.jetstream(timeout=OP_TIMEOUT_S).key_value(BUCKET)
            if self.held:
                await self._write(self.kv, self.revision)
            else:
                await self._try_to_take(self.kv)
            if self.failing:
                log.info("sink lease: NATS answers again")
            self.failing = False
        except KeyWrongLastSequenceError:
            self._lose("another replica took it")
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            # Our renewal may have landed with its answer lost: the next round
            # finds our own entry and adopts it.
            if not self.failing:
                log.warning("sink lease: %s (%r); trying every %.0f s", BUCKET, exc, self.renew_s)
            self.failing = True

    async def _try_to_take(self, kv: KeyValue) -> None:
        try:
            entry = await kv.get(KEY)
        except KeyNotFoundError:
            sent = self.clock()
            self._hold(await kv.create(KEY, self.holder), sent)
            return
        now = self.clock()
        if entry.value == self.holder:  # ours, from a renewal whose answer we never got
            await self._write(kv, entry.revision)
            return
        if self.seen is None or self.seen[0] != entry.revision:
            self.seen = (entry.revision or 0, now)
        if self.take_over_at_once or now - self.seen[1] >= self.lease_s:
            await self._write(kv, entry.revision or 0)

    async def _write(self, kv: KeyValue, last: int) -> None:
        sent = self.clock()
        revision = await kv.update(KEY, self.holder, last=last)
        self._hold(revision, sent)

    def _hold(self, revision: int, sent: float) -> None:
        if not self.held:
            log.info("sink lease: this replica writes now (%s)", self.holder.decode())
        self.revision, self.renewed_at, self.seen = revision, sent, None

    def _lose(self, why: str) -> None:
        if self.held:
            log.warning("sink lease lost: %s; standing by", why)
        self.revision, self.renewed_at = 0, None

    async def run(self, stop: asyncio.Event) -> None:
        """Hold or wait for the lease until ``stop``; then give it up, so a
        standby takes over at once rather than after the lease runs out."""
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.renew_s)
        await self.release()

    async def release(self) -> None:
        if not self.held or self.kv is None:
            return
        revision, self.revision, self.renewed_at = self.revision, 0, None
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
            await self.kv.delete(KEY, last=revision)
