"""Running a batch's line (ingress/batch_runner.py) over an in-memory
store: a line queued twice is run by one job only, and a line of a
cancelled batch that an earlier run claimed is never sent again: it ends
as that run's request did, or as not run if no provider took it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import msgspec

from ingress.batch_runner import BatchLines
from schemas.batches import BatchLine, BatchOutput, BatchRecord, RequestCounts, decode_output, encode_line
from schemas.errors import UpstreamError
from schemas.jobs import JobResult
from schemas.replies import Failure
from services import batches

CHAT = "/v1/chat/completions"


def record(**fields: Any) -> BatchRecord:
    base: dict[str, Any] = {
        "id": batches.new_batch_id(),
        "endpoint": CHAT,
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": 1000,
        "in_progress_at": 1001,
        "expires_at": 4_000_000_000,
        "request_counts": RequestCounts(total=3),
        "tenant_id": "t",
        "key_id": "k",
    }
    return BatchRecord(**{**base, **fields})


class FakeStore:
    def __init__(self, batch: BatchRecord, owner: str | None = None) -> None:
        self.batch = batch
        self.owner = owner
        self.written: dict[int, BatchOutput] = {}

    async def own_line(self, batch_id: str, line: int, job_id: str) -> str:
        self.owner = self.owner or job_id
        return self.owner

    async def outcome(self, batch_id: str, line: int) -> bytes | None:
        kept = self.written.get(line)
        return msgspec.json.encode(kept) if kept is not None else None

    async def get(self, tenant_id: str, batch_id: str) -> tuple[BatchRecord | None, int]:
        return self.batch, 1

    async def write_outcome(self, batch_id: str, line: int, output: BatchOutput) -> BatchOutput:
        self.written.setdefault(line, output)
        return self.written[line]


class FakeRun:
    """A ``JobRun`` that records what it was asked to do."""

    def __init__(self, job_id: str, earlier: JobResult | None = None) -> None:
        self.id = job_id
        self.tenant_id = "t"
        self.request_id = f"job-{job_id}"
        self.batch_id = ""
        self.earlier = earlier
        self.sent = 0
        self.looked_back = 0

    async def run(
        self, body: dict[str, Any] | None, variables: dict[str, Any], delivery: int, *, again_if_refused: bool = False
    ) -> JobResult:
        self.sent += 1
        failure = Failure.from_error(self.request_id, UpstreamError("upstream said no", status=502))
        return JobResult(id=self.id, api="chat", request_id=self.request_id, result=failure, tenant_id="t")

    async def earlier_end(self, body: dict[str, Any] | None) -> JobResult | None:
        self.looked_back += 1
        return self.earlier


class FakeMsg:
    def __init__(self, batch_id: str, line: int, delivered: int) -> None:
        body = msgspec.Raw(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode())
        self.data = encode_line(BatchLine(batch_id=batch_id, line=line, custom_id=f"c{line}", body=body))
        self.metadata = SimpleNamespace(num_delivered=delivered)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


def run_line(store: FakeStore, run: FakeRun, msg: FakeMsg) -> list[str]:
    ended: list[str] = []
    lines = BatchLines(SimpleNamespace(), store, lambda tenant, batch: ended.append(batch))  # type: ignore[arg-type]
    asyncio.run(lines.run(run, msg))  # type: ignore[arg-type]
    return ended


def test_a_line_queued_twice_is_run_by_the_job_that_took_it_first() -> None:
    """Queued again past the stream's duplicate window, the line's second
    job got its own request id: it ran again, under a second id. Now the
    line's owner runs it; the other copy is acknowledged and dropped."""
    batch = record()
    store = FakeStore(batch, owner="7")
    copy, msg = FakeRun("9"), FakeMsg(batch.id, 1, delivered=1)
    assert run_line(store, copy, msg) == []
    assert msg.acked and copy.sent == 0 and not store.written
    owner, owners_msg = FakeRun("7"), FakeMsg(batch.id, 1, delivered=1)
    assert run_line(store, owner, owners_msg) == [batch.id]
    assert owners_msg.acked and owner.sent == 1 and store.written[1].response is not None


def test_a_cancelled_line_claimed_but_never_taken_ends_as_not_run_without_a_request() -> None:
    batch = record(status="cancelling", cancelling_at=1500)
    store, run, msg = FakeStore(batch), FakeRun("5", earlier=None), FakeMsg(batch.id, 2, delivered=2)
    run_line(store, run, msg)
    kept = store.written[2]
    assert run.sent == 0 and run.looked_back == 1 and msg.acked
    assert kept.response is None and kept.error is not None and kept.error.code == "batch_cancelled"


def test_a_cancelled_line_an_earlier_run_sent_ends_as_that_request_did() -> None:
    batch = record(status="cancelling", cancelling_at=1500)
    died = Failure.from_error("job-5", UpstreamError("its provider died", code="worker_died"))
    earlier = JobResult(id="5", api="chat", request_id="job-5", result=died, tenant_id="t")
    store, run = FakeStore(batch), FakeRun("5", earlier=earlier)
    run_line(store, run, FakeMsg(batch.id, 3, delivered=2))
    kept = decode_output(msgspec.json.encode(store.written[3]))
    assert run.sent == 0 and kept.response is not None and kept.response.status_code == died.status
    assert json.loads(bytes(kept.response.body))["error"]["code"] == "worker_died"


def test_a_cancelled_line_never_delivered_before_is_not_run_without_looking_back() -> None:
    batch = record(status="cancelling", cancelling_at=1500)
    store, run = FakeStore(batch), FakeRun("5")
    run_line(store, run, FakeMsg(batch.id, 1, delivered=1))
    assert run.sent == 0 and run.looked_back == 0 and store.written[1].error is not None
