"""The mock upstream's OpenAI Responses shape (POST /v1/responses): every
answer and every stream event checked against OpenAI's own published schema
(tests/fixtures/openai/openapi-sluice.json), and read by the official SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest

from loadtest.mock_upstream.app import MockUpstream

SPEC = Path(__file__).parents[1] / "fixtures" / "openai" / "openapi-sluice.json"
_COMPONENTS = json.loads(SPEC.read_text())["components"]
_VALIDATORS: dict[str, Any] = {}

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "detail": {"type": "object", "properties": {"hourly": {"type": "boolean"}}, "required": ["hourly"]},
    },
    "required": ["city", "days", "units", "detail"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "web_search"},  # not a function: the mock calls the first *function* tool
    {"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER, "strict": True},
    {"type": "function", "name": "other", "parameters": {"type": "object", "properties": {}}, "strict": False},
]
STREAM_OF_TEXT = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def valid(schema: str, doc: Any) -> None:
    """``doc`` conforms to OpenAI's component ``schema``, or the test fails naming why."""
    if schema not in _VALIDATORS:
        _VALIDATORS[schema] = jsonschema_rs.Draft202012Validator(
            {"$ref": f"#/components/schemas/{schema}", "components": _COMPONENTS}
        )
    errors = [f"{e.instance_path}: {e.message}"[:300] for e in _VALIDATORS[schema].iter_errors(doc)]
    assert not errors, (schema, errors[:5])


