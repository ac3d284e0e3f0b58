"""Making a batch (ingress/batch_create.py) over an in-memory store: what a
create may cost is bounded before and while its input file is read (its
size, the tenant's open batches, the first MAX_LINES + 1 lines or
MAX_ERRORS errors), and once its record exists a create answers with it
whatever fails after, so a client never retries a batch that runs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from ingress import batch_create, file_store
from schemas.batches import BatchRecord
from schemas.control import ApiKey, ModelRoute
from schemas.envelope import Deployment
from schemas.errors import InternalError, RateLimitExceeded
from schemas.files import FileRecord
from schemas.tasks import BlobRef
from services import batches
from services.config import GatewaySettings
from services.routing import RouteTable

CHAT = "/v1/chat/completions"


class FakeLease:
    def __init__(self) -> None:
        self.kept = 0
        self.released = False

    async def keep(self) -> None:
        self.kept += 1

    async def release(self) -> None:
        self.released = True


class FakeStore:
    def __init__(self, open_now: int = 0) -> None:
        self.records: dict[str, BatchRecord] = {}
        self.open_now = open_now
        self.leases: list[FakeLease] = []
        self.ended: list[str] = []

    async def open_of_tenant(self, tenant_id: str) -> int:
        return self.open_now

    async def create(self, record: BatchRecord) -> None:
        self.records[record.id] = record

    async def get(self, tenant_id: str, batch_id: str) -> tuple[BatchRecord | None, int]:
        return self.records.get(batch_id), 1

    async def change(
        self, tenant_id: str, batch_id: str, how: Callable[[BatchRecord], BatchRecord]
    ) -> BatchRecord | None:
        if batch_id not in self.records:
            return None
        self.records[batch_id] = how(self.records[batch_id])
        return self.records[batch_id]

    async def take_lease(self, record: BatchRecord, holder: str) -> FakeLease:
        self.leases.append(FakeLease())
        return self.leases[-1]

    async def closed(self, record: BatchRecord) -> None:
        self.ended.append(record.id)


class FakeIntake:
    """Queues lines as ``JobIntake.queue_lines`` does; raises as NATS would after ``fail_after`` of them."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.queued: list[str] = []

    async def queue_lines(self, tenant_id: str, key_id: str, api: str, lines: AsyncIterator[tuple[str, bytes]]) -> int:
        async for msg_id, _ in lines:
            if self.fail_after is not None and len(self.queued) >= self.fail_after:
                raise InternalError("The batch could not be queued; it is queued again shortly.", status=503)
            self.queued.append(msg_id)
        return len(self.queued)


class FakeFile:
    """An input file served in chunks, counting the chunks read."""

    def __init__(self, data: bytes, chunk: int = 4096, size: int | None = None) -> None:
        self.data = data
        self.chunk = chunk
        self.read = 0
        blob = BlobRef(name="t/file/x", size=len(data))
        self.record = FileRecord(
            id="file-in",
            bytes=len(data) if size is None else size,
            created_at=1,
            filename="in.jsonl",
            purpose="batch",
            tenant_id="t",
            key_id="k",
            blob=blob,
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            self.read += 1
            yield self.data[start : start + self.chunk]


def chat_line(custom_id: str) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}).encode() + b"\n"


def make(
    monkeypatch: pytest.MonkeyPatch,
    source: FakeFile,
    store: FakeStore,
    intake: FakeIntake,
    table: RouteTable | None = None,
    **settings: Any,
) -> BatchRecord:
    async def open_file(gw: object, tenant_id: str, file_id: str) -> FileRecord:
        return source.record

    monkeypatch.setattr(file_store, "open_file", open_file)
    monkeypatch.setattr(file_store, "read_file", lambda gw, record: source.chunks())
    gw = SimpleNamespace(settings=GatewaySettings(**settings), table=table or RouteTable())
    caller = ApiKey(id="k", tenant_id="t")
    raw = json.dumps({"input_file_id": "file-in", "endpoint": CHAT, "completion_window": "24h"}).encode()
    return asyncio.run(batch_create.create(gw, store, intake, caller, raw))  # type: ignore[arg-type]


