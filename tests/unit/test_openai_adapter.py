"""The OpenAI adapter against fixtures in the API reference's format, and the
upstream call engine over httpx.MockTransport."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import msgspec
import pytest

from schemas.chat import ChatBody, Delta, Message, StreamOptions
from schemas.envelope import Deployment
from schemas.errors import (
    UpstreamError,
    UpstreamInvalidRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from services.providers.call import CallFailed, call_chat
from services.providers.http import UpstreamHTTP
from services.providers.openai.chat import OpenAIChat
from services.providers.sse import sse_data

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"
DEP = Deployment(
    name="d",
    provider="openai",
    base_url="http://up/v1",
    upstream_model="gpt-4o-mini",
    catalog_model="gpt-3.5-turbo",
    timeout_s=5,
)
BODY = ChatBody(model="alias", messages=[Message(role="user", content="Hi")], temperature=0.2)
adapter = OpenAIChat()


def test_request_uses_upstream_model_and_always_asks_for_stream_usage() -> None:
    body = msgspec.structs.replace(BODY, stream_options=StreamOptions(include_usage=False))
    req = adapter.build_request(DEP, body, "sk-up", stream=True)
    sent = msgspec.json.decode(req.content)
    assert req.url == "http://up/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-up"
    assert sent["model"] == "gpt-4o-mini" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2
    assert "tools" not in sent  # unset fields are not sent as nulls


def test_non_streamed_request_has_no_stream_options() -> None:
    sent = msgspec.json.decode(adapter.build_request(DEP, BODY, None, stream=False).content)
    assert not sent.get("stream", False) and "stream_options" not in sent


def test_completion_fixture_parses() -> None:
    result = adapter.parse_response((FIXTURES / "completion.json").read_bytes())
    assert result.message.content == "Hello! How can I assist you today?"
    assert result.finish_reason == "stop"
    assert result.usage is not None and (result.usage.prompt_tokens, result.usage.completion_tokens) == (19, 10)
    assert result.model == "gpt-4.1-2025-04-14"


def test_error_fixture_maps_to_rate_limit_with_retry_after() -> None:
    err = adapter.map_error(429, (FIXTURES / "error_429.json").read_bytes(), {"retry-after": "7"})
    assert isinstance(err, UpstreamRateLimited)
    assert err.status == 429 and err.retry_after_s == 7.0 and err.code == "rate_limit_exceeded"


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, UpstreamInvalidRequest, False),
        (404, UpstreamInvalidRequest, False),
        (500, UpstreamError, True),
        (502, UpstreamError, True),
    ],
)
def test_other_errors_keep_their_status(status: int, kind: type, retryable: bool) -> None:
    err = adapter.map_error(status, b"<html>oops</html>", {})
    assert type(err) is kind and err.status == status and "oops" in err.message
    assert err.retryable is retryable


async def chunks_of(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
async def test_sse_parser_is_indifferent_to_chunk_boundaries(size: int) -> None:
    raw = (FIXTURES / "stream.txt").read_bytes().replace(b"\n", b"\r\n") + b": comment\n\ndata: a\ndata: b\n\n"
    batches = [b async for b in sse_data(chunks_of(raw, size))]
    events = [e for batch in batches for e in batch]
    assert events[-2:] == ["[DONE]", "a\nb"]
    assert len(events) == 7  # five chunks, [DONE], and the two-line event
    # Events are handed on per read: all of them together when one read holds them.
    assert all(batches)
    if size >= len(raw):
        assert len(batches) == 1
    if size == 1:
        assert [len(b) for b in batches] == [1] * 7


def stream_transport(body: bytes, status: int = 200) -> UpstreamHTTP:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return UpstreamHTTP(httpx.MockTransport(handler))


async def test_streamed_call_hands_over_every_delta_in_order() -> None:
    seen: list[Delta] = []

    async def on_delta(delta: Delta, model: str) -> None:
        seen.append(delta)

    async with contextlib.aclosing(stream_transport((FIXTURES / "stream.txt").read_bytes())) as client:
        outcome = await call_chat(client, DEP, BODY, on_delta=on_delta)
    assert "".join(d.content or "" for d in seen) == "Hello there"
    assert seen[0].role == "assistant" and seen[-1].finish_reason == "stop"
    assert outcome.usage.source == "reported" and outcome.usage.completion_tokens == 2
    assert outcome.cost.total == 9 * 500_000 + 2 * 1_500_000
    assert outcome.model == "gpt-4o-mini" and outcome.message is None


async def test_stream_without_usage_is_counted() -> None:
    raw = b"".join(
        line + b"\n" for line in (FIXTURES / "stream.txt").read_bytes().split(b"\n") if b'"usage":{' not in line
    )

    async def on_delta(delta: Delta, model: str) -> None:
        pass

    async with contextlib.aclosing(stream_transport(raw)) as client:
        outcome = await call_chat(client, DEP, BODY, on_delta=on_delta)
    assert outcome.usage.source == "counted" and outcome.usage.completion_tokens == 2


async def test_stream_cut_before_the_end_is_an_upstream_error() -> None:
    raw = (FIXTURES / "stream.txt").read_bytes().split(b"\n\n")
    cut = b"\n\n".join(raw[:3]) + b"\n\n"

    async def on_delta(delta: Delta, model: str) -> None:
        pass

    async with contextlib.aclosing(stream_transport(cut)) as client:
        with pytest.raises(CallFailed) as info:
            await call_chat(client, DEP, BODY, on_delta=on_delta)
    assert isinstance(info.value.error, UpstreamError) and info.value.error.status == 502
    assert info.value.first_byte_ns > 0


async def test_connection_refused_and_timeout_map_to_502_and_504() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    for handler, kind in ((refuse, UpstreamUnreachable), (slow, UpstreamTimeout)):
        async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
            with pytest.raises(CallFailed) as info:
                await call_chat(client, DEP, BODY)
        assert isinstance(info.value.error, kind)


async def test_non_streamed_call_returns_the_message() -> None:
    body = (FIXTURES / "completion.json").read_bytes()
    mock = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    async with contextlib.aclosing(UpstreamHTTP(mock)) as c:
        outcome = await call_chat(c, DEP, BODY)
    assert outcome.message is not None and outcome.message.content == "Hello! How can I assist you today?"
    assert outcome.finish_reason == "stop"
    await asyncio.sleep(0)
