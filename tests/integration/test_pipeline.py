"""The default layout hosts policy, routing and the provider in one process
and hands a request from one to the next in memory: those hops never cross
NATS, while a stage in another process (redaction) is still reached over
the bus, and every stage still records its span."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from schemas import subjects
from tests.stack import DEMO_KEY, REDACT_KEY, Stack


def chat(stack: Stack, key: str) -> httpx.Response:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "which hops?"}]}
    return httpx.post(
        f"{stack.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
    )


async def stage_messages(stack: Stack, key: str) -> tuple[httpx.Response, Counter[str]]:
    """One request's answer, and the stage subjects it crossed on the bus."""
    nc = await stack.connect("admin")
    seen: Counter[str] = Counter()

    async def saw(msg) -> None:
        seen[msg.subject.removeprefix(f"{subjects.PREFIX}.stage.")] += 1

    try:
        await nc.subscribe(f"{subjects.PREFIX}.stage.>", cb=saw)
        await nc.flush()
        response = await asyncio.to_thread(chat, stack, key)
        await nc.flush()
        await asyncio.sleep(0.2)  # a stray publish would have arrived by now
        return response, seen
    finally:
        await nc.close()


def test_the_pipelines_stages_hand_over_in_memory(stack: Stack) -> None:
    assert stack.layout.process_of("route") == "pipeline"
    response, seen = asyncio.run(stage_messages(stack, DEMO_KEY))
    assert response.status_code == 200
    assert seen == Counter()
    row = stack.request_row(response.headers["x-request-id"])
    assert row["policy_ns"] > 0 and row["route_ns"] > 0 and row["provider_ns"] > 0


def test_a_stage_in_another_process_is_reached_over_the_bus(stack: Stack) -> None:
    # Tenant "careful" has privacy rules: redaction (its own process) is on the slip.
    response, seen = asyncio.run(stage_messages(stack, REDACT_KEY))
    assert response.status_code == 200
    assert seen == Counter({"redact": 1, "route": 1})
    row = stack.request_row(response.headers["x-request-id"])
    assert row["redact_ns"] > 0 and row["route_ns"] > 0
