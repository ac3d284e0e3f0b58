"""Cohere v2 chat and embed as an upstream, against fixtures in its API reference's format."""

from __future__ import annotations

import pytest

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamRateLimited
from services.providers.cohere.chat import CohereChat
from tests.adapters import assemble, call_with, fixture, message, sent_json, tool_choice, tools

DEP = Deployment(
    name="co",
    provider="cohere",
    base_url="https://api.cohere.test",
    upstream_model="command-a-03-2025",
    catalog_model="command-a-03-2025",
)
TOOLS_JSON = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
TOOLS = tools(*TOOLS_JSON)
adapter = CohereChat()


def test_request_translation() -> None:
    body = ChatBody(
        model="alias",
        messages=[
            message(role="developer", content="Be brief."),
            message(role="user", content="hi"),
            message(
                role="assistant",
                tool_calls=[{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
            ),
            message(role="tool", tool_call_id="c1", content="sunny"),
        ],
        tools=TOOLS,
        tool_choice="required",
        top_p=0.5,
        stop="END",
        max_tokens=20,
    )
    req = adapter.build_request(DEP, body, "co-key", stream=False)
    assert req.url == "https://api.cohere.test/v2/chat" and req.headers["authorization"] == "Bearer co-key"
    sent = sent_json(req.content)
    assert sent["model"] == "command-a-03-2025" and sent["stream"] is False
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert sent["p"] == 0.5 and sent["stop_sequences"] == ["END"] and sent["max_tokens"] == 20
    assert sent["tool_choice"] == "REQUIRED" and sent["tools"] == TOOLS_JSON
    with pytest.raises(InvalidRequest):  # Cohere cannot force one named tool
        forced = ChatBody(
            model="a",
            messages=body.messages,
            tools=TOOLS,
            tool_choice=tool_choice({"type": "function", "function": {"name": "get_weather"}}),
        )
        adapter.build_request(DEP, forced, None, stream=False)


async def test_response_uses_billed_units() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="what is an LLM?")])
    outcome, _, _ = await call_with(DEP, body, fixture("cohere/response.json"))
    assert outcome.message is not None
    assert outcome.message.content == "LLMs are neural networks trained on large amounts of text."
    assert outcome.finish_reason == "stop"
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (5, 12)
    assert outcome.cost.total == 5 * 2_500_000 + 12 * 10_000_000


async def test_response_tool_call() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="weather?")], tools=TOOLS)
    outcome, _, _ = await call_with(DEP, body, fixture("cohere/response_tool.json"))
    assert outcome.message is not None and outcome.finish_reason == "tool_calls"
    (call,) = outcome.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"Toronto"}')


@pytest.mark.parametrize(
    ("path", "text", "calls", "finish", "usage"),
    [
        ("cohere/stream_text.txt", "Hello world", [], "stop", (3, 2)),
        (
            "cohere/stream.txt",
            "",
            [{"id": "get_weather_nsz5zm3w56q3", "name": "get_weather", "arguments": {"location": "Toronto"}}],
            "tool_calls",
            (37, 28),
        ),
    ],
)
async def test_stream_assembly(path: str, text: str, calls: list, finish: str, usage: tuple) -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="hi")], stream=True)
    outcome, deltas, _ = await call_with(DEP, body, fixture(path), stream=True)
    assert assemble(deltas) == (text, calls, finish)
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == usage


def test_error_mapping() -> None:
    err = adapter.map_error(429, fixture("cohere/error_429.json"), {})
    assert isinstance(err, UpstreamRateLimited) and "Trial key" in err.message


def test_embeddings() -> None:
    dep = Deployment(name="e", provider="cohere", base_url="https://api.cohere.test", upstream_model="embed-v4.0")
    req = adapter.build_embeddings_request(dep, EmbeddingsBody(model="e", input=["hello", "goodbye"]), None)
    assert req.url == "https://api.cohere.test/v2/embed"
    assert sent_json(req.content) == {
        "model": "embed-v4.0",
        "texts": ["hello", "goodbye"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    result = adapter.parse_embeddings(fixture("cohere/embed.json"))
    assert len(result.vectors) == 2 and result.usage is not None and result.usage.prompt_tokens == 2
