"""Anthropic Messages as an upstream, against fixtures in its API reference's format."""

from __future__ import annotations

import contextlib

import httpx
import msgspec
import pytest

from schemas.chat import ChatBody, FunctionDef, ToolDef
from schemas.envelope import Deployment
from schemas.errors import ContextLengthExceeded, UpstreamOverloaded, UpstreamRateLimited
from services.providers.anthropic.chat import AnthropicChat, beta_headers, to_request
from services.providers.call import CallFailed, call_chat
from services.providers.http import UpstreamHTTP
from tests.adapters import assemble, call_with, fixture, message, sent_json

DEP = Deployment(
    name="c",
    provider="anthropic",
    base_url="https://api.anthropic.test",
    upstream_model="claude-sonnet-4-20250514",
    catalog_model="claude-sonnet-4-20250514",
)
TOOL = ToolDef(
    type="function", function=FunctionDef(name="get_weather", description="d", parameters={"type": "object"})
)
adapter = AnthropicChat()


def test_request_translation() -> None:
    body = ChatBody(
        model="alias",
        messages=[
            message(role="system", content="Be brief."),
            message(
                role="user",
                content=[
                    {"type": "text", "text": "What is here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                ],
            ),
            message(
                role="assistant",
                content=None,
                tool_calls=[
                    {
                        "id": "t1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "t2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            ),
            message(role="tool", tool_call_id="t1", content="cold"),
            message(role="tool", tool_call_id="t2", content="warm"),
        ],
        tools=[TOOL],
        tool_choice="required",
        stop="END",
        temperature=0.3,
        user="u-1",
    )
    req = adapter.build_request(DEP, body, "sk-ant", stream=True)
    assert req.url == "https://api.anthropic.test/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant" and req.headers["anthropic-version"] == "2023-06-01"
    sent = sent_json(req.content)
    assert sent["model"] == "claude-sonnet-4-20250514" and sent["stream"] is True
    assert sent["system"] == "Be brief."
    assert sent["max_tokens"] == 4096  # required by Anthropic; OpenAI callers may leave it out
    assert sent["stop_sequences"] == ["END"] and sent["temperature"] == 0.3
    assert sent["metadata"] == {"user_id": "u-1"}
    assert sent["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"}, "description": "d"}]
    assert sent["tool_choice"] == {"type": "any"}
    user, assistant, results = sent["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"},
    }
    assert [b["input"] for b in assistant["content"]] == [{"city": "Oslo"}, {"city": "Rome"}]
    # Both tool results in one user turn: Anthropic wants turns to alternate.
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "cold"},
            {"type": "tool_result", "tool_use_id": "t2", "content": "warm"},
        ],
    }


async def test_message_with_tool_use_and_cache_usage() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="weather?")])
    outcome, _, _ = await call_with(DEP, body, fixture("anthropic/message_tool_use.json"))
    assert outcome.message is not None
    assert outcome.message.content == "I'll check the current weather in San Francisco for you."
    (call,) = outcome.message.tool_calls or []
    assert call.id == "toolu_01A09q90qw90lq917835lq9" and call.function.name == "get_weather"
    assert call.function.arguments == '{"location":"San Francisco, CA","unit":"celsius"}'
    assert outcome.finish_reason == "tool_calls"
    u = outcome.usage
    # input_tokens excludes cache reads and writes; the unified prompt count includes them.
    assert (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens, u.completion_tokens) == (2620, 2048, 100, 91)
    # $3 in, $0.30 cached, $3.75 cache write, $15 out per Mtok
    assert outcome.cost.input == 472 * 3_000_000 + 100 * 3_750_000
    assert outcome.cost.cached_input == 2048 * 300_000 and outcome.cost.output == 91 * 15_000_000


async def test_stream_assembly_text_then_tool_call() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="weather?")], stream=True)
    outcome, deltas, _ = await call_with(DEP, body, fixture("anthropic/stream_tool_use.txt"), stream=True)
    text, calls, finish = assemble(deltas)
    assert text == "Okay, let's check the weather."
    assert calls == [
        {"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "arguments": {"location": "San Francisco, CA"}}
    ]
    assert finish == "tool_calls" and deltas[0].role == "assistant"
    # input from message_start, output from message_delta (cumulative)
    assert (outcome.usage.prompt_tokens, outcome.usage.cached_tokens, outcome.usage.completion_tokens) == (600, 128, 89)
    assert outcome.model == "claude-sonnet-4-20250514"


async def test_error_event_mid_stream_is_retryable_overload() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="hi")], stream=True)
    with pytest.raises(CallFailed) as info:
        await call_with(DEP, body, fixture("anthropic/stream_error.txt"), stream=True)
    assert isinstance(info.value.error, UpstreamOverloaded) and info.value.error.retryable


