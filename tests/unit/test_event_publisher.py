"""The event publisher's write-ahead for billing rows: callers ending in the
same turn share one JetStream message, and none returns before its own
events are written; a batch flush never takes events a caller waits on."""

from __future__ import annotations

import asyncio

import msgspec

from schemas.events import EventBatch, StageEvent
from services.bus.events import EventPublisher


class RecordingJetStream:
    """Stands in for nats-py's JetStream context: records what is written, in order."""

    def __init__(self) -> None:
        self.written: list[list[str]] = []

    def _write(self, payload: bytes) -> None:
        batch = msgspec.msgpack.decode(payload, type=EventBatch)
        self.written.append([e.request_id for e in batch.events])  # type: ignore[union-attr]

    async def publish_async(self, subject: str, payload: bytes, headers: dict, wait_stall: float) -> asyncio.Future:
        self._write(payload)
        ack: asyncio.Future = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    async def publish(self, subject: str, payload: bytes, headers: dict, timeout: float) -> None:
        await asyncio.sleep(0)
        self._write(payload)


def event(request_id: str) -> StageEvent:
    return StageEvent(event_id=f"e-{request_id}", request_id=request_id, stage="provider", started_at_ns=1,
                      duration_ns=1, outcome="reply")  # fmt: skip


async def test_callers_in_one_turn_share_one_write_and_each_waits_for_its_own() -> None:
    js = RecordingJetStream()
    publisher = EventPublisher(js, "provider", max_batch=3)  # type: ignore[arg-type]

    async def end(request_id: str) -> list[list[str]]:
        publisher.emit(event(request_id))
        await publisher.flush_now()
        return [list(w) for w in js.written]  # what was written when this caller went on

    seen = await asyncio.gather(*(end(f"r{i}") for i in range(10)))
    # One message for the ten (max_batch 3 would have cut it into four).
    assert js.written == [[f"r{i}" for i in range(10)]]
    for i, written in enumerate(seen):
        assert any(f"r{i}" in w for w in written)

    # A later caller starts a new group; a timed flush in between waits for it.
    publisher.emit(event("late"))
    waiting = asyncio.create_task(publisher.flush_now())
    await asyncio.sleep(0)
    publisher.emit(event("later"))
    publisher.flush()  # the ticker, or a full batch: the group writes these
    await waiting
    assert js.written[1:] == [["late", "later"]]
