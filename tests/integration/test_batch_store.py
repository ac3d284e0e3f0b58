"""Where batches are kept (ingress/batch_store.py) over a real nats-server:
a line's outcome is written once (the first write wins, then marked with
what it is), counts come from the marks, a line has one owner, records
change only at the revision they were read, open batches are listed (and
counted per tenant), and a lease is taken once (a stale one taken over),
renewed by its holder, and released only while it is the holder's."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats
import pytest

from ingress import batch_store
from ingress.batch_store import BatchStore, LeaseLost
from schemas.batches import BatchRecord, RequestCounts
from schemas.errors import RecordConflict
from services import batches
from services.bus import batch_buckets


def record(tenant: str = "acme") -> BatchRecord:
    return BatchRecord(
        id=batches.new_batch_id(),
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        completion_window="24h",
        status="validating",
        created_at=int(time.time()),
        tenant_id=tenant,
        key_id="k",
    )


def with_store(nats_url: str, body: Callable[[BatchStore], Awaitable[None]]) -> None:
    async def go() -> None:
        nc = await nats.connect(nats_url)
        try:
            await batch_buckets.ensure_buckets(nc.jetstream())
            store = BatchStore(nc.jetstream(), nc.max_payload)
            await store.start()
            await body(store)
        finally:
            await nc.close()

    asyncio.run(go())


def test_an_outcome_is_written_once_and_counted(nats_url: str) -> None:
    async def body(store: BatchStore) -> None:
        batch_id = batches.new_batch_id()
        ok = batches.answered("a", "job-1", 200, b'{"ok":true}')
        first = await store.write_outcome(batch_id, 1, ok)
        # A second write of the same line (a run taken over) keeps the first.
        again = await store.write_outcome(batch_id, 1, batches.not_run("a", batches.CANCELLED))
        assert first == ok and again == ok
        await store.write_outcome(batch_id, 2, batches.answered("b", "job-2", 429, b'{"error":{}}'))
        await store.write_outcome(batch_id, 3, batches.not_run("c", batches.CANCELLED))
        await store.write_outcome(batch_id, 3, batches.not_run("c", batches.CANCELLED))
        assert await store.counts(batch_id, 5) == RequestCounts(total=5, completed=1, failed=2)
        stored = await store.outcome(batch_id, 2)
        assert stored is not None and msgspec.json.decode(stored)["response"]["status_code"] == 429
        assert await store.outcome(batch_id, 4) is None
        # Another batch's lines are not counted with these.
        assert await store.counts(batches.new_batch_id(), 5) == RequestCounts(total=5)

    with_store(nats_url, body)


def test_records_change_at_their_revision_and_open_ones_are_listed(nats_url: str) -> None:
    async def body(store: BatchStore) -> None:
        mine, theirs = record("acme"), record("dotted.tenant")
        for r in (mine, theirs):
            await store.create(r)
        assert (await store.get("acme", mine.id))[0] == mine
        assert (await store.get("other", mine.id))[0] is None
        started = await store.change("acme", mine.id, lambda r: batches.started(r, 3, 100))
        assert started is not None and started.status == "in_progress"
        with pytest.raises(RecordConflict):
            await store.change("acme", mine.id, lambda r: batches.cancelling(batches.failed(r, [], 1), 2))
        assert await store.ids_of_tenant("dotted.tenant") == [theirs.id]
        assert await store.open_of_tenant("dotted.tenant") == 1
        opened = await store.open_batches()
        assert {b for _, b in opened} >= {mine.id, theirs.id}
        await store.closed(started)
        assert mine.id not in {b for _, b in await store.open_batches()}

    with_store(nats_url, body)


def test_a_lease_is_held_once_and_a_stale_one_taken_over(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(store: BatchStore) -> None:
        r = record()
        await store.create(r)
        first = await store.take_lease(r, "ingress")
        assert first is not None
        assert await store.take_lease(r, "ingress-1") is None
        await first.release()
        second = await store.take_lease(r, "ingress-1")
        assert second is not None
        monkeypatch.setattr(batch_store, "LEASE_STALE_S", 0.0)  # its holder died
        assert await store.take_lease(r, "ingress") is not None

    with_store(nats_url, body)


def test_a_holder_renews_its_lease_and_one_taken_over_is_lost_not_released(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finisher past LEASE_STALE_S was taken over and both wrote files:
    now the holder renews its lease as it works (none takes a lease renewed
    within the stale age over), and a holder that stalled past it finds at
    its next renewal that it lost it; its release leaves the new holder's."""

    async def body(store: BatchStore) -> None:
        r = record()
        await store.create(r)
        monkeypatch.setattr(batch_store, "LEASE_RENEW_S", 0.0)
        monkeypatch.setattr(batch_store, "LEASE_STALE_S", 0.5)
        holder = await store.take_lease(r, "ingress")
        assert holder is not None
        for _ in range(4):  # working for longer than a lease lasts, renewing as it goes
            await asyncio.sleep(0.2)
            await holder.keep()
            assert await store.take_lease(r, "ingress-1") is None
        await asyncio.sleep(0.6)  # stalled past the stale age: taken over
        taker = await store.take_lease(r, "ingress-1")
        assert taker is not None
        with pytest.raises(LeaseLost):
            await holder.keep()
        await holder.release()
        monkeypatch.setattr(batch_store, "LEASE_STALE_S", 120.0)
        assert await store.take_lease(r, "ingress-2") is None  # still the taker's
        await taker.release()
        assert await store.take_lease(r, "ingress-2") is not None

    with_store(nats_url, body)


