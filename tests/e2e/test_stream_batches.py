"""Deltas that come in one read of the upstream's stream travel to the
ingress in one bus message, and still reach the client one SSE chunk each,
in order: fewer messages on the bus, the same stream for the client."""

from __future__ import annotations

import asyncio

import msgspec
import openai

from tests.stack import DEMO_KEY, Stack

# ``burst``: the mock writes the whole stream at once, so one read holds it.
PROMPT = "Hi [mock:chunks=6] [mock:burst]"


async def streamed_through_the_sdk(stack: Stack) -> tuple[list, list[dict]]:
    """The SDK's chunks of one streamed request, and the chunk messages the
    bus carried to the ingress for it."""
    nc = await stack.connect("admin")
    carried: list[dict] = []

    async def saw(msg) -> None:
        reply = msgspec.msgpack.decode(msg.data)
        if isinstance(reply, dict) and reply.get("kind") == "chat.chunk":
            carried.append(reply)

    def stream() -> list:
        with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as client:
            return list(
                client.chat.completions.create(
                    model="demo-model", messages=[{"role": "user", "content": PROMPT}], stream=True
                )
            )

    try:
        await nc.subscribe("_INBOX.ingress.>", cb=saw)
        await nc.flush()
        chunks = await asyncio.to_thread(stream)
        await nc.flush()
        return chunks, carried
    finally:
        await nc.close()


def test_one_reads_deltas_ride_one_message_and_reach_the_client_one_by_one(stack: Stack) -> None:
    chunks, carried = asyncio.run(streamed_through_the_sdk(stack))
    # The role, six words, the finish: each its own SSE chunk, in order.
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(texts) == "Sluice routes this answer through a"
    assert len([t for t in texts if t]) == 6
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # On the bus: fewer messages than deltas, together carrying every one of them.
    mine = [m for m in carried if m["id"] == chunks[0].id.removeprefix("chatcmpl-")]
    deltas = [d for m in mine for d in (m["delta"], *m.get("more", []))]
    assert len(mine) < len(deltas) == len([c for c in chunks if c.choices])
    assert [m["seq"] for m in mine] == list(range(len(mine)))
