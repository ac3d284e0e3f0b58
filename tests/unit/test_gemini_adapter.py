"""Gemini generateContent / streamGenerateContent as an upstream, against
fixtures in its API reference's format."""

from __future__ import annotations

import pytest

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Deployment
from schemas.errors import ContentFiltered, ContextLengthExceeded, UpstreamAuthFailed, UpstreamOverloaded
from services.providers.call import CallFailed
from services.providers.gemini.chat import GeminiChat
from tests.adapters import assemble, call_with, fixture, message, sent_json, tool_choice, tools

DEP = Deployment(
    name="g",
    provider="gemini",
    base_url="https://generativelanguage.test",
    upstream_model="gemini-2.5-flash",
    catalog_model="gemini-2.5-flash",
)
adapter = GeminiChat()


def test_request_translation() -> None:
    body = ChatBody(
        model="alias",
        messages=[
            message(role="system", content="Be brief."),
            message(role="user", content="Weather in Oslo?"),
            message(
                role="assistant",
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            ),
            message(role="tool", tool_call_id="c1", content='{"temp": -3}'),
        ],
        tools=tools({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}),
        tool_choice=tool_choice({"type": "function", "function": {"name": "get_weather"}}),
        max_completion_tokens=50,
        stop=["END"],
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
    )
    req = adapter.build_request(DEP, body, "g-key", stream=True)
    assert req.url == "https://generativelanguage.test/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert req.headers["x-goog-api-key"] == "g-key"
    sent = sent_json(req.content)
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]
    # A function result names its function (Gemini has no call ids): found from the call.
    assert sent["contents"][2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp": -3}}}]
    assert sent["tools"] == [
        {"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {"type": "object"}}]}
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert sent["generationConfig"] == {
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    plain = adapter.build_request(
        DEP, ChatBody(model="a", messages=[message(role="user", content="x")]), None, stream=False
    )
    assert plain.url.endswith("/models/gemini-2.5-flash:generateContent") and "x-goog-api-key" not in plain.headers


async def test_response_text_and_thinking_usage() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="explain AI")])
    outcome, _, _ = await call_with(DEP, body, fixture("gemini/response.json"))
    assert (
        outcome.message is not None and outcome.message.content == "AI learns patterns from data to make predictions."
    )
    assert outcome.finish_reason == "stop"
    u = outcome.usage
    # Thinking tokens are billed as output but reported apart from candidatesTokenCount.
    assert (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cached_tokens) == (8, 1172, 1163, 4)
    assert outcome.cost.output == 1172 * 2_500_000 and outcome.cost.cached_input == 4 * 75_000


async def test_response_function_call() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="weather?")])
    outcome, _, _ = await call_with(DEP, body, fixture("gemini/response_function_call.json"))
    assert outcome.message is not None and outcome.message.content is None
    (call,) = outcome.message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"location":"Boston, MA"}') and call.id
    assert outcome.finish_reason == "tool_calls"


async def test_stream_assembly_and_cumulative_usage() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="sky?")], stream=True)
    outcome, deltas, request = await call_with(DEP, body, fixture("gemini/stream.txt"), stream=True)
    assert "alt=sse" in str(request.url)
    text, calls, finish = assemble(deltas)
    assert (text, calls, finish) == ("The sky is blue.", [], "stop")
    assert deltas[0].role == "assistant"
    # Each chunk repeats the running totals: the last one counts, thinking included.
    assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens, outcome.usage.reasoning_tokens) == (6, 29, 24)


async def test_blocked_prompt_is_a_content_filter_error() -> None:
    body = ChatBody(model="x", messages=[message(role="user", content="bad")])
    with pytest.raises(CallFailed) as info:
        await call_with(DEP, body, fixture("gemini/blocked.json"))
    assert isinstance(info.value.error, ContentFiltered) and info.value.error.status == 400
    assert "SAFETY" in info.value.error.message and not info.value.error.retryable


def test_tools_declare_their_json_schema_whole() -> None:
    """A strict tool's schema (additionalProperties, nested objects, as Codex and the Agents SDK
    send) goes as parametersJsonSchema: Gemini's ``parameters`` refuses additionalProperties (400
    "Unknown name") and an object without properties. A function without parameters declares none."""
    strict = {
        "type": "object",
        "properties": {
            "cmd": {"type": "string"},
            "env": {"type": "object", "properties": {"k": {"type": "string"}}, "additionalProperties": False},
        },
        "required": ["cmd", "env"],
        "additionalProperties": False,
    }
    body = ChatBody(
        model="alias",
        messages=[message(role="user", content="Run it")],
        tools=tools(
            {"type": "function", "function": {"name": "exec_command", "description": "Runs", "parameters": strict}},
            {"type": "function", "function": {"name": "get_goal", "parameters": {}}},
            {"type": "function", "function": {"name": "now"}},
        ),
    )
    sent = sent_json(adapter.build_request(DEP, body, None, stream=False).content)
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {"name": "exec_command", "description": "Runs", "parametersJsonSchema": strict},
                {"name": "get_goal"},
                {"name": "now"},
            ]
        }
    ]


def test_an_allowed_tools_choice_leaves_the_choice_to_the_model() -> None:
    """Gemini is not told of an allowed_tools choice (nor is Anthropic): the model picks among all the tools."""
    body = ChatBody(
        model="alias",
        messages=[message(role="user", content="hi")],
        tools=tools({"type": "function", "function": {"name": "f"}}),
        tool_choice=tool_choice(
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]},
            }
        ),
    )
    sent = sent_json(adapter.build_request(DEP, body, None, stream=False).content)
    assert sent["tools"] == [{"functionDeclarations": [{"name": "f"}]}] and "toolConfig" not in sent


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, fixture("gemini/error_key.json"), UpstreamAuthFailed),
        (400, fixture("gemini/error_too_long.json"), ContextLengthExceeded),
        (
            503,
            b'{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}',
            UpstreamOverloaded,
        ),
    ],
)
def test_error_mapping(status: int, body: bytes, kind: type) -> None:
    assert type(adapter.map_error(status, body, {})) is kind


def test_embeddings_translation() -> None:
    dep = Deployment(name="e", provider="gemini", base_url="https://g.test", upstream_model="gemini-embedding-001")
    req = adapter.build_embeddings_request(dep, EmbeddingsBody(model="e", input=["a", "b"], dimensions=3), "k")
    assert req.url == "https://g.test/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent_json(req.content) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3},
        ]
    }
    result = adapter.parse_embeddings(fixture("gemini/embeddings.json"))
    assert result.vectors[0] == [0.013168523, -0.008711934, -0.046782676] and result.usage is None