def test_a_batch_made_then_not_queued_is_answered_as_it_stands_for_the_sweeper_to_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queueing failed after 3 of 10 lines were queued: those run whatever
    is answered. An error (a 503 the SDK retries) would make the batch
    again and run them twice; the record, still validating, is answered."""
    store, intake = FakeStore(), FakeIntake(fail_after=3)
    made = make(monkeypatch, FakeFile(b"".join(chat_line(f"c{i}") for i in range(10))), store, intake)
    assert made.status == "validating" and made.id in store.records and store.records[made.id] == made
    assert len(intake.queued) == 3 and made.in_progress_at is None
    # The lease is given back: the sweeper takes it to queue the rest.
    assert store.leases and store.leases[0].released


def test_a_batch_queued_whole_is_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    store, intake = FakeStore(), FakeIntake()
    made = make(monkeypatch, FakeFile(b"".join(chat_line(f"c{i}") for i in range(10))), store, intake)
    assert made.status == "in_progress" and made.request_counts.total == 10 and len(intake.queued) == 10
    assert store.leases[0].kept >= 1 and store.leases[0].released


def test_an_input_file_over_200_mb_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    source = FakeFile(chat_line("a"), size=batches.MAX_INPUT_BYTES + 1)
    store = FakeStore()
    with pytest.raises(Exception) as refused:
        make(monkeypatch, source, store, FakeIntake())
    assert (refused.value.status, refused.value.code) == (400, "input_file_too_large")  # type: ignore[attr-defined]
    assert source.read == 0 and not store.records


def test_a_tenant_past_its_open_batches_is_refused_429(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore(open_now=3)
    with pytest.raises(RateLimitExceeded) as refused:
        make(monkeypatch, FakeFile(chat_line("a")), store, FakeIntake(), max_open_batches=3)
    assert (refused.value.status, refused.value.code) == (429, "too_many_open_batches")
    assert not store.records
    below = FakeStore(open_now=2)
    assert make(monkeypatch, FakeFile(chat_line("a")), below, FakeIntake(), max_open_batches=3).status == "in_progress"


def test_checking_stops_at_the_error_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 bad lines: checking stops at the MAX_ERRORS-th, the rest of the file unread."""
    source = FakeFile(b"{nope\n" * 20_000, chunk=1024)
    made = make(monkeypatch, source, FakeStore(), FakeIntake())
    assert made.status == "failed" and made.errors is not None and len(made.errors.data) == batches.MAX_ERRORS
    assert source.read * source.chunk < 2 * batches.MAX_ERRORS * len(b"{nope\n") + source.chunk


def test_a_file_of_blank_lines_stops_at_the_line_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines count: the file is read no further than its first MAX_LINES + 1 lines."""
    total_chunks = 40
    source = FakeFile(chat_line("a") + b"\n" * (total_chunks * 4096), chunk=4096)
    made = make(monkeypatch, source, FakeStore(), FakeIntake())
    assert made.status == "failed" and made.errors is not None
    assert [(e.code, e.line) for e in made.errors.data] == [("too_many_tasks", batches.MAX_LINES + 1)]
    assert source.read < (batches.MAX_LINES + 1) // 4096 + 3 < total_chunks


def native_table(native_batch: bool, provider: str = "openai") -> RouteTable:
    table = RouteTable()
    dep = Deployment(name="m", provider=provider, base_url="http://u", upstream_model="m", native_batch=native_batch)
    table.changed("m", None, ModelRoute(name="m", deployments=[dep]))
    return table


def test_a_batch_of_one_model_with_a_native_deployment_runs_there_with_no_line_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, intake = FakeStore(), FakeIntake()
    source = FakeFile(b"".join(chat_line(f"c{i}") for i in range(3)))
    made = make(monkeypatch, source, store, intake, native_table(True))
    assert made.status == "in_progress" and made.request_counts.total == 3
    assert made.native is not None and (made.native.model, made.native.phase) == ("m", "submit")
    assert intake.queued == []
    assert b"native" not in msgspec.json.encode(made.public())  # the caller sees nothing of how it runs


def test_a_batch_runs_as_jobs_without_a_native_deployment_for_its_endpoint_or_with_two_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for table, lines in (
        (native_table(False), [chat_line("a"), chat_line("b")]),
        (native_table(True, provider="gemini"), [chat_line("a"), chat_line("b")]),  # no batch API of its own
        (native_table(True), [chat_line("a"), chat_line("b").replace(b'"model": "m"', b'"model": "n"')]),
    ):
        store, intake = FakeStore(), FakeIntake()
        made = make(monkeypatch, FakeFile(b"".join(lines)), store, intake, table)
        assert made.native is None and len(intake.queued) == 2
