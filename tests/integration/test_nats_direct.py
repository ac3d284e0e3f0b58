"""An internal service with only nats-py: publish the documented envelope to
``sluice.v1.in.chat`` and read the replies on its own subject."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
import openai

from schemas.responses import ResponsesRequest
from services.bus.client import SluiceClient, SluiceError
from tests.stack import DEMO_KEY, Stack


def envelope(reply: str, content: str, stream: bool = False, **fields: object) -> bytes:
    # Plain msgpack, as the README documents it: no Sluice code needed.
    return msgspec.msgpack.encode(
        {
            "kind": "chat.request",
            "reply": reply,
            "body": {"model": "demo-model", "messages": [{"role": "user", "content": content}], "stream": stream},
            **fields,
        }
    )


async def collect(stack: Stack, content: str, stream: bool, key: str | None = DEMO_KEY, **fields: object) -> list[dict]:
    nc = await stack.connect()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    await nc.publish("sluice.v1.in.chat", envelope(inbox, content, stream, **fields), headers=headers)
    replies = []
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            reply = msgspec.msgpack.decode(msg.data)
            replies.append(reply)
            if reply["kind"] in ("chat.final", "chat.failure"):
                return replies
    finally:
        await nc.close()


async def test_request_over_nats_gets_final_answer(stack: Stack) -> None:
    replies = await collect(stack, "Hi [mock:chunks=4]", stream=False)
    assert len(replies) == 1
    final = replies[0]
    assert final["kind"] == "chat.final"
    assert final["message"]["content"] == "Sluice routes this answer"
    assert final["usage"]["completion_tokens"] == 4
    assert final["cost_pico_usd"] > 0
    stages = [span[0] for span in final["timing"]["spans"]]
    assert stages == ["policy", "route", "provider"]


async def test_streamed_request_over_nats_gets_ordered_chunks_then_final(stack: Stack) -> None:
    # ``burst``: the whole stream in one read; a caller that did not ask for
    # batches still gets one delta per chunk.
    replies = await collect(stack, "Hi [mock:chunks=4] [mock:burst]", stream=True)
    chunks, final = replies[:-1], replies[-1]
    # The role (as OpenAI sends it, with empty content), four words, then the finish.
    assert [c["kind"] for c in chunks] == ["chat.chunk"] * 6
    assert chunks[0]["delta"]["role"] == "assistant"
    assert [r["seq"] for r in replies] == list(range(7))
    assert "".join(c["delta"].get("content", "") for c in chunks) == "Sluice routes this answer"
    assert chunks[-1]["delta"]["finish_reason"] == "stop"
    assert final["kind"] == "chat.final" and final["usage"]["completion_tokens"] == 4


async def test_a_caller_that_asks_for_batches_gets_one_reads_deltas_in_one_chunk(stack: Stack) -> None:
    replies = await collect(stack, "Hi [mock:chunks=4] [mock:burst]", stream=True, batch_chunks=True)
    chunks, final = replies[:-1], replies[-1]
    deltas = [d for c in chunks for d in (c["delta"], *c.get("more", []))]
    assert len(chunks) < len(deltas) == 6  # the role, four words, the finish
    assert [r["seq"] for r in replies] == list(range(len(replies)))
    assert "".join(d.get("content", "") for d in deltas) == "Sluice routes this answer"
    assert deltas[0]["role"] == "assistant" and deltas[-1]["finish_reason"] == "stop"
    assert final["kind"] == "chat.final" and final["usage"]["completion_tokens"] == 4


async def test_request_over_nats_without_key_fails_401_and_is_recorded(stack: Stack) -> None:
    replies = await collect(stack, "Hi", stream=False, key=None)
    failure = replies[0]
    assert failure["kind"] == "chat.failure"
    assert failure["status"] == 401 and failure["type"] == "authentication_error"
    row = await asyncio.to_thread(stack.request_row, failure["id"])
    assert row["origin"] == "nats" and row["status"] == 401


async def test_nats_request_is_recorded_by_the_finishing_stage(stack: Stack) -> None:
    final = (await collect(stack, "Hi [mock:chunks=2]", stream=False))[0]
    row = await asyncio.to_thread(stack.request_row, final["id"])
    assert row["origin"] == "nats"
    assert row["status"] == 200 and row["completion_tokens"] == 2
    assert row["tenant_id"] == "demo" and row["key_id"] == "demo"


async def ask_responses(stack: Stack, body: dict, key: str = DEMO_KEY) -> tuple[int, dict]:
    """``sluice.v1.in.responses`` with nothing but nats-py: JSON in, JSON and a status header back."""
    nc = await stack.connect()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(
            "sluice.v1.in.responses", msgspec.json.encode(body), reply=inbox, headers={"Authorization": f"Bearer {key}"}
        )
        msg = await sub.next_msg(timeout=10)
    finally:
        await nc.close()
    assert msg.headers is not None
    return int(msg.headers["Sluice-Status"]), msgspec.json.decode(msg.data)


async def test_responses_api_over_nats_continues_an_http_conversation(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        first = client.responses.create(model="gemini-model", input="Remember: bluebird [mock:chunks=2]")
    asked = {"model": "claude-model", "input": "What was it? [mock:echo]", "previous_response_id": first.id}
    status, second = await ask_responses(stack, {**asked, "stream": True})
    assert status == 200 and second["object"] == "response" and second["status"] == "completed"
    assert second["previous_response_id"] == first.id
    # ``echo`` answers with the last message: this turn's, after the earlier one reached the upstream too.
    assert second["output"][0]["content"][0]["text"] == "What was it? [mock:echo]"
    last = httpx.get(f"{stack.mock_url}/mock/last-request").json()
    assert "Remember: bluebird" in str(last["messages"])
    status, error = await ask_responses(stack, {"model": "demo-model", "input": "x"}, key="sk-not-a-key")
    assert status == 401 and error["error"]["message"]


async def test_python_client_responds_over_the_bus(stack: Stack) -> None:
    async with await SluiceClient.connect(stack.nats_url, DEMO_KEY, creds=stack.creds("svc-demo")) as sluice:
        first = await sluice.respond(ResponsesRequest(model="demo-model", input="One [mock:chunks=3]"))
        assert first.status == "completed" and first.usage is not None and first.usage.output_tokens == 3
        second = await sluice.respond(
            ResponsesRequest(model="gemini-model", input="Two [mock:chunks=2]", previous_response_id=first.id)
        )
        assert second.previous_response_id == first.id and second.output
        try:
            await sluice.respond(ResponsesRequest(model="demo-model", input="x", previous_response_id="resp_nope"))
        except SluiceError as exc:
            assert exc.status == 404 and exc.code == "previous_response_not_found"
        else:
            raise AssertionError("an unknown previous response was answered")
