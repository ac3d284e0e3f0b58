"""An ingress process holds at most ``max_in_flight`` model requests: past
that it answers 503 ``gateway_busy`` with Retry-After at once, records the
refusal, keeps answering its health check, and takes requests again as soon
as slots free up, whether a request ended or its client left."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import DEMO_KEY, Stack

# Requests timed to be held at the upstream while the slots are counted, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

SLOTS = 4
HEADERS = {"authorization": f"Bearer {DEMO_KEY}"}


@pytest.fixture(scope="module")
def busy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("shedding")), timeout_s=20, gateway=f"max_in_flight = {SLOTS}").start()
    yield s
    s.stop()


def body(text: str, stream: bool = False) -> dict:
    return {"model": "demo-model", "messages": [{"role": "user", "content": text}], "stream": stream}


async def flood(stack: Stack, n: int) -> tuple[list[httpx.Response], httpx.Response]:
    """``n`` slow requests at once, and a health check while they are held."""
    async with httpx.AsyncClient(base_url=stack.base_url, headers=HEADERS, timeout=20) as client:
        calls = [
            asyncio.create_task(client.post("/chat/completions", json=body("[mock:latency_ms=1500]"))) for _ in range(n)
        ]
        await asyncio.sleep(0.5)  # all sent, the first ones held upstream
        health = await client.get(stack.base_url.removesuffix("/v1") + "/healthz")
        return list(await asyncio.gather(*calls)), health


def test_a_flood_past_the_limit_is_refused_at_once_and_recorded(busy_stack: Stack) -> None:
    responses, health = asyncio.run(flood(busy_stack, 16))
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert Counter(r.status_code for r in responses) == {200: SLOTS, 503: 16 - SLOTS}
    refused = [r for r in responses if r.status_code == 503]
    for r in refused:
        assert r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "gateway_busy" and r.json()["error"]["type"] == "server_error"
    row = busy_stack.request_row(refused[0].headers["x-request-id"])
    assert (row["status"], row["error_code"]) == (503, "gateway_busy")
    # Nothing leaked: every slot is free again.
    again = httpx.post(f"{busy_stack.base_url}/chat/completions", json=body("after"), headers=HEADERS, timeout=20)
    assert again.status_code == 200


def test_a_client_that_leaves_gives_its_slot_back(busy_stack: Stack) -> None:
    with httpx.Client(base_url=busy_stack.base_url, headers=HEADERS, timeout=20) as client:
        streams = [
            client.stream("POST", "/chat/completions", json=body("[mock:chunks=200] [mock:chunk_ms=50]", stream=True))
            for _ in range(SLOTS)
        ]
        opened = [s.__enter__() for s in streams]
        try:
            assert all(r.status_code == 200 for r in opened)
            assert client.post("/chat/completions", json=body("one too many")).status_code == 503
        finally:
            for s in streams:
                s.__exit__(None, None, None)  # the clients leave mid-stream
    # The ingress sees each client go and frees its slot: all of them are
    # taken again at once (tried a few times while it notices).
    for _ in range(10):
        responses, _ = asyncio.run(flood(busy_stack, SLOTS))
        if all(r.status_code == 200 for r in responses):
            break
    assert [r.status_code for r in responses] == [200] * SLOTS
