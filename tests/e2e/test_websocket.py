"""``/v1/ws`` with a real WebSocket client (the ``websockets`` library): many
requests on one connection, each tagged with its id; cancels reach the
upstream; a slow reader cannot make the gateway buffer without bound."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.stack import DEMO_KEY, Stack

WAITING_LIMIT = 1024 * 1024
PROMPT = """
[[prompts]]
name = "echo"
model = "demo-model"
api = {{ slug = "echo", state = "published" }}
[[prompts.messages]]
role = "user"
template = "{{{{text}}}} [mock:echo]"
[[prompts.variables]]
name = "text"
"""


@pytest.fixture(scope="module")
def ws_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("ws"),
        timeout_s=20,
        extra_config=PROMPT,
        gateway=f"ws_max_waiting_bytes = {WAITING_LIMIT}",
    ).start()
    yield s
    s.stop()


def ws_url(stack: Stack) -> str:
    return f"ws://127.0.0.1:{stack.layout.http_port}/v1/ws"


def chat(request_id: str, text: str, *, stream: bool = True, model: str = "demo-model") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return json.dumps({"type": "request", "id": request_id, "api": "chat", "body": body})


async def open_ws(stack: Stack, **options: Any) -> ClientConnection:
    ws = await connect(ws_url(stack), additional_headers={"authorization": f"Bearer {DEMO_KEY}"}, **options)
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready" and ready["key_id"] == "demo"
    return ws


async def collect(ws: ClientConnection, ids: set[str], timeout: float = 30) -> dict[str, list[dict]]:
    """Every message per request id, until each has ended (done, response or cancelled)."""
    seen: dict[str, list[dict]] = {i: [] for i in ids}
    open_ids = set(ids)
    async with asyncio.timeout(timeout):
        while open_ids:
            message = json.loads(await ws.recv())
            seen[message["id"]].append(message)
            if message["type"] in ("done", "response", "cancelled"):
                open_ids.discard(message["id"])
    return seen


def test_twenty_streams_share_one_connection_and_one_is_cancelled(ws_stack: Stack) -> None:
    before = ws_stack.mock_stats()["cancelled_streams"]

    async def go() -> dict[str, list[dict]]:
        async with await open_ws(ws_stack) as ws:
            for i in range(20):
                chunks, gap = (300, 20) if i == 7 else (30, 5)
                await ws.send(chat(f"s{i}", f"n{i} [mock:chunks={chunks}] [mock:chunk_ms={gap}]"))
            # Wait for s7's first chunk, then cancel it mid-stream.
            seen: dict[str, list[dict]] = {f"s{i}": [] for i in range(20)}
            while not seen["s7"]:
                message = json.loads(await ws.recv())
                seen[message["id"]].append(message)
            await ws.send(json.dumps({"type": "cancel", "id": "s7"}))
            rest = await collect(ws, {i for i in seen if not any(m["type"] == "done" for m in seen[i])})
            for i, messages in rest.items():
                seen[i] += messages
            return seen

    seen = asyncio.run(go())
    for i in range(20):
        rid = f"s{i}"
        if i == 7:
            assert seen[rid][-1]["type"] == "cancelled"
            continue
        events = [m for m in seen[rid] if m["type"] == "event"]
        text = "".join(e["data"]["choices"][0]["delta"].get("content") or "" for e in events if e["data"]["choices"])
        assert len(text.split()) == 30, rid  # every chunk of its own stream, none of another's
        assert seen[rid][-1]["type"] == "done"
    ws_stack.wait_upstream_cancelled(before)


def test_the_upgrades_traceparent_is_on_every_request_of_the_socket(ws_stack: Stack) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"authorization": f"Bearer {DEMO_KEY}", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"}

    async def go() -> dict[str, list[dict]]:
        async with connect(ws_url(ws_stack), additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(chat("t1", "traced [mock:chunks=2]", stream=False))
            await ws.send(chat("t2", "traced [mock:chunks=2]", stream=False))
            return await collect(ws, {"t1", "t2"})

    seen = asyncio.run(go())
    for rid in ("t1", "t2"):
        answer = seen[rid][-1]["body"]
        assert ws_stack.request_row(answer["id"].removeprefix("chatcmpl-"))["trace_id"] == trace


def test_each_api_answers_on_the_same_connection(ws_stack: Stack) -> None:
    async def go() -> dict[str, list[dict]]:
        async with await open_ws(ws_stack) as ws:
            await ws.send(chat("plain", "hello [mock:chunks=3]", stream=False))
            messages = {"model": "claude-model", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
            await ws.send(json.dumps({"type": "request", "id": "anth", "api": "messages", "body": messages}))
            embed = {"model": "embed-model", "input": ["a", "b"]}
            await ws.send(json.dumps({"type": "request", "id": "emb", "api": "embeddings", "body": embed}))
            await ws.send(
                json.dumps(
                    {"type": "request", "id": "api", "api": "prompt", "slug": "echo", "variables": {"text": "x"}}
                )
            )
            await ws.send(chat("bad", "hi", model="no-such-model"))
            await ws.send(json.dumps({"type": "request", "id": "junk", "api": "chat", "body": {"messages": 3}}))
            return await collect(ws, {"plain", "anth", "emb", "api", "bad", "junk"})

    seen = asyncio.run(go())
    plain = seen["plain"][-1]
    assert plain["status"] == 200 and plain["body"]["choices"][0]["message"]["content"] == "Sluice routes this"
    assert seen["anth"][-1]["body"]["type"] == "message"
    assert len(seen["emb"][-1]["body"]["data"]) == 2
    assert seen["api"][-1]["body"]["output"] == "x [mock:echo]"
    assert seen["bad"][-1]["status"] == 404 and seen["bad"][-1]["body"]["error"]["code"] == "model_not_found"
    assert seen["junk"][-1]["status"] == 400
    # Recorded like any request, with where it came from.
    row = ws_stack.request_row(plain["body"]["id"].removeprefix("chatcmpl-"))
    assert (row["origin"], row["status"], row["api"]) == ("ws", 200, "chat")


def test_a_key_can_come_in_the_first_message_and_a_bad_one_closes(ws_stack: Stack) -> None:
    async def go() -> tuple[dict, dict, int | None]:
        async with connect(ws_url(ws_stack)) as ws:
            await ws.send(json.dumps({"type": "auth", "api_key": DEMO_KEY}))
            ready = json.loads(await ws.recv())
        async with connect(ws_url(ws_stack)) as ws:
            await ws.send(json.dumps({"type": "auth", "api_key": "sk-wrong"}))
            refused = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        return ready, refused, closed.value.rcvd.code if closed.value.rcvd else None

    ready, refused, code = asyncio.run(go())
    assert ready["type"] == "ready"
    assert refused["status"] == 401 and refused["body"]["error"]["type"] == "authentication_error"
    assert code == 1008


def test_a_slow_reader_gets_its_oldest_stream_ended_instead_of_unbounded_buffering(ws_stack: Stack) -> None:
    async def go() -> dict[str, list[dict]]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window, so the kernel does not read for us.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", ws_stack.layout.http_port))
        # No compression: the JSON would shrink twentyfold and fit in the kernel buffers.
        ws = await open_ws(ws_stack, sock=sock, max_queue=1, compression=None)
        async with ws:
            ids = {f"big{i}" for i in range(12)}
            for rid in sorted(ids):
                await ws.send(chat(rid, "flood [mock:chunks=3000]"))
            await asyncio.sleep(4)  # read nothing meanwhile
            return await collect(ws, ids, timeout=60)

    seen = asyncio.run(go())
    ended = [rid for rid, messages in seen.items() if messages[-1]["type"] == "response"]
    assert ended, "no stream was ended for the slow reader"
    for rid in ended:
        error = seen[rid][-1]
        assert error["status"] == 503 and error["body"]["error"]["code"] == "slow_reader"
    # The others were not touched: every one of their chunks arrived.
    for rid in set(seen) - set(ended):
        assert seen[rid][-1]["type"] == "done" and len(seen[rid]) == 3003


def test_a_connection_that_drops_cancels_every_stream_it_had_in_flight(ws_stack: Stack) -> None:
    before = ws_stack.mock_stats()["cancelled_streams"]

    async def go() -> None:
        ws = await open_ws(ws_stack)
        for i in range(3):
            await ws.send(chat(f"d{i}", "long [mock:chunks=400] [mock:chunk_ms=20]"))
        seen: set[str] = set()
        while len(seen) < 3:  # each has begun
            seen.add(json.loads(await ws.recv())["id"])
        ws.transport.abort()  # gone without a close frame

    asyncio.run(go())
    deadline = time.monotonic() + 10
    while ws_stack.mock_stats()["cancelled_streams"] < before + 3:
        assert time.monotonic() < deadline, "streams of a dropped connection kept running upstream"
        time.sleep(0.05)


def responses(request_id: str, body: dict[str, Any]) -> str:
    return json.dumps({"type": "request", "id": request_id, "api": "responses", "body": body})


def test_responses_whole_and_streamed(ws_stack: Stack) -> None:
    async def go() -> dict[str, list[dict]]:
        async with await open_ws(ws_stack) as ws:
            await ws.send(responses("whole", {"model": "claude-model", "input": "Hi [mock:chunks=4]"}))
            await ws.send(responses("streamed", {"model": "demo-model", "input": "Hi [mock:chunks=4]", "stream": True}))
            return await collect(ws, {"whole", "streamed"})

    seen = asyncio.run(go())
    (whole,) = seen["whole"]
    assert whole["type"] == "response" and whole["status"] == 200
    answer = whole["body"]
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert answer["id"] == "resp_" + whole["request_id"] and answer["output"][0]["content"][0]["text"] == (
        "Sluice routes this answer"
    )
    assert answer["usage"]["output_tokens"] == 4

    *events, done = seen["streamed"]
    assert done["type"] == "done" and all(m["type"] == "event" for m in events)
    # Each event as its server-sent event carried it: the name is its data's type, numbered from 0.
    assert all(m["event"] == m["data"]["type"] for m in events)
    assert [m["data"]["sequence_number"] for m in events] == list(range(len(events)))
    types = [m["event"] for m in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    deltas = "".join(m["data"]["delta"] for m in events if m["event"] == "response.output_text.delta")
    final = events[-1]["data"]["response"]
    assert deltas == "Sluice routes this answer" == final["output"][0]["content"][0]["text"]
    assert final["id"] == "resp_" + done["request_id"] and final["usage"]["output_tokens"] == 4
    for rid, api_id in ((whole["request_id"], "whole"), (done["request_id"], "streamed")):
        row = ws_stack.request_row(rid)
        assert (row["origin"], row["api"], row["status"]) == ("ws", "responses", 200), api_id
        assert row["completion_tokens"] == 4


def test_responses_continue_by_previous_response_id_across_connections(ws_stack: Stack) -> None:
    """The first answer is stored before the client has it; a request on
    another connection continues it, streamed, and is stored in turn."""

    async def go() -> tuple[dict, list[dict]]:
        async with await open_ws(ws_stack) as ws:
            await ws.send(responses("one", {"model": "gemini-model", "input": "My name is Ada. [mock:chunks=2]"}))
            first = (await collect(ws, {"one"}))["one"][-1]
        assert first["status"] == 200, first
        async with await open_ws(ws_stack) as ws:
            body = {
                "model": "gemini-model",
                "input": "What is my name? [mock:chunks=3]",
                "previous_response_id": first["body"]["id"],
                "stream": True,
            }
            await ws.send(responses("two", body))
            return first, (await collect(ws, {"two"}))["two"]

    first, second = asyncio.run(go())
    sent = json.dumps(httpx.get(f"{ws_stack.mock_url}/mock/last-request").json()["contents"])
    # Both turns, the model's first answer between them, reached the upstream in order.
    at = [sent.index(t) for t in ("My name is Ada.", first["body"]["output"][0]["content"][0]["text"], "What is my")]
    assert at == sorted(at)
    final = second[-2]["data"]["response"]
    assert second[-1]["type"] == "done" and final["status"] == "completed"
    assert final["previous_response_id"] == first["body"]["id"]
    # The streamed answer was kept too: its conversation holds all three turns' input.
    with httpx.Client(base_url=ws_stack.base_url, headers={"authorization": f"Bearer {DEMO_KEY}"}) as c:
        assert c.get(f"responses/{final['id']}").json()["output"] == final["output"]
        items = c.get(f"responses/{final['id']}/input_items", params={"order": "asc"}).json()["data"]
    texts = [part["text"] for item in items for part in item["content"]]
    assert texts[0].startswith("My name is Ada.") and texts[-1].startswith("What is my name?") and len(texts) == 3

    # A previous response this tenant does not have: 404 in OpenAI's shape, on the socket too.
    async def unknown() -> dict:
        async with await open_ws(ws_stack) as ws:
            body = {"model": "gemini-model", "input": "Go on", "previous_response_id": "resp_" + "0" * 26}
            await ws.send(responses("gone", body))
            return (await collect(ws, {"gone"}))["gone"][-1]

    gone = asyncio.run(unknown())
    assert gone["status"] == 404 and gone["body"]["error"]["code"] == "previous_response_not_found"