@pytest.mark.parametrize(
    ("status", "path", "kind", "retryable"),
    [
        (529, "anthropic/error_overloaded.json", UpstreamOverloaded, True),
        (400, "anthropic/error_too_long.json", ContextLengthExceeded, False),
        (429, "anthropic/error_overloaded.json", UpstreamRateLimited, True),
    ],
)
def test_error_mapping(status: int, path: str, kind: type, retryable: bool) -> None:
    err = adapter.map_error(status, fixture(path), {"retry-after": "3"})
    assert type(err) is kind and err.retryable is retryable
    assert "Overloaded" in err.message or "prompt is too long" in err.message


CLAUDE_CODE_BETAS = "claude-code-20250219, interleaved-thinking-2025-05-14, effort-2025-11-24"


async def _sent(dep: Deployment, body: ChatBody, answer: bytes, **options: object) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=answer)

    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        await call_chat(client, dep, body, **options)  # type: ignore[arg-type]
    return seen[0]


@pytest.mark.parametrize("raw", [None, b'{"model": "m", "max_tokens": 5, "messages": [], "thinking": {}}'])
async def test_the_callers_betas_reach_anthropic_as_written(raw: bytes | None) -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="hi")])
    answer = fixture("anthropic/message_tool_use.json")
    sent = await _sent(DEP, body, answer, raw=raw, anthropic_beta=CLAUDE_CODE_BETAS)
    assert sent.headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert "anthropic-beta" not in (await _sent(DEP, body, answer, raw=raw)).headers


async def test_no_betas_for_another_family_and_no_reasoning_effort_for_a_model_that_does_not_reason() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="hi")], reasoning_effort="high")
    answer = fixture("openai/completion.json")
    gpt = Deployment(name="o", provider="openai", base_url="http://o.test", upstream_model="m", catalog_model="gpt-4o")
    sent = await _sent(gpt, body, answer, anthropic_beta=CLAUDE_CODE_BETAS)
    assert "anthropic-beta" not in sent.headers and "reasoning_effort" not in sent_json(sent.content)
    reasoner = msgspec.structs.replace(gpt, catalog_model="o3")
    assert sent_json((await _sent(reasoner, body, answer)).content)["reasoning_effort"] == "high"


@pytest.mark.parametrize("betas", ["a\r\nx-evil: 1", "a;b", "x" * 1025, "a,,b"])
def test_a_header_that_is_not_beta_names_is_left_out(betas: str) -> None:
    assert beta_headers(betas) == {} and beta_headers("") == {}


def test_system_messages_anywhere_join_the_system_prompt_and_max_tokens_0_stays_0() -> None:
    body = ChatBody(
        model="x",
        max_tokens=0,
        messages=[
            message(role="system", content="Be brief."),
            message(role="user", content="hi"),
            message(role="system", content="Now be kind."),
            message(role="user", content="again"),
        ],
    )
    request = to_request(body, "up", stream=False)
    assert request.system == "Be brief.\n\nNow be kind." and request.max_tokens == 0
    assert [m.role for m in request.messages] == ["user"]


def test_stream_events_the_union_does_not_read_are_not_shown() -> None:
    from schemas.errors import UpstreamError
    from services.providers.anthropic.chat import AnthropicStream

    stream = AnthropicStream()
    start = '{"type":"message_start","message":{"id":"m","model":"claude-x","content":[],"usage":{"input_tokens":3}}}'
    assert stream.feed(start).delta.role == "assistant"  # type: ignore[union-attr]
    for unread in (
        '{"type":"ping"}',
        '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}',
        '{"type":"content_block_stop","index":0}',
        '{"type":"a_type_from_next_year","whatever":1}',
    ):
        event = stream.feed(unread)
        assert event is not None and event.delta is None and event.model == "claude-x", unread
    text = stream.feed('{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}')
    assert text is not None and text.delta is not None and text.delta.content == "Hi"
    with pytest.raises(UpstreamError):
        stream.feed('{"type":"message_start","message":{"model":"no id, content or usage"}}')
    with pytest.raises(UpstreamError):
        stream.feed("not json")
    assert stream.feed('{"type":"message_stop"}') is None
