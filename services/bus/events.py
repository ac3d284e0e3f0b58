"""Batching analytics events onto JetStream.

Events are buffered and published as one ``EventBatch`` per message, in the
background, with the batch id as ``Nats-Msg-Id`` so a retried publish is
stored once. The request path never waits on JetStream.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import bus, subjects
from schemas.events import CallLogEvent, Event, EventBatch
from schemas.ids import new_id

log = logging.getLogger("sluice.events")
# Call logs carry bodies: a batch is sent once its bodies reach this, so it
# stays well inside nats-server's max_payload (8 MB here).
MAX_BODY_BYTES = 1 << 20


class EventPublisher:
    def __init__(self, js: JetStreamContext, stage: str, *, max_batch: int = 512, interval_s: float = 0.25) -> None:
        self._js = js
        self._subject = subjects.events(stage)
        self._max_batch = max_batch
        self._interval = interval_s
        self._buffer: list[Event] = []
        self._body_bytes = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        # The write that callers of flush_now wait for, until it takes the buffer.
        self._group: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name=f"events-{self._subject}")

    def emit(self, event: Event) -> None:
        self._buffer.append(event)
        if isinstance(event, CallLogEvent):
            self._body_bytes += len(event.request_body) + len(event.response_body)
        if len(self._buffer) >= self._max_batch or self._body_bytes >= MAX_BODY_BYTES:
            self.flush()

    def flush(self) -> None:
        # While a group is gathering (flush_now), the buffer is its to write:
        # its callers are waiting for their events to be on the connection.
        if not self._buffer or self._group is not None:
            return
        batch = EventBatch(id=new_id(), events=self._buffer)
        self._buffer, self._body_bytes = [], 0
        task = asyncio.create_task(self._publish(batch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush_now(self) -> None:
        """Put the buffered events on the connection before anything published
        after this call (JetStream's async publish writes at once and acks
        later). For rows that bill: written ahead of the answer they belong to,
        they are not lost with the process in the 250 ms a batch waits.

        Callers in the same turn of the event loop share one write (a group
        commit): under load many requests end together, and one JetStream
        message (and ack) for all of them costs the server and this process
        far less than one each. Each caller still returns only once its own
        events are on the connection."""
        if not self._buffer:
            return
        group = self._group
        if group is None:
            group = self._group = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._write_group(group))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        await asyncio.shield(group)

    async def _write_group(self, group: asyncio.Future[None]) -> None:
        # Runs a turn after the first caller: those ending in the same turn
        # have emitted by now. From here, a new caller starts a new group.
        self._group = None
        try:
            if not self._buffer:
                return
            batch = EventBatch(id=new_id(), events=self._buffer)
            self._buffer, self._body_bytes = [], 0
            payload = bus.encode(batch)
            headers = {"Nats-Msg-Id": batch.id}
            try:
                ack = await self._js.publish_async(self._subject, payload, headers=headers, wait_stall=1.0)
            except (nats.errors.Error, APIError) as exc:  # stalled or disconnected: the slow path retries
                log.warning("event batch %s: async publish failed (%r); retrying", batch.id, exc)
                ack = None
            task = asyncio.create_task(self._confirm(batch, ack))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        finally:
            if not group.done():
                group.set_result(None)

    async def _confirm(self, batch: EventBatch, ack: asyncio.Future | None) -> None:
        if ack is not None:
            try:
                await asyncio.wait_for(ack, 5.0)
                return
            except (TimeoutError, nats.errors.Error, APIError) as exc:
                log.warning("event batch %s: no ack (%r); publishing again", batch.id, exc)
        await self._publish(batch)  # same Nats-Msg-Id: stored once whichever try lands

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    async def _publish(self, batch: EventBatch) -> None:
        payload = bus.encode(batch)
        headers = {"Nats-Msg-Id": batch.id}
        delay = 0.1
        for attempt in range(1, 9):
            try:
                await self._js.publish(self._subject, payload, headers=headers, timeout=5.0)
                return
            except (TimeoutError, nats.errors.Error, APIError) as exc:
                log.warning("event batch %s: publish try %d failed: %r", batch.id, attempt, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("event batch %s: dropped %d events after retries", batch.id, len(batch.events))

    async def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        self.flush()
        if self._pending:
            await asyncio.wait(self._pending, timeout=10)
