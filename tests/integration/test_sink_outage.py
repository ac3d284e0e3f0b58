"""With the analytics sink down, events wait in JetStream; when it is back,
they reach ClickHouse. Nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from analytics.sink import ACK_WAIT_S, DURABLE
from schemas import subjects
from services.bus import process
from tests.stack import DEMO_KEY, Stack


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path).start()
    yield s
    s.stop()


def pending_for_sink(stack: Stack) -> int:
    async def ask() -> int:
        nc = await process.connect("test", stack.nats_url, stack.creds("admin"))
        try:
            info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, DURABLE)
            assert info.config.ack_wait == ACK_WAIT_S  # stranded events come back soon
            return info.num_pending + info.num_ack_pending
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_events_wait_in_the_stream_while_the_sink_is_down(own_stack: Stack) -> None:
    sup = own_stack.supervisor
    sup.hold("sink")  # stopped, and not restarted until released

    ids = []
    for _ in range(5):
        resp = httpx.post(
            f"{own_stack.base_url}/chat/completions",
            json={"model": "demo-model", "messages": [{"role": "user", "content": "while the sink sleeps"}]},
            headers={"authorization": f"Bearer {DEMO_KEY}"},
            timeout=20,
        )
        assert resp.status_code == 200  # the request path does not depend on analytics
        ids.append(resp.headers["x-request-id"])

    # Stages flush their event batches every 250 ms; give them a few rounds.
    deadline = time.monotonic() + 10
    while pending_for_sink(own_stack) == 0:
        assert time.monotonic() < deadline, "no events waiting for the sink"
        time.sleep(0.1)

    sup.release("sink")
    for rid in ids:
        assert own_stack.request_row(rid, timeout=30)["status"] == 200