def test_a_line_has_one_owner_and_counts_never_move_backwards(nats_url: str) -> None:
    async def body(store: BatchStore) -> None:
        batch_id = batches.new_batch_id()
        assert await store.own_line(batch_id, 1, "7") == "7"
        assert await store.own_line(batch_id, 1, "9") == "7"  # a second copy of the line
        assert await store.own_line(batch_id, 1, "7") == "7"  # the owner, delivered again
        seen = []
        for n in range(1, 7):
            ok = n % 2 == 1
            output = batches.answered(f"c{n}", f"job-{n}", 200 if ok else 500, b"{}")
            await store.write_outcome(batch_id, n, output)
            seen.append(await store.counts(batch_id, 6))
        assert seen[-1] == RequestCounts(total=6, completed=3, failed=3)
        assert all(a.completed <= b.completed and a.failed <= b.failed for a, b in itertools.pairwise(seen))
        # Between a line's outcome kept and its mark, it is not counted yet: counted from the
        # outcomes less the failures marked, a failure marked first showed a completed line
        # too many, then one fewer once its outcome was kept. An outcome kept by a run that
        # died before marking it is marked when the line is delivered again.
        lost = batches.answered("c7", "job-7", 500, b"{}")
        assert store.lines is not None
        await store.lines.create(f"{batch_id}.o.7", msgspec.json.encode(lost))
        assert await store.counts(batch_id, 7) == RequestCounts(total=7, completed=3, failed=3)
        await store.write_outcome(batch_id, 7, lost)
        assert await store.counts(batch_id, 7) == RequestCounts(total=7, completed=3, failed=4)

    with_store(nats_url, body)


def test_an_answer_too_large_for_a_message_is_kept_as_a_failure(nats_url: str) -> None:
    async def body(store: BatchStore) -> None:
        store.max_payload = 6000
        batch_id = batches.new_batch_id()
        big = batches.answered("big", "job-9", 200, b'{"data":"' + b"x" * 5000 + b'"}')
        kept = await store.write_outcome(batch_id, 1, big)
        assert kept.response is None and kept.error is not None and kept.error.code == "response_too_large"
        assert await store.counts(batch_id, 1) == RequestCounts(total=1, completed=0, failed=1)

    with_store(nats_url, body)
