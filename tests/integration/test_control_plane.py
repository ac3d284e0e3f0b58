"""Control-plane changes reach running stages through their KV watches: no
restart, no redeploy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from schemas import subjects
from schemas.control import ModelRoute, kv_encode
from schemas.envelope import Deployment
from services.bus import process
from tests.stack import DEMO_KEY, Stack

LATE = "late-model"


def kv_write(stack: Stack, key: str, value: bytes | None) -> None:
    async def write() -> None:
        nc = await process.connect("test", stack.nats_url, stack.creds("admin"))
        try:
            kv = await nc.jetstream().key_value(subjects.KV_MODELS)
            if value is None:
                await kv.delete(key)
            else:
                await kv.put(key, value)
        finally:
            await nc.close()

    asyncio.run(write())


def chat_status(stack: Stack) -> int:
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": LATE, "messages": [{"role": "user", "content": "are you there? [mock:chunks=2]"}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    )
    return resp.status_code


def wait_for_status(stack: Stack, status: int) -> None:
    deadline = time.monotonic() + 10
    while (got := chat_status(stack)) != status:
        assert time.monotonic() < deadline, f"still {got}, expected {status}"
        time.sleep(0.1)


@pytest.fixture
def late_model(stack: Stack) -> Iterator[None]:
    yield
    kv_write(stack, LATE, None)


def test_a_model_added_and_removed_in_kv_is_served_then_404(stack: Stack, late_model: None) -> None:
    assert chat_status(stack) == 404
    dep = Deployment(name=LATE, provider="openai", base_url=f"{stack.mock_url}/v1", upstream_model="gpt-4")
    kv_write(stack, LATE, kv_encode(ModelRoute(name=LATE, deployments=[dep])))
    wait_for_status(stack, 200)
    models = httpx.get(f"{stack.base_url}/models", headers={"authorization": f"Bearer {DEMO_KEY}"}).json()
    assert LATE in {m["id"] for m in models["data"]}
    kv_write(stack, LATE, None)
    wait_for_status(stack, 404)
