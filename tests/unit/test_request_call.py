"""A request's whole upstream call (``RequestCall``) against a fake upstream
(httpx.MockTransport through ``UpstreamHTTP``), with no bus: the chunks it
sends, the Final or Failure it builds, and each try it reports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from schemas.chat import ChatBody, Message
from schemas.envelope import Deployment, Envelope, Privacy
from schemas.replies import Chunk
from services.providers.attempts import Try, WalkFailed
from services.providers.http import UpstreamHTTP
from services.providers.logged_answer import logged_answer
from services.providers.request_call import RequestCall

COMPLETION = (Path(__file__).parents[1] / "fixtures" / "openai" / "completion.json").read_bytes()


def dep(name: str) -> Deployment:
    return Deployment(
        name=name,
        provider="openai",
        base_url=f"http://{name}.test/v1",
        upstream_model="gpt-4o-mini",
        catalog_model="gpt-4o-mini",
    )


def envelope(*names: str, stream: bool = True, **fields: object) -> Envelope:
    now = time.time_ns()
    body = ChatBody(model="g", messages=[Message(role="user", content="Say hello to me")], stream=stream)
    return Envelope(
        reply="_INBOX.test",
        body=body,
        id="req-1",
        received_at_ns=now,
        deadline_ns=now + 30_000_000_000,
        candidates=[dep(n) for n in names],
        **fields,  # type: ignore[arg-type]
    )


def event(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    data = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def stream(*texts: str) -> list[bytes]:
    """A whole OpenAI stream: the role, each text, the finish, usage, [DONE]."""
    return [
        event({"role": "assistant", "content": ""}),
        *(event({"content": t}) for t in texts),
        event({}, finish="stop"),
        event(usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}),
        b"data: [DONE]\n\n",
    ]


class Recorder:
    """What the call hands the stage: the chunks it sends, the tries it reports."""

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.tries: list[tuple[str, int, bool]] = []
        self.in_flight: dict[str, int] = {}

    async def send(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    async def tried(self, t: Try, says_health: bool) -> None:
        self.tries.append((t.deployment.name, t.status, says_health))

    def call(self, env: Envelope, answer: Callable[[httpx.Request], httpx.Response]) -> RequestCall:
        client = UpstreamHTTP(httpx.MockTransport(answer))
        return RequestCall(env, client, self.send, self.tried, self.in_flight)

    def text(self) -> str:
        return "".join(d.content or "" for c in self.chunks for d in (c.delta, *c.more))


def sse(pieces: list[bytes]) -> httpx.Response:
    return httpx.Response(200, content=b"".join(pieces), headers={"content-type": "text/event-stream"})


async def test_a_streamed_answer_goes_out_as_numbered_chunks_then_the_final() -> None:
    rec = Recorder()
    call = rec.call(envelope("a", cache_key="k"), lambda request: sse(stream("Hel", "lo")))
    final = await call.final(await call.run())
    # role, two texts, the finish: one chunk each, numbered from 0; the Final after them
    assert [c.seq for c in rec.chunks] == [0, 1, 2, 3]
    assert final.seq == 4
    assert rec.text() == "Hello" and rec.chunks[-1].delta.finish_reason == "stop"
    assert (rec.chunks[0].deployment, rec.chunks[0].cache) == ("a", "miss")  # the first chunk only
    assert all(c.deployment == "" for c in rec.chunks[1:])
    assert (final.deployment, final.attempts, final.cache, final.finish_reason) == ("a", 1, "miss", "stop")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (9, 2)
    assert final.message is None  # it went out as chunks
    assert call.written is not None and call.written.content == "Hello"  # kept for the cache
    assert call.ttft_ns > 0
    assert rec.tries == [("a", 200, True)]
    assert rec.in_flight == {"a": 0}


async def test_deltas_of_one_read_travel_in_one_chunk_to_a_batching_requester() -> None:
    rec = Recorder()
    call = rec.call(envelope("a", batch_chunks=True), lambda request: sse(stream("Hel", "lo")))
    final = await call.final(await call.run())
    assert len(rec.chunks) == 1 and rec.chunks[0].seq == 0 and len(rec.chunks[0].more) == 3
    assert rec.text() == "Hello"
    assert final.seq == 1


async def test_a_call_cut_short_by_a_cancel_fails_billing_what_was_streamed() -> None:
    rec = Recorder()
    streamed = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for piece in stream("Hello", " there, my friend")[:3]:
            yield piece
        await asyncio.Event().wait()  # the upstream goes on thinking

    async def send(chunk: Chunk) -> None:
        await rec.send(chunk)
        if len(rec.chunks) == 3:
            streamed.set()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers={"content-type": "text/event-stream"})

    env = envelope("a", call_log_max_bytes=1000)
    call = RequestCall(env, UpstreamHTTP(httpx.MockTransport(answer)), send, rec.tried, rec.in_flight)
    running = asyncio.create_task(call.run())
    await streamed.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await running
    failure = await call.failure(cancelled.value, client_gone=True)
    assert (failure.code, failure.seq, failure.attempts, failure.deployment) == ("client_closed", 3, 1, "a")
    assert failure.usage is not None and failure.cost is not None
    assert failure.usage.prompt_tokens > 0 and failure.usage.completion_tokens >= 5  # "Hello there, my friend"
    assert failure.cost.total > 0
    # the cut try is reported, but says nothing of the deployment's health
    assert rec.tries == [("a", 499, False)]
    assert call.written is not None and call.written.content == "Hello there, my friend"
    assert json.loads(logged_answer(call, failure))["error"]["code"] == "client_closed"


async def test_masked_values_are_restored_in_the_deltas_and_kept_masked_for_the_cache() -> None:
    rec = Recorder()
    env = envelope("a", cache_key="k", privacy=Privacy(vault={"[EMAIL_1]": "ann@example.com"}))
    # The placeholder is split across two events, and the answer ends on what could start one.
    call = rec.call(env, lambda request: sse(stream("Write to [EMA", "IL_1] soon [E")))
    final = await call.final(await call.run())
    assert rec.text() == "Write to ann@example.com soon [E"
    assert not any("[EMA" in (d.content or "") for c in rec.chunks for d in (c.delta, *c.more))
    assert [c.seq for c in rec.chunks] == list(range(len(rec.chunks))) and final.seq == len(rec.chunks)
    assert rec.chunks[-1].delta.content == "[E"  # held back until the end, then sent before the Final
    assert call.written is not None and call.written.content == "Write to [EMAIL_1] soon [E"


async def test_a_walk_moves_to_the_second_deployment_when_the_first_fails() -> None:
    rec = Recorder()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            return httpx.Response(503, content=b'{"error": {"message": "busy"}}')
        return httpx.Response(200, content=COMPLETION)

    call = rec.call(envelope("a", "b", stream=False), answer)
    final = await call.final(await call.run())
    assert rec.tries == [("a", 503, True), ("b", 200, True)]
    assert (final.deployment, final.attempts, final.seq) == ("b", 2, 0)
    assert final.message is not None and final.message.content == "Hello! How can I assist you today?"
    assert rec.chunks == []
    assert rec.in_flight == {"a": 0, "b": 0}


async def test_a_walk_where_every_deployment_refuses_fails_billing_nothing() -> None:
    rec = Recorder()
    call = rec.call(envelope("a", "b"), lambda request: httpx.Response(429, content=b'{"error": {"message": "no"}}'))
    with pytest.raises(WalkFailed) as failed:
        await call.run()
    failure = await call.failure(failed.value)
    assert (failure.status, failure.deployment, failure.attempts, failure.seq) == (429, "b", 2, 0)
    assert failure.usage is None and failure.cost is None
    assert call.written is None
    assert rec.tries == [("a", 429, True), ("b", 429, True)]


async def test_a_passed_deadline_fails_as_an_upstream_timeout() -> None:
    rec = Recorder()

    async def body() -> AsyncIterator[bytes]:
        yield stream("Hi")[0]
        await asyncio.Event().wait()

    env = envelope("a")
    env.deadline_ns = time.time_ns() + 200_000_000
    call = rec.call(env, lambda request: httpx.Response(200, content=body()))
    with pytest.raises(TimeoutError) as late:
        await call.run()
    failure = await call.failure(late.value)
    assert (failure.status, failure.code) == (504, "upstream_timeout")
    assert rec.tries == [("a", 504, True)]  # a deadline says something of the deployment
