"""A tenant's file totals (``services.bus.file_usage``) over stand-ins for
the JetStream counters and the files' bucket: a file is counted before its
bytes and refused past the totals with nothing left counted, settled to its
size, given back when not kept or deleted (once, by whichever delete removes
the record), and a write left by a dead process is settled by the sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace

import msgspec
import pytest

from ingress import file_store
from schemas.errors import InternalError, InvalidRequest, QuotaUnavailable
from schemas.files import FileHold, FileRecord, decode_hold, encode_hold
from schemas.tasks import BlobRef
from services import files
from services.bus import file_usage
from services.bus.file_usage import FileUsage, counter_subjects
from services.config import GatewaySettings

LIMITS = files.StorageLimits(max_bytes=600, total_bytes=1000, max_count=3)


class FakeCounters:
    """JetStream counters: each add answers the new total; an id seen before
    is a duplicate (no total), as the stream's duplicate window does."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.seen: set[str] = set()
        self.later: list[tuple[str, int]] = []
        # Adds that raise after they were applied (an answer lost), then work.
        self.lose_answers = 0
        self.js = SimpleNamespace(get_last_msg=self._last)

    async def add(self, subject: str, delta: int, msg_id: str | None = None) -> int | None:
        await asyncio.sleep(0)  # another add may run between: the counter is the only order
        if msg_id is not None and msg_id in self.seen:
            return None
        if msg_id is not None:
            self.seen.add(msg_id)
        self.totals[subject] = self.totals.get(subject, 0) + delta
        if self.lose_answers:
            self.lose_answers -= 1
            raise TimeoutError
        return self.totals[subject]

    def add_later(self, subject: str, delta: int, budget: int = 0) -> None:
        self.later.append((subject, delta))

    async def _last(self, stream: str, subject: str, direct: bool = False) -> SimpleNamespace:
        return SimpleNamespace(data=msgspec.json.encode({"val": str(self.totals.get(subject, 0))}))


