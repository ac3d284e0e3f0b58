"""Where batches are kept (ingress/batch_store.py) over a real nats-server:
a line's outcome is written once (the first write wins, a failure marked),
counts come from the stored keys, records change only at the revision
they were read, open batches are listed, and a lease is taken once (a
stale one taken over)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats
import pytest

from ingress import batch_store
from ingress.batch_store import BatchStore
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
        assert [r.id for r in await store.of_tenant("dotted.tenant")] == [theirs.id]
        opened = await store.open_batches()
        assert {b for _, b in opened} >= {mine.id, theirs.id}
        await store.closed(started)
        assert mine.id not in {b for _, b in await store.open_batches()}

    with_store(nats_url, body)


def test_a_lease_is_held_once_and_a_stale_one_taken_over(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def body(store: BatchStore) -> None:
        r = record()
        await store.create(r)
        assert await store.take_lease(r, "ingress")
        assert not await store.take_lease(r, "ingress-1")
        await store.release_lease(r)
        assert await store.take_lease(r, "ingress-1")
        monkeypatch.setattr(batch_store, "LEASE_STALE_S", 0.0)  # its holder died
        assert await store.take_lease(r, "ingress")

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