def events(text: str) -> list[dict[str, Any]]:
    """The SSE events of a stream, each checked: its ``event:`` line names its type."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        doc = json.loads(lines["data"])
        assert lines["event"] == doc["type"]
        out.append(doc)
    return out


@pytest.fixture
def mock() -> MockUpstream:
    return MockUpstream()


async def post(mock: MockUpstream, body: dict[str, Any], path: str = "/v1/responses") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        return await client.post(path, json=body)


async def test_a_text_answer_is_a_response_object(mock: MockUpstream) -> None:
    r = await post(mock, {"model": "gpt-test", "input": "Say hello [mock:chunks=3] [mock:cached=2]"})
    assert r.status_code == 200
    body = r.json()
    valid("Response", body)
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == "gpt-test"
    assert body["id"].startswith("resp_") and body["error"] is None and body["incomplete_details"] is None
    [message] = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": "Sluice routes this", "annotations": [], "logprobs": []}
    ]
    usage = body["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 2
    assert usage["output_tokens"] == 3 and usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert mock.stats.requests == 1 and mock.stats.completed_requests == 1


async def test_input_is_read_as_the_chat_shape_reads_its_messages(mock: MockUpstream) -> None:
    items = [
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "Rain"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It rains.", "annotations": []}]},
        {"role": "user", "content": "and tomorrow? [mock:echo]"},
    ]
    r = await post(mock, {"model": "m", "instructions": "You are a mock.", "input": items})
    body = r.json()
    valid("Response", body)
    assert body["instructions"] == "You are a mock."
    assert body["output"][0]["content"][0]["text"] == "and tomorrow? [mock:echo]"
    # The same conversation in chat's shape counts the same prompt tokens.
    messages = [
        {"role": "system", "content": "You are a mock."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "call_1", "content": "Rain"},
        {"role": "assistant", "content": "It rains."},
        {"role": "user", "content": "and tomorrow? [mock:echo]"},
    ]
    chat = await post(mock, {"model": "m", "messages": messages}, "/v1/chat/completions")
    assert body["usage"]["input_tokens"] == chat.json()["usage"]["prompt_tokens"]


async def test_a_reasoning_summary_when_asked(mock: MockUpstream) -> None:
    req = {
        "model": "o-test",
        "input": "Think first [mock:reasoning=7] [mock:chunks=2]",
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
    }
    body = (await post(mock, req)).json()
    valid("Response", body)
    reasoning, message = body["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    [summary] = reasoning["summary"]
    assert summary["type"] == "summary_text" and summary["text"]
    assert reasoning["encrypted_content"]
    assert message["type"] == "message"
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 7
    assert body["usage"]["output_tokens"] == 7 + 2
    # Reasoning without a summary asked: the item, with an empty summary.
    body = (await post(mock, {**req, "reasoning": {"effort": "low"}, "include": []})).json()
    assert body["output"][0]["summary"] == [] and "encrypted_content" not in body["output"][0]


async def test_a_function_call_under_the_tool_directive(mock: MockUpstream) -> None:
    body = (await post(mock, {"model": "m", "input": "Oslo? [mock:tool]", "tools": TOOLS})).json()
    valid("Response", body)
    [call] = body["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert call["id"].startswith("fc_") and call["call_id"].startswith("call_")
    arguments = json.loads(call["arguments"])
    assert jsonschema_rs.Draft202012Validator(WEATHER).is_valid(arguments), arguments
    # Function tools are listed as the API lists them (strict defaults to true).
    assert body["tools"][1] == {**TOOLS[1]} and body["tools"][2]["strict"] is False
    # With echo, the first string argument carries the last message.
    echoed = (await post(mock, {"model": "m", "input": "Bergen [mock:tool] [mock:echo]", "tools": TOOLS})).json()
    assert json.loads(echoed["output"][0]["arguments"])["city"] == "Bergen [mock:tool] [mock:echo]"


async def test_structured_output_matches_the_schema_asked(mock: MockUpstream) -> None:
    fmt = {"type": "json_schema", "name": "weather", "schema": WEATHER, "strict": True}
    body = (await post(mock, {"model": "m", "input": "Oslo", "text": {"format": fmt}})).json()
    valid("Response", body)
    assert body["text"]["format"] == fmt
    text = body["output"][0]["content"][0]["text"]
    assert jsonschema_rs.Draft202012Validator(WEATHER).is_valid(json.loads(text))
    broken = (await post(mock, {"model": "m", "input": "Oslo [mock:bad_json]", "text": {"format": fmt}})).json()
    assert not jsonschema_rs.Draft202012Validator(WEATHER).is_valid(
        json.loads(broken["output"][0]["content"][0]["text"])
    )


async def test_the_stream_is_the_semantic_events_in_order(mock: MockUpstream) -> None:
    r = await post(mock, {"model": "m", "input": "Hi [mock:chunks=3]", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert "[DONE]" not in r.text
    stream = events(r.text)
    assert [e["type"] for e in stream] == STREAM_OF_TEXT
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    for e in stream:
        valid("ResponseStreamEvent", e)
    created, final = stream[0]["response"], stream[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and final["id"] == created["id"]
    deltas = "".join(e["delta"] for e in stream if e["type"] == "response.output_text.delta")
    assert deltas == "Sluice routes this" == stream[7]["text"]
    assert all(e["obfuscation"] for e in stream if e["type"] == "response.output_text.delta")
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == deltas
    assert final["usage"]["output_tokens"] == 3
    assert mock.stats.completed_streams == 1 and mock.stats.completed_requests == 0
    # Obfuscation can be turned off, as OpenAI allows.
    body = {"model": "m", "input": "Hi again", "stream": True, "stream_options": {"include_obfuscation": False}}
    assert all("obfuscation" not in e for e in events((await post(mock, body)).text))


async def test_a_streamed_reasoning_summary_and_function_call(mock: MockUpstream) -> None:
    req = {
        "model": "m",
        "input": "Oslo? [mock:tool] [mock:reasoning=4]",
        "tools": TOOLS,
        "reasoning": {"summary": "detailed"},
        "stream": True,
    }
    stream = events((await post(mock, req)).text)
    kinds = [e["type"] for e in stream]
    summary_deltas = kinds.count("response.reasoning_summary_text.delta")
    argument_deltas = kinds.count("response.function_call_arguments.delta")
    assert summary_deltas > 1 and argument_deltas > 1
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * summary_deltas,
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        *["response.function_call_arguments.delta"] * argument_deltas,
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    for e in stream:
        valid("ResponseStreamEvent", e)
    summary = "".join(e["delta"] for e in stream if e["type"] == "response.reasoning_summary_text.delta")
    arguments = "".join(e["delta"] for e in stream if e["type"] == "response.function_call_arguments.delta")
    final = stream[-1]["response"]
    assert final["output"][0]["summary"] == [{"type": "summary_text", "text": summary}]
    assert final["output"][1]["arguments"] == arguments and final["output"][1]["name"] == "get_weather"
    assert [e["output_index"] for e in stream if e["type"].startswith("response.output_item")] == [0, 0, 1, 1]


async def test_max_output_tokens_cuts_the_answer(mock: MockUpstream) -> None:
    req = {"model": "m", "input": "Long [mock:chunks=30] [mock:reasoning=6]", "max_output_tokens": 20}
    body = (await post(mock, req)).json()
    valid("Response", body)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["max_output_tokens"] == 20
    message = body["output"][-1]
    assert message["status"] == "incomplete" and len(message["content"][0]["text"].split()) == 14
    assert body["usage"]["output_tokens"] == 20 and body["usage"]["output_tokens_details"]["reasoning_tokens"] == 6
    stream = events(
        (await post(mock, {**req, "input": "Long too [mock:chunks=30] [mock:reasoning=6]", "stream": True})).text
    )
    for e in stream:
        valid("ResponseStreamEvent", e)
    assert stream[-1]["type"] == "response.incomplete" and stream[-1]["response"]["status"] == "incomplete"
    assert [e["type"] for e in stream].count("response.output_text.delta") == 14
    # A limit that leaves no room after the reasoning: the reasoning item alone.
    body = (await post(mock, {**req, "input": "Think [mock:reasoning=40]"})).json()
    assert [item["type"] for item in body["output"]] == ["reasoning"] and body["status"] == "incomplete"
    # Under the answer's length, nothing is cut.
    body = (await post(mock, {**req, "input": "Short [mock:chunks=5]"})).json()
    assert body["status"] == "completed" and body["incomplete_details"] is None
    # Below OpenAI's floor of 16: its 400.
    r = await post(mock, {**req, "max_output_tokens": 8})
    assert r.status_code == 400
    valid("ErrorResponse", r.json())
    assert r.json()["error"]["code"] == "integer_below_min_value" and r.json()["error"]["param"] == "max_output_tokens"


async def test_previous_response_id_is_refused_as_unknown(mock: MockUpstream) -> None:
    r = await post(mock, {"model": "m", "input": "Go on", "previous_response_id": "resp_abc123"})
    assert r.status_code == 400
    valid("ErrorResponse", r.json())
    assert r.json() == {
        "error": {
            "message": "Previous response with id 'resp_abc123' not found.",
            "type": "invalid_request_error",
            "param": "previous_response_id",
            "code": "previous_response_not_found",
        }
    }
    assert mock.stats.requests == 1 and mock.stats.completed_requests == 0


@pytest.mark.parametrize("status", [400, 401, 429, 500, 503])
async def test_errors_in_openai_shape(mock: MockUpstream, status: int) -> None:
    r = await post(mock, {"model": "m", "input": f"Fail [mock:status={status}]"})
    assert r.status_code == status
    valid("ErrorResponse", r.json())
    assert ("retry-after" in r.headers) == (status == 429)
    assert mock.stats.completed_requests == 0


@pytest.mark.parametrize("body", [{"model": "m"}, {"model": "m", "input": 7}, {"model": "m", "input": ["text"]}])
async def test_a_request_it_cannot_read_is_a_400(mock: MockUpstream, body: dict[str, Any]) -> None:
    r = await post(mock, body)
    assert r.status_code == 400
    valid("ErrorResponse", r.json())


@pytest.mark.parametrize("path", ["/@primary/v1/responses", "/openai/v1/responses", "/openai/responses?api-version=x"])
async def test_named_upstreams_and_azure_paths(mock: MockUpstream, path: str) -> None:
    r = await post(mock, {"model": "m", "input": f"Hello via {path}"}, path)
    assert r.status_code == 200 and r.json()["object"] == "response"
    assert mock.stats.by_upstream == ({"primary": 1} if path.startswith("/@") else {})


async def test_a_named_upstreams_behaviour_applies(mock: MockUpstream) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        await client.put("/mock/upstreams/down", json={"directives": "[mock:status=503]"})
        r = await client.post("/@down/v1/responses", json={"model": "m", "input": "Hi"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"


async def test_a_request_sent_twice_counts_as_repeated(mock: MockUpstream) -> None:
    body = {"model": "m", "input": "Only once, please"}
    await post(mock, body)
    await post(mock, body)
    assert mock.stats.repeated == 1 and mock.stats.requests == 2


async def drive(mock: MockUpstream, body: dict[str, Any], leave_after: int | None = None) -> list[bytes]:
    """The app called as a server would; the client leaves after ``leave_after`` body writes."""
    raw = json.dumps(body).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/responses", "query_string": b"", "headers": []}
    sent: list[bytes] = []
    gone = asyncio.Event()
    arrived = False

    async def receive() -> dict[str, Any]:
        nonlocal arrived
        if not arrived:
            arrived = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.body":
            sent.append(msg["body"])
            if leave_after is not None and len(sent) >= leave_after:
                gone.set()

    await mock(scope, receive, send)
    return sent


async def test_a_stream_left_by_the_client_counts_as_cancelled(mock: MockUpstream) -> None:
    await drive(mock, {"model": "m", "input": "Slow [mock:chunk_ms=20]", "stream": True}, leave_after=2)
    assert mock.stats.cancelled_streams == 1 and mock.stats.completed_streams == 0
    assert mock.stats.active_streams == 0 and mock.stats.active_requests == 0


async def test_cut_after_drops_the_connection_mid_stream(mock: MockUpstream) -> None:
    with pytest.raises(ConnectionAbortedError):
        await drive(mock, {"model": "m", "input": "Cut [mock:cut_after=2]", "stream": True})
    assert mock.stats.completed_streams == 0


async def test_no_usage_and_zero_usage(mock: MockUpstream) -> None:
    body = (await post(mock, {"model": "m", "input": "Hi [mock:no_usage]"})).json()
    valid("Response", body)
    assert "usage" not in body
    usage = (await post(mock, {"model": "m", "input": "Hi [mock:zero_usage]"})).json()["usage"]
    assert usage["input_tokens"] == usage["output_tokens"] == usage["total_tokens"] == 0


def sdk(mock: MockUpstream, prefix: str = "") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-mock",
        base_url=f"http://mock{prefix}/v1",
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(mock)),
        max_retries=0,
    )


async def test_the_openai_sdk_reads_the_answers(mock: MockUpstream) -> None:
    async with sdk(mock) as client:
        text = await client.responses.create(
            model="m", input="Hello [mock:chunks=4]", reasoning={"effort": "low", "summary": "auto"}
        )
        assert text.status == "completed" and text.output_text == "Sluice routes this answer"
        assert text.output[0].type == "reasoning" and text.output[0].summary[0].text
        assert text.usage is not None and text.usage.input_tokens_details.cached_tokens == 0

        call = await client.responses.create(model="m", input="Oslo [mock:tool]", tools=TOOLS)
        [item] = call.output
        assert item.type == "function_call" and item.name == "get_weather"
        assert set(json.loads(item.arguments)) == set(WEATHER["properties"])

        streamed = await client.responses.create(model="m", input="Hi [mock:chunks=3]", stream=True)
        kinds = [event.type async for event in streamed]
        assert kinds == STREAM_OF_TEXT

        cut = await client.responses.create(model="m", input="Long [mock:chunks=40]", max_output_tokens=16)
        assert (
            cut.status == "incomplete"
            and cut.incomplete_details
            and cut.incomplete_details.reason == "max_output_tokens"
        )

        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="m", input="More", previous_response_id="resp_gone")
        assert refused.value.code == "previous_response_not_found"


async def test_the_openai_sdk_streams_a_function_call(mock: MockUpstream) -> None:
    async with sdk(mock, "/@named") as client:
        async with client.responses.stream(
            model="m", input="Oslo [mock:tool] [mock:reasoning=3]", tools=TOOLS, reasoning={"summary": "auto"}
        ) as stream:
            deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
            final = await stream.get_final_response()
        call = final.output[-1]
        assert call.type == "function_call" and call.arguments == "".join(deltas)
        assert call.parsed_arguments == json.loads(call.arguments)  # the tool is strict: the SDK parses them
        async with client.responses.stream(model="m", input="Hello there [mock:chunks=5]") as stream:
            text = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()
        assert final.output_text == "".join(text) == "Sluice routes this answer through"
    assert mock.stats.by_upstream == {"named": 2} and mock.stats.completed_streams == 2