class FakeRecords:
    """``FileRecords``: keys with revisions; a removal at a revision that is
    not the key's is refused."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[object, int]] = {}
        self.seq = 0

    def _put(self, key: str, value: object) -> int:
        self.seq += 1
        self.keys[key] = (value, self.seq)
        return self.seq

    def _remove(self, key: str, revision: int) -> bool:
        if key not in self.keys or self.keys[key][1] != revision:
            return False
        del self.keys[key]
        return True

    async def create(self, record: FileRecord) -> None:
        self._put(f"r.{record.tenant_id}.{record.id}", record)

    async def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        found = await self.entry(tenant_id, file_id)
        return found[0] if found else None

    async def entry(self, tenant_id: str, file_id: str) -> tuple[FileRecord, int] | None:
        found = self.keys.get(f"r.{tenant_id}.{file_id}")
        return (found[0], found[1]) if found else None  # type: ignore[return-value]

    async def remove(self, tenant_id: str, file_id: str, revision: int) -> bool:
        return self._remove(f"r.{tenant_id}.{file_id}", revision)

    async def create_hold(self, hold: FileHold) -> int:
        return self._put(f"h.{hold.tenant_id}.{hold.file_id}", encode_hold(hold))

    async def renew_hold(self, hold: FileHold, revision: int) -> int | None:
        key = f"h.{hold.tenant_id}.{hold.file_id}"
        if key not in self.keys or self.keys[key][1] != revision:
            return None
        return self._put(key, encode_hold(hold))

    async def drop_hold(self, hold: FileHold, revision: int) -> bool:
        return self._remove(f"h.{hold.tenant_id}.{hold.file_id}", revision)

    async def holds(self) -> AsyncGenerator[tuple[FileHold, int], None]:
        for key, (value, revision) in list(self.keys.items()):
            if key.startswith("h."):
                yield decode_hold(value), revision  # type: ignore[arg-type]


class FakeBlobs:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, name: str) -> None:
        self.deleted.append(name)


def usage() -> tuple[FileUsage, FakeCounters, FakeRecords]:
    counters, records = FakeCounters(), FakeRecords()
    return FileUsage(counters, records), counters, records  # type: ignore[arg-type]


def used(counters: FakeCounters, tenant_id: str = "acme") -> tuple[int, int]:
    bytes_subject, count_subject = counter_subjects(tenant_id)
    return counters.totals.get(bytes_subject, 0), counters.totals.get(count_subject, 0)


def record_for(hold: FileHold, size: int) -> FileRecord:
    return FileRecord(
        id=hold.file_id,
        bytes=size,
        created_at=1,
        filename="f.txt",
        purpose="user_data",
        tenant_id=hold.tenant_id,
        key_id="k",
        blob=BlobRef(name=hold.blob_name, size=size),
    )


def test_counters_are_named_per_tenant_in_the_spend_stream() -> None:
    assert counter_subjects("acme") == (
        "sluice.v1.quota.spend.files.acme.bytes",
        "sluice.v1.quota.spend.files.acme.count",
    )
    assert counter_subjects("")[0] == "sluice.v1.quota.spend.files.-.bytes"  # a key of no tenant


async def test_two_writes_that_together_pass_the_total_one_is_refused_and_nothing_of_it_stays() -> None:
    files_usage, counters, records = usage()
    results = await asyncio.gather(
        files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS),
        files_usage.hold("acme", "file-b", "acme/file/b", 600, LIMITS),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], InvalidRequest)
    assert refused[0].status == 400 and refused[0].code == "file_storage_limit"
    assert used(counters) == (600, 1)
    assert len([k for k in records.keys if k.startswith("h.")]) == 1  # the refused one's hold is gone


async def test_a_write_is_settled_to_its_size_and_a_write_not_kept_gives_back() -> None:
    files_usage, counters, records = usage()
    held = await files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS)
    await held.settle(250)
    assert used(counters) == (250, 1) and not records.keys
    # Room for 750 more bytes now: a second 600 fits.
    second = await files_usage.hold("acme", "file-b", "acme/file/b", 600, LIMITS)
    assert used(counters) == (850, 2)
    await second.release()
    await second.release()  # once only
    assert used(counters) == (250, 1) and not records.keys


async def test_the_count_is_a_total_too() -> None:
    files_usage, counters, _ = usage()
    for i in range(3):
        await (await files_usage.hold("acme", f"file-{i}", f"acme/file/{i}", 1, LIMITS)).settle(1)
    with pytest.raises(InvalidRequest):
        await files_usage.hold("acme", "file-x", "acme/file/x", 1, LIMITS)
    assert used(counters) == (3, 3)
    # A file the gateway makes (a batch's output) is counted past the totals, never refused.
    await (await files_usage.hold("acme", "file-out", "acme/file/out", 0, None)).settle(10)
    assert used(counters) == (13, 4)
    assert used(counters, "other") == (0, 0)  # another tenant's totals are its own


async def test_an_add_whose_answer_was_lost_counts_once() -> None:
    files_usage, counters, _ = usage()
    counters.lose_answers = 1
    held = await files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS)
    assert used(counters) == (600, 1)
    await held.release()
    assert used(counters) == (0, 0)


async def test_counters_out_of_reach_refuse_the_write_and_leave_no_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    files_usage, counters, records = usage()
    monkeypatch.setattr(file_usage, "ADD_TRIES", 2)

    async def down(subject: str, delta: int, msg_id: str | None = None) -> int:
        raise TimeoutError

    counters.add = down  # type: ignore[method-assign]
    with pytest.raises(QuotaUnavailable):
        await files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS)
    assert not records.keys


async def test_the_sweep_settles_writes_left_by_a_dead_process(monkeypatch: pytest.MonkeyPatch) -> None:
    files_usage, counters, records = usage()
    kept = await files_usage.hold("acme", "file-kept", "acme/file/kept", 600, LIMITS)
    lost = await files_usage.hold("acme", "file-lost", "acme/file/lost", 300, LIMITS)
    live = await files_usage.hold("other", "file-live", "other/file/live", 100, LIMITS)
    monkeypatch.setattr(file_usage, "HOLD_S", file_usage.HOLD_S * 2)
    await live.renew()  # its writer is alive: renewed past the sweep's time
    # The first made its record (of 200 bytes) and died before settling; the second died mid-write.
    await records.create(record_for(kept.hold, 200))
    blobs = FakeBlobs()
    assert await files_usage.settle_abandoned(blobs, now_s=kept.hold.until - 1) == 0  # not run out yet
    assert await files_usage.settle_abandoned(blobs, now_s=lost.hold.until + 1) == 2
    assert used(counters) == (200, 1) and blobs.deleted == ["acme/file/lost"]
    assert used(counters, "other") == (100, 1)  # still held
    assert await files_usage.settle_abandoned(blobs, now_s=lost.hold.until + 1) == 0
    # A write whose hold the sweep settled may not go on, and settles nothing again.
    with pytest.raises(InternalError) as caught:
        await lost.renew()
    assert caught.value.status == 503
    await lost.release()
    await kept.settle(200)
    assert used(counters) == (200, 1)


async def test_a_hold_renewed_between_the_sweeps_read_and_its_removal_is_left_alone() -> None:
    files_usage, counters, records = usage()
    held = await files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS)
    stale = held.revision
    await held.renew()
    assert not await records.drop_hold(held.hold, stale)
    await held.settle(5)
    assert used(counters) == (5, 1)


async def test_a_delete_gives_back_once_whoever_else_deletes_at_the_same_time() -> None:
    files_usage, counters, records = usage()
    held = await files_usage.hold("acme", "file-a", "acme/file/a", 600, LIMITS)
    record = record_for(held.hold, 120)
    await records.create(record)
    await held.settle(120)
    gw = SimpleNamespace(files=records, counters=counters, blobs=FakeBlobs())
    await asyncio.gather(*(file_store.delete_file(gw, record) for _ in range(3)))  # type: ignore[arg-type]
    assert used(counters) == (0, 0) and not records.keys
    await file_store.delete_file(gw, record)  # type: ignore[arg-type]
    assert used(counters) == (0, 0)


class FakeStore(FakeBlobs):
    """``BlobStore.put_stream``: takes every chunk (or fails at ``fail_at``)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at

    async def put_stream(self, name: str, chunks: AsyncGenerator[bytes, None], **kw: object) -> BlobRef:
        size = 0
        async for piece in chunks:
            size += len(piece)
            if self.fail_at is not None and size >= self.fail_at:
                raise InternalError("the store went away", status=503)
        return BlobRef(name=name, size=size, content_type=str(kw.get("content_type", "")))


async def pieces(n: int) -> AsyncGenerator[bytes, None]:
    for _ in range(n):
        yield b"x" * 100


async def test_a_batchs_output_file_counts_past_the_totals_and_a_failed_one_counts_nothing() -> None:
    files_usage, counters, records = usage()
    for i in range(3):  # the tenant is at its count already
        await (await files_usage.hold("acme", f"file-{i}", f"acme/file/{i}", 1, LIMITS)).settle(1)
    gw = SimpleNamespace(files=records, counters=counters, blobs=FakeStore(), settings=GatewaySettings())
    made = await file_store.create_file(gw, "acme", "k", "batch_1_output.jsonl", "batch_output", pieces(5))  # type: ignore[arg-type]
    assert made.bytes == 500 and await records.get("acme", made.id) == made
    assert used(counters) == (503, 4)
    gw.blobs = FakeStore(fail_at=300)
    with pytest.raises(InternalError):
        await file_store.create_file(gw, "acme", "k", "batch_2_error.jsonl", "batch_output", pieces(5))  # type: ignore[arg-type]
    assert used(counters) == (503, 4) and not [k for k in records.keys if k.startswith("h.")]
