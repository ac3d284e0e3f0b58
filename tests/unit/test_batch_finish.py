"""Ending a batch (ingress/batch_finish.py) over an in-memory store: the
files are written holding a few outcomes at a time however large each is
(measured by what is allocated, not by time), the lease is renewed as
they are written, and a finisher whose lease was taken over stops and
leaves the batch to the new holder; files made for an end that did not
stand are deleted."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import msgspec
import pytest

from ingress import batch_finish, file_store
from ingress.batch_finish import BatchFinisher
from ingress.batch_store import LeaseLost
from schemas.batches import BatchRecord, RequestCounts, encode_output
from services import batches

OUTCOME_BYTES = 512 * 1024


def record(total: int) -> BatchRecord:
    return BatchRecord(
        id=batches.new_batch_id(),
        endpoint="/v1/chat/completions",
        input_file_id="file-in",
        completion_window="24h",
        status="in_progress",
        created_at=1000,
        in_progress_at=1001,
        expires_at=1000 + batches.WINDOW_S,
        request_counts=RequestCounts(total=total),
        tenant_id="t",
        key_id="k",
    )


class FakeLease:
    def __init__(self, lost_after: int | None = None) -> None:
        self.kept = 0
        self.lost_after = lost_after
        self.released = False

    async def keep(self) -> None:
        if self.lost_after is not None and self.kept >= self.lost_after:
            raise LeaseLost("taken over")
        self.kept += 1

    async def release(self) -> None:
        self.released = True


class FakeStore:
    """Outcomes of OUTCOME_BYTES each, a fresh copy per read (as a KV get gives)."""

    def __init__(self, batch: BatchRecord, lease: FakeLease) -> None:
        self.records = {batch.id: batch}
        self.lease = lease
        self._outcome = encode_output(batches.answered("c", "job-1", 200, b'"' + b"x" * OUTCOME_BYTES + b'"'))
        self.reads = 0
        self.ended_by_another: BatchRecord | None = None

    async def outcome(self, batch_id: str, line: int) -> bytes:
        self.reads += 1
        await asyncio.sleep(0)
        return memoryview(self._outcome).tobytes()

    async def take_lease(self, record: BatchRecord, holder: str) -> FakeLease:
        return self.lease

    async def change(
        self, tenant_id: str, batch_id: str, how: Callable[[BatchRecord], BatchRecord]
    ) -> BatchRecord | None:
        current = self.records[batch_id]
        if self.ended_by_another is not None and current.status == "finalizing":
            current = self.ended_by_another  # another finisher ended it meanwhile
        self.records[batch_id] = how(current)
        return self.records[batch_id]

    async def closed(self, record: BatchRecord) -> None:
        pass


class Files:
    """``file_store`` as the finisher uses it: pieces taken and dropped as they come."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[str] = []
        self.deleted: list[str] = []
        self.largest_piece = 0
        monkeypatch.setattr(file_store, "create_file", self.create_file)
        monkeypatch.setattr(file_store, "open_file", self.open_file)
        monkeypatch.setattr(file_store, "delete_file", self.delete_file)

    async def create_file(
        self,
        gw: object,
        tenant_id: str,
        key_id: str,
        name: str,
        purpose: str,
        chunks: AsyncIterator[bytes],
        expires_after_s: int = 0,
    ) -> SimpleNamespace:
        async for piece in chunks:
            self.largest_piece = max(self.largest_piece, len(piece))
        self.made.append(f"file-{len(self.made)}")
        return SimpleNamespace(id=self.made[-1])

    async def open_file(self, gw: object, tenant_id: str, file_id: str) -> SimpleNamespace:
        return SimpleNamespace(id=file_id)

    async def delete_file(self, gw: object, made: SimpleNamespace) -> None:
        self.deleted.append(made.id)


def finisher(store: FakeStore) -> BatchFinisher:
    async def requeue(record: BatchRecord, lease: object) -> None:
        raise AssertionError("not here")

    return BatchFinisher(SimpleNamespace(), store, requeue)  # type: ignore[arg-type]


def test_writing_a_batchs_files_holds_a_few_outcomes_however_many_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 lines of half a megabyte each: read 256 at a time and joined
    before a piece was yielded, the finisher held all 64 (and their join);
    now it holds about READ_WINDOW of them."""
    total = 64
    batch, lease = record(total), FakeLease()
    store = FakeStore(batch, lease)
    files = Files(monkeypatch)
    written = batch_finish._Written()

    async def write() -> str | None:
        return await finisher(store)._file(batch, total, True, written, lease)  # type: ignore[arg-type]

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        made = asyncio.run(write())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert made == "file-0" and written.succeeded == total and store.reads == total
    assert peak < (batch_finish.READ_WINDOW + 8) * OUTCOME_BYTES, peak / OUTCOME_BYTES
    # A piece goes as soon as it reaches PIECE_BYTES: one outcome, not the window's.
    assert files.largest_piece < batch_finish.PIECE_BYTES + 2 * OUTCOME_BYTES
    # The lease was looked at as the lines were written.
    assert lease.kept == total // batch_finish.READ_WINDOW


def test_a_finisher_whose_lease_was_taken_over_stops_and_ends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    total = 40
    batch, lease = record(total), FakeLease(lost_after=2)
    store = FakeStore(batch, lease)
    files = Files(monkeypatch)
    counted = RequestCounts(total=total, completed=total)
    asyncio.run(finisher(store)._finish(batch, counted))
    # Stopped at its third look: not every outcome read, no file made, the batch not ended by it.
    assert store.reads < total and not files.made
    assert store.records[batch.id].status == "finalizing" and lease.released


def test_files_made_for_an_end_that_did_not_stand_are_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    total = 3
    batch, lease = record(total), FakeLease()
    store = FakeStore(batch, lease)
    store.ended_by_another = msgspec.structs.replace(batch, status="completed", output_file_id="file-theirs")
    files = Files(monkeypatch)
    asyncio.run(finisher(store)._finish(batch, RequestCounts(total=total, completed=total)))
    assert files.made == ["file-0"] and files.deleted == ["file-0"]
    assert store.records[batch.id].output_file_id == "file-theirs" and lease.released


def test_a_file_written_before_the_lease_was_found_lost_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    total = 2 * batch_finish.READ_WINDOW
    # Its two looks while writing pass; the one before ending finds the lease lost.
    batch, lease = record(total), FakeLease(lost_after=2)
    store = FakeStore(batch, lease)
    files = Files(monkeypatch)
    asyncio.run(finisher(store)._finish(batch, RequestCounts(total=total, completed=total)))
    assert files.made == ["file-0"] and files.deleted == ["file-0"]
    assert store.records[batch.id].status == "finalizing" and lease.released
