"""OpenAI's Responses API: requests -> the unified request, unified replies ->
the response object and its events (checked against OpenAI's published
schemas, tests/fixtures/openai/openapi-sluice.json), and OpenAI's own
answers, whole and streamed, -> the unified result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from schemas.chat import (
    ChatBody,
    Delta,
    FilePart,
    FunctionCall,
    FunctionDelta,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamInvalidRequest, UpstreamRateLimited
from schemas.responses import (
    BuiltinChoice,
    FunctionCallItem,
    Item,
    ItemReference,
    KeptItem,
    MessageItem,
    OutputText,
    ResponsesRequest,
    decode_items,
    decode_request,
    encode_wire,
)
from services.apis import responses_shapes as shapes
from services.apis.base import decode_json
from services.apis.responses import native_body
from services.apis.responses_stream import ResponsesStream
from services.providers import passthrough
from services.providers.azure import responses as azure
from services.providers.openai import responses as upstream

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"


def any_of(node: Any) -> Any:
    """OpenAI's unions are ``oneOf`` with a ``discriminator`` (OpenAPI's, which
    JSON Schema ignores); without it a user message item is both an
    ``EasyInputMessage`` and an ``InputMessage``, and ``oneOf`` refuses it.
    Read as ``anyOf``, each member still checks its own ``type``."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [any_of(v) for v in node]
    return node


COMPONENTS = any_of(json.loads((FIXTURES / "openapi-sluice.json").read_text())["components"])
RESPONSE = jsonschema_rs.validator_for({"components": COMPONENTS, "$ref": "#/components/schemas/Response"})
EVENT = jsonschema_rs.validator_for({"components": COMPONENTS, "$ref": "#/components/schemas/ResponseStreamEvent"})
ITEM = jsonschema_rs.validator_for({"components": COMPONENTS, "$ref": "#/components/schemas/InputItem"})
REQUEST = jsonschema_rs.validator_for({"components": COMPONENTS, "$ref": "#/components/schemas/CreateResponse"})


def request(**fields: Any) -> ResponsesRequest:
    return decode_request(json.dumps({"model": "gpt", **fields}))


def body(**fields: Any) -> ChatBody:
    r = request(**fields)
    return shapes.to_chat_body(r, shapes.items_of(r.input))


def valid(validator: jsonschema_rs.Validator, doc: Any) -> None:
    errors = [f"{e.instance_path}: {e.message}"[:300] for e in validator.iter_errors(doc)]
    assert not errors, errors


def events(sse: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, each checked for its ``event:`` line naming its type."""
    found = []
    for block in sse.decode().split("\n\n"):
        if not block:
            continue
        kind, data = block.split("\n")
        doc = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {doc['type']}"
        found.append(doc)
    return found


# -- requests -> the unified request --------------------------------------------------


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    b = body(input="Tell me a story.", instructions="Be brief.", stream=True)
    assert b.messages == [Message(role="system", content="Be brief."), Message(role="user", content="Tell me a story.")]
    assert b.stream is True and b.model == "gpt"


def test_message_items_with_or_without_type_and_every_part() -> None:
    b = body(
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be kind."}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "https://x/cat.png", "detail": "high"},
                    {"type": "input_file", "file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"},
                    {"type": "input_file", "file_id": "file-1"},
                ],
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Un chat.", "annotations": [], "logprobs": []},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "No."}, {"type": "output_text", "text": "!"}],
            },
        ]
    )
    system, system2, user, assistant, refused = b.messages
    assert system == Message(role="system", content="Answer in French.")
    assert system2 == Message(role="system", content="Be kind.")
    assert user.role == "user" and isinstance(user.content, list)
    text, image, pdf, file_ref = user.content
    assert text == TextPart(text="What is this?")
    assert (
        isinstance(image, ImagePart) and image.image_url.url == "https://x/cat.png" and image.image_url.detail == "high"
    )
    assert isinstance(pdf, FilePart) and pdf.file.file_data and pdf.file.filename == "a.pdf"
    assert isinstance(file_ref, FilePart) and file_ref.file.file_id == "file-1"
    assert assistant == Message(role="assistant", content="Un chat.")
    assert refused.content == [RefusalPart(refusal="No."), TextPart(text="!")]


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    b = body(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two calls."}]},
            {"role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}', "id": "fc_2"},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "21C"}]},
            {"type": "function_call", "call_id": "c3", "name": "weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c3", "output": "?"},
        ]
    )
    user, assistant, out1, out2, again, out3 = b.messages
    assert user.content == "Weather in Paris and Rome?"
    assert assistant.role == "assistant" and assistant.content == "Let me look."
    assert [(c.id, c.function.name, c.function.arguments) for c in assistant.tool_calls or ()] == [
        ("c1", "weather", '{"city":"Paris"}'),
        ("c2", "weather", '{"city":"Rome"}'),
    ]
    assert out1 == Message(role="tool", tool_call_id="c1", content="18C")
    assert out2 == Message(role="tool", tool_call_id="c2", content="21C")
    assert again.role == "assistant" and again.content is None and [c.id for c in again.tool_calls or ()] == ["c3"]
    assert out3.tool_call_id == "c3"


def test_tools_tool_choice_format_and_the_parameters_carried() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    b = body(
        input="hi",
        tools=[
            {"type": "function", "name": "weather", "description": "Weather.", "parameters": schema, "strict": True},
            {"type": "function", "name": "noop", "parameters": None, "strict": None},
            {"type": "web_search"},
        ],
        tool_choice={"type": "function", "name": "weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "w", "schema": schema, "strict": True}, "verbosity": "low"},
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=256.0,
        temperature=0.2,
        top_p=0.9,
        user="u-1",
        store=False,
        metadata={"k": "v"},
    )
    # As the chat API has them, and encoded without the nulls.
    assert msgspec.to_builtins(b.tools) == [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Weather.", "parameters": schema, "strict": True},
        },
        {"type": "function", "function": {"name": "noop"}},
    ]
    assert msgspec.to_builtins(b.tool_choice) == {"type": "function", "function": {"name": "weather"}}
    assert b.parallel_tool_calls is False
    assert b.response_format == {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}}
    assert (b.reasoning_effort, b.max_completion_tokens, b.temperature, b.top_p, b.user) == (
        "low",
        256,
        0.2,
        0.9,
        "u-1",
    )
    assert b.stream is False


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", "required"),
        ("none", "none"),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "f"}, {"type": "mcp"}],
            },
            {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]},
            },
        ),
        ({"type": "file_search"}, None),
        ({"type": "mcp", "server_label": "deepwiki"}, None),
    ],
)
def test_tool_choices(choice: Any, expected: Any) -> None:
    b = body(input="hi", tools=[{"type": "function", "name": "f"}], tool_choice=choice)
    assert msgspec.to_builtins(b.tool_choice) == expected


def test_json_object_format_and_no_tool_choice_without_tools() -> None:
    b = body(input="hi", text={"format": {"type": "json_object"}}, tool_choice="required")
    assert b.response_format == {"type": "json_object"}
    assert b.tools is None and b.tool_choice is None
    assert body(input="hi", text={"format": {"type": "text"}}).response_format is None


def test_builtin_tools_unknown_items_and_unknown_fields_decode() -> None:
    tools = [
        {"type": "web_search", "search_context_size": "low"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "browser"},
        {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"},
        {"type": "custom", "name": "grammar", "format": {"type": "text"}},
        {"type": "local_shell"},
        {"type": "image_generation"},
        {"type": "some_tool_openai_adds_next_year", "x": 1},
    ]
    items = [
        {"role": "user", "content": "hi"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "q"}},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "deepwiki", "name": "ask", "arguments": "{}"},
        {"id": "msg_0"},
        {"type": "item_reference", "id": "msg_00"},
        {"role": "user", "content": [{"type": "input_image", "file_id": "file-9"}]},
        {"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]},
    ]
    raw = {"model": "gpt", "input": items, "tools": tools, "tool_choice": {"type": "code_interpreter"}}
    raw |= {"conversation": "conv_1", "context_management": [{"type": "compaction"}], "brand_new_field": {"a": 1}}
    r = decode_request(json.dumps(raw))
    assert shapes.builtin_tools(r) == [t["type"] for t in tools]
    assert isinstance(r.tool_choice, BuiltinChoice) and r.tool_choice.choice == {"type": "code_interpreter"}
    assert r.input is not None and isinstance(r.input[3], ItemReference) and isinstance(r.input[1], KeptItem)
    assert shapes.openai_only_items(r, shapes.items_of(r.input)) == [
        "input[1] (web_search_call)",
        "input[2] (mcp_call)",
        "input[3] (item_reference)",
        "input[4] (item_reference)",
        "input[5].content[0] (input_image by file_id)",
        "input[6].content[0] (input_file by file_url)",
    ]
    b = shapes.to_chat_body(r, shapes.items_of(r.input))
    assert [m.content for m in b.messages] == ["hi", [], []]
    assert b.tools is None
    # What the client sent comes back whole (what an OpenAI deployment would get).
    wire = json.loads(encode_wire(r))
    assert wire["tools"] == tools and wire["tool_choice"] == {"type": "code_interpreter"}
    assert wire["input"][1:3] == items[1:3]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            "Missing required parameter: 'input[0].call_id'.",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "a"},
                    {"type": "function_call_output", "call_id": "c9", "output": "x"},
                ]
            },
            "No tool call found for function call output with call_id c9.",
        ),
        ({"input": [{"type": "function_call", "call_id": "", "name": "f", "arguments": "{}"}]}, "'input[0].call_id'"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "'input[0].content[0]'"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "'input[0].content[0]'"),
        ({"input": []}, "Missing required parameter: 'input'."),
        ({}, "Missing required parameter: 'input'."),
    ],
)
def test_what_cannot_be_answered_is_the_callers_400(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        body(**fields)
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"model": "gpt", "input": [{"type": "function_call_output", "call_id": "c1"}]}, "$.input[0]"),
        ({"model": "gpt", "input": [{"type": "function_call", "call_id": "c1", "arguments": "{}"}]}, "$.input[0]"),
        ({"model": "gpt", "input": [{"role": "robot", "content": "x"}]}, "$.input[0].role"),
        ({"model": "gpt", "input": [{"role": "user", "content": [{"type": "input_video"}]}]}, "$.input[0].content[0]"),
        ({"model": "gpt", "tools": [{"type": "function"}]}, "$.tools[0]"),
        ({"model": "gpt", "max_output_tokens": 1.5}, "'max_output_tokens' must be an integer"),
        ({"input": "hi"}, "model"),
        ({"model": "gpt", "input": [{"content": "no role, no id"}]}, "$.input[0]"),
    ],
)
def test_malformed_bodies_name_the_field(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decode_json(decode_request, json.dumps(raw).encode())
    assert where in raised.value.message


def test_stored_items_come_first_and_errors_name_the_requests_own_items() -> None:
    stored: list[Item] = [
        MessageItem(role="user", content="Weather?"),
        FunctionCallItem(call_id="c1", name="weather", arguments="{}", id="fc_x_0", status="completed"),
    ]
    r = request(
        input=[{"type": "function_call_output", "call_id": "c1", "output": "18C"}], previous_response_id="resp_x"
    )
    b = shapes.to_chat_body(r, stored + shapes.items_of(r.input))
    assert [m.role for m in b.messages] == ["user", "assistant", "tool"]
    r = request(input=[{"role": "user", "content": "ok"}, {"type": "function_call_output", "output": "18C"}])
    with pytest.raises(InvalidRequest, match=r"'input\[1\]\.call_id'"):
        shapes.to_chat_body(r, stored + shapes.items_of(r.input))
    kept: list[Item] = [KeptItem(item={"type": "web_search_call", "id": "ws_1"}), *stored]
    r = request(input=[{"type": "mcp_call", "id": "mcp_1"}])
    assert shapes.openai_only_items(r, kept + shapes.items_of(r.input)) == [
        "previous_response_id (item 0) (web_search_call)",
        "input[0] (mcp_call)",
    ]


def test_the_request_fixture_is_openais_shape() -> None:
    valid(REQUEST, json.loads((FIXTURES / "responses_request.json").read_text()))


def test_items_round_trip_through_json_msgpack_and_openais_shape() -> None:
    raw = (FIXTURES / "responses_request.json").read_bytes()
    r = decode_request(raw)
    call = ToolCall(id="c2", function=FunctionCall(name="weather", arguments='{"city":"Rome"}'))
    answer = Message(role="assistant", content="18C.", reasoning="Looked it up.", tool_calls=[call])
    items: list[Item] = [*shapes.items_of(r.input), *shapes.output_items("resp_1", answer)]
    assert msgspec.json.decode(msgspec.json.encode(items), type=list[Item]) == items
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(items), type=list[Item]) == items
    wire = encode_wire(items)
    assert decode_items(wire) == items
    for doc in json.loads(wire):
        valid(ITEM, doc)
    # The client's items come back as it sent them (every field Sluice reads, and kept items whole).
    sent = json.loads(raw)["input"]
    assert [d for d in json.loads(wire) if d["type"] == "web_search_call"] == [
        d for d in sent if d.get("type") == "web_search_call"
    ]


# -- unified -> the response object ----------------------------------------------------

USAGE = Usage(prompt_tokens=100, completion_tokens=40, cached_tokens=64, reasoning_tokens=25)


def rendered(r: Any, req: ResponsesRequest) -> dict[str, Any]:
    doc = json.loads(shapes.encode_response(r, req))
    valid(RESPONSE, doc)
    return doc


def test_a_text_answer_is_a_completed_response_that_echoes_the_request() -> None:
    req = decode_request((FIXTURES / "responses_request.json").read_bytes())
    answer = Message(role="assistant", content="Rome: 21C.", reasoning="Asked for Rome.")
    doc = rendered(shapes.response("resp_abc", 1741477868, "gpt-4.1", req, answer, "stop", USAGE), req)
    assert (doc["id"], doc["object"], doc["status"], doc["model"]) == ("resp_abc", "response", "completed", "gpt-4.1")
    assert doc["output"] == [
        {"type": "reasoning", "id": "rs_abc_0", "summary": [{"type": "summary_text", "text": "Asked for Rome."}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Rome: 21C.", "annotations": [], "logprobs": []}],
            "id": "msg_abc_1",
            "status": "completed",
        },
    ]
    assert doc["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 25},
        "total_tokens": 140,
    }
    sent = json.loads((FIXTURES / "responses_request.json").read_text())
    for name in ("instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "metadata"):
        assert doc[name] == sent[name], name
    assert (doc["temperature"], doc["top_p"], doc["max_output_tokens"]) == (0.5, 1.0, 1024)
    assert (doc["store"], doc["background"], doc["previous_response_id"], doc["truncation"]) == (
        True,
        False,
        None,
        "disabled",
    )
    assert doc["error"] is None and doc["incomplete_details"] is None and "user" not in doc


def test_defaults_echoed_as_openai_does() -> None:
    req = request(input="hi", user="u-1", previous_response_id="resp_prev")
    doc = rendered(
        shapes.response("resp_1", 1, "gpt", req, Message(role="assistant", content="yo"), "stop", Usage()), req
    )
    assert doc["tools"] == [] and doc["tool_choice"] == "auto" and doc["parallel_tool_calls"] is True
    assert doc["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert doc["reasoning"] == {"effort": None, "summary": None}
    assert (doc["temperature"], doc["top_p"], doc["metadata"], doc["store"]) == (1.0, 1.0, {}, True)
    assert (doc["user"], doc["previous_response_id"]) == ("u-1", "resp_prev")


def test_function_calls_are_output_items_with_the_call_ids() -> None:
    req = request(input="weather?", tools=[{"type": "function", "name": "weather", "parameters": {}}])
    calls = [
        ToolCall(id="call_1", function=FunctionCall(name="weather", arguments='{"city":"Paris"}')),
        ToolCall(id="call_2", function=FunctionCall(name="weather", arguments='{"city":"Rome"}')),
    ]
    answer = Message(role="assistant", content="Checking.", tool_calls=calls)
    doc = rendered(shapes.response("resp_x", 1, "gpt", req, answer, "tool_calls", USAGE), req)
    assert doc["status"] == "completed"
    assert [o["type"] for o in doc["output"]] == ["message", "function_call", "function_call"]
    assert doc["output"][1] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city":"Paris"}',
        "id": "fc_x_1",
        "status": "completed",
    }
    assert doc["tools"] == [
        {"type": "function", "name": "weather", "parameters": {}, "strict": None, "description": None}
    ]


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_an_answer_cut_short_is_incomplete(finish: str, reason: str) -> None:
    req = request(input="a story", max_output_tokens=16)
    answer = Message(role="assistant", content="Once upon a")
    doc = rendered(shapes.response("resp_x", 1, "gpt", req, answer, finish, USAGE), req)
    assert doc["status"] == "incomplete" and doc["incomplete_details"] == {"reason": reason}
    assert doc["output"][0]["status"] == "incomplete"


def test_builtin_tools_are_echoed_as_sent() -> None:
    tools = [
        {"type": "web_search_preview", "search_context_size": "medium"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
    ]
    req = request(input="news?", tools=tools, tool_choice={"type": "file_search"})
    doc = rendered(shapes.response("resp_x", 1, "gpt", req, Message(role="assistant", content="."), "stop", USAGE), req)
    assert doc["tools"] == tools and doc["tool_choice"] == {"type": "file_search"}


def test_the_schemas_have_teeth() -> None:
    req = request(input="hi")
    doc = json.loads(shapes.encode_response(shapes.response("resp_x", 1, "gpt", req, None, "stop", None), req))
    valid(RESPONSE, doc)
    for name in ("tools", "tool_choice", "error", "object"):
        assert not RESPONSE.is_valid({k: v for k, v in doc.items() if k != name}), name
    assert not RESPONSE.is_valid(doc | {"status": "done"})
    assert not RESPONSE.is_valid(doc | {"usage": None})
    assert not EVENT.is_valid({"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "delta": "x"})


# -- unified deltas -> stream events ---------------------------------------------------


def stream(req: ResponsesRequest | None = None) -> ResponsesStream:
    return ResponsesStream("resp_s", 1741290958, "gpt", req or request(input="hi", stream=True))


def checked(sse: bytes, first_seq: int = 0) -> list[dict[str, Any]]:
    found = events(sse)
    for doc in found:
        valid(EVENT, doc)
    assert [e["sequence_number"] for e in found] == list(range(first_seq, first_seq + len(found)))
    return found


def call_delta(index: int, call_id: str | None = None, name: str | None = None, arguments: str = "") -> Delta:
    fn = FunctionDelta(name=name, arguments=arguments or None)
    return Delta(tool_calls=[ToolCallDelta(index=index, id=call_id, type="function" if call_id else None, function=fn)])


def kinds(found: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in found]


def test_a_streamed_text_answer() -> None:
    s = stream()
    sse = s.delta(Delta(role="assistant")) + s.delta(Delta(content="Hi")) + s.delta(Delta(content=" there!"))
    sse += s.delta(Delta(finish_reason="stop")) + s.end("stop", USAGE)
    found = checked(sse)
    assert kinds(found) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert found[0]["response"]["status"] == "in_progress" and found[0]["response"]["output"] == []
    assert found[2]["item"] == {
        "type": "message",
        "role": "assistant",
        "content": [],
        "id": "msg_s_0",
        "status": "in_progress",
    }
    assert [e["delta"] for e in found if e["type"] == "response.output_text.delta"] == ["Hi", " there!"]
    assert found[6]["text"] == "Hi there!" and found[7]["part"]["text"] == "Hi there!"
    assert {e.get("item_id") for e in found[3:8]} == {"msg_s_0"}
    done = found[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] == 140
    assert done["output"] == [found[8]["item"]]
    assert s.response is not None and msgspec.to_builtins(s.response) == done
    assert msgspec.json.decode(msgspec.json.encode(s.output()), type=list[Item]) == s.output()
    assert [msgspec.to_builtins(i) for i in s.output()] == done["output"]


def test_a_streamed_tool_call_answer() -> None:
    s = stream(request(input="weather?", tools=[{"type": "function", "name": "weather"}], stream=True))
    sse = s.delta(call_delta(0, "call_1", "weather")) + s.delta(call_delta(0, arguments='{"city":'))
    sse += s.delta(call_delta(0, arguments='"Paris"}'))
    sse += s.delta(
        Delta(
            tool_calls=[
                ToolCallDelta(
                    index=1, id="call_2", type="function", function=FunctionDelta(name="weather", arguments="{}")
                )
            ]
        )
    )
    sse += s.end("tool_calls", USAGE)
    found = checked(sse)
    assert kinds(found) == [
        "created",
        "in_progress",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    assert found[2]["item"] == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": "",
        "id": "fc_s_0",
        "status": "in_progress",
    }
    assert found[5] | {"sequence_number": 0} == {
        "type": "response.function_call_arguments.done",
        "item_id": "fc_s_0",
        "output_index": 0,
        "name": "weather",
        "arguments": '{"city":"Paris"}',
        "sequence_number": 0,
    }
    assert found[7]["output_index"] == 1 and found[7]["item"]["id"] == "fc_s_1"
    output = found[-1]["response"]["output"]
    assert [(o["call_id"], o["arguments"], o["status"]) for o in output] == [
        ("call_1", '{"city":"Paris"}', "completed"),
        ("call_2", "{}", "completed"),
    ]


def test_a_streamed_mixed_answer_closes_each_item_before_the_next() -> None:
    s = stream()
    sse = s.delta(Delta(reasoning="Think"))
    sse += s.delta(Delta(reasoning="ing."))
    sse += s.delta(Delta(content="Let me check."))
    sse += s.delta(call_delta(0, "call_1", "weather", '{"city":"Rome"}'))
    sse += s.delta(Delta(content="Done."))
    sse += s.end("tool_calls", USAGE)
    found = checked(sse)
    assert kinds(found) == [
        "created",
        "in_progress",
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "output_item.added",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    output = found[-1]["response"]["output"]
    assert [(o["type"], o["id"]) for o in output] == [
        ("reasoning", "rs_s_0"),
        ("message", "msg_s_1"),
        ("function_call", "fc_s_2"),
        ("message", "msg_s_3"),
    ]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "Thinking."}]
    # Each item's events name it, with its index in the output.
    added = [e for e in found if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["id"]) for e in added] == [(i, o["id"]) for i, o in enumerate(output)]


def test_a_streamed_answer_cut_short_is_incomplete() -> None:
    s = stream(request(input="a story", max_output_tokens=16, stream=True))
    sse = s.delta(Delta(content="Once upon a")) + s.end("length", USAGE)
    found = checked(sse)
    assert kinds(found)[-4:] == ["output_text.done", "content_part.done", "output_item.done", "incomplete"]
    assert found[-2]["item"]["status"] == "incomplete"
    done = found[-1]["response"]
    assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "max_output_tokens"}
    assert done["max_output_tokens"] == 16


def test_a_stream_that_fails_before_any_delta() -> None:
    s = stream()
    found = checked(s.error("rate_limit_error", "upstream_rate_limited", "Slow down."))
    assert kinds(found) == ["created", "in_progress", "failed"]
    failed = found[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "rate_limit_exceeded", "message": "Slow down."}
    assert s.response is not None and s.response.status == "failed"


def test_a_stream_that_fails_midway_keeps_its_sequence_and_output() -> None:
    s = stream()
    first = checked(s.delta(Delta(content="Once")))
    found = checked(s.error("upstream_error", "upstream_error", "Upstream returned 500."), first_seq=len(first))
    assert kinds(found) == ["failed"]
    failed = found[0]["response"]
    assert failed["error"] == {"code": "server_error", "message": "Upstream returned 500."}
    assert failed["output"][0]["content"][0]["text"] == "Once"


def test_a_stream_with_builtin_tools_echoes_them_as_sent() -> None:
    req = request(input="news?", tools=[{"type": "web_search", "search_context_size": "low"}], stream=True)
    found = checked(stream(req).end("stop", USAGE))
    assert kinds(found) == ["created", "in_progress", "completed"]
    assert found[-1]["response"]["tools"] == [{"type": "web_search", "search_context_size": "low"}]


# -- OpenAI's answers -> the unified result ----------------------------------------------


def test_parse_a_text_answer_with_reasoning() -> None:
    result = upstream.parse_response((FIXTURES / "responses_text.json").read_bytes())
    assert result.message.content == "The classic tongue twister..."
    assert result.message.reasoning == (
        "**Reading the tongue twister**\n\nThe user wants the classic one.\n\n**Answering**\n\nGive the usual answer."
    )
    assert result.finish_reason == "stop" and result.model == "o4-mini-2025-04-16"
    assert result.usage == Usage(prompt_tokens=81, completion_tokens=1035, cached_tokens=64, reasoning_tokens=832)


def test_parse_function_calls() -> None:
    result = upstream.parse_response((FIXTURES / "responses_function_call.json").read_bytes())
    assert result.finish_reason == "tool_calls" and result.message.content is None
    assert [(c.id, c.function.name, c.function.arguments) for c in result.message.tool_calls or ()] == [
        ("call_unLAR8MvFNptuiZK6K6HCy5k", "get_current_weather", '{"location":"Boston, MA","unit":"celsius"}'),
        ("call_9aW3pQ2nTkYwz0bA4hLd8mRe", "get_current_weather", '{"location":"Paris","unit":"celsius"}'),
    ]
    # No input_tokens_details in this answer (as in OpenAI's own example).
    assert result.usage == Usage(prompt_tokens=291, completion_tokens=23)


def test_parse_an_incomplete_answer_and_one_with_builtin_tool_items() -> None:
    cut = upstream.parse_response((FIXTURES / "responses_incomplete.json").read_bytes())
    assert cut.finish_reason == "length" and cut.message.content == "Once upon a time, in a quiet village nestled"
    searched = upstream.parse_response((FIXTURES / "responses_web_search.json").read_bytes())
    assert searched.finish_reason == "stop" and searched.message.tool_calls is None
    assert searched.message.content == "As of today, March 9, 2025, one notable positive news story..."


def test_parse_a_failed_answer_or_an_unreadable_one() -> None:
    with pytest.raises(UpstreamError, match="The server had an error"):
        upstream.parse_response((FIXTURES / "responses_failed.json").read_bytes())
    with pytest.raises(UpstreamError, match="unreadable"):
        upstream.parse_response(b'{"output": "not a list"}')
    with pytest.raises(UpstreamError, match="unreadable function_call item"):
        upstream.parse_response(b'{"status": "completed", "output": [{"type": "function_call", "call_id": 7}]}')


def sse_data(path: Path) -> list[str]:
    return [line.removeprefix("data: ") for line in path.read_text().splitlines() if line.startswith("data: ")]


def fed(data: list[str]) -> tuple[list[Delta], Usage | None, str]:
    parser = upstream.ResponsesStreamParser()
    deltas, usage, model = [], None, ""
    for payload in data:
        event = parser.feed(payload)
        assert event is not None
        deltas += [event.delta] if event.delta else []
        usage, model = event.usage or usage, event.model or model
    return deltas, usage, model


def test_parse_a_streamed_text_answer() -> None:
    deltas, usage, model = fed(sse_data(FIXTURES / "responses_stream_text.txt"))
    assert deltas[0] == Delta(role="assistant")
    assert "".join(d.content or "" for d in deltas) == "Hi there! How can I assist you today?"
    assert "".join(d.reasoning or "" for d in deltas) == "**Greeting**\n\nThe user says hi.\n\n**Reply**\n\nOffer help."
    assert deltas[-1] == Delta(finish_reason="stop")
    assert usage == Usage(prompt_tokens=37, completion_tokens=75, reasoning_tokens=64)
    assert model == "o4-mini-2025-04-16"


def test_parse_streamed_function_calls() -> None:
    deltas, usage, _ = fed(sse_data(FIXTURES / "responses_stream_function_call.txt"))
    calls = [c for d in deltas for c in d.tool_calls or ()]
    assert [(c.index, c.id, c.function.name if c.function else None) for c in calls if c.id] == [
        (0, "call_unLAR8MvFNptuiZK6K6HCy5k", "get_current_weather"),
        (1, "call_9aW3pQ2nTkYwz0bA4hLd8mRe", "get_current_weather"),
    ]
    joined = ["".join(c.function.arguments or "" for c in calls if c.index == i and c.function) for i in (0, 1)]
    assert joined == ['{"location":"Boston, MA","unit":"celsius"}', '{"location":"Paris","unit":"celsius"}']
    assert deltas[-1].finish_reason == "tool_calls"
    assert usage == Usage(prompt_tokens=291, completion_tokens=46, cached_tokens=256)


def test_arguments_that_come_only_with_the_done_event_are_not_lost() -> None:
    parser = upstream.ResponsesStreamParser()
    added = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "c1",
        "name": "f",
        "arguments": "",
        "status": "in_progress",
    }
    parser.feed(
        json.dumps({"type": "response.output_item.added", "output_index": 0, "item": added, "sequence_number": 0})
    )
    done = {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 0, "name": "f"}
    event = parser.feed(json.dumps(done | {"arguments": '{"a":1}', "sequence_number": 1}))
    assert event is not None and event.delta is not None and event.delta.tool_calls
    assert event.delta.tool_calls[0] == ToolCallDelta(index=0, function=FunctionDelta(arguments='{"a":1}'))


def test_a_failed_stream_raises_the_upstream_error() -> None:
    data = sse_data(FIXTURES / "responses_stream_failed.txt")
    parser = upstream.ResponsesStreamParser()
    text = []
    with pytest.raises(UpstreamError, match="invalid content") as raised:
        for payload in data:
            event = parser.feed(payload)
            text.append(event.delta.content if event and event.delta and event.delta.content else "")
    assert "".join(text) == "Once upon" and raised.value.retryable


@pytest.mark.parametrize(
    ("code", "error"),
    [("rate_limit_exceeded", UpstreamRateLimited), ("invalid_prompt", UpstreamInvalidRequest), (None, UpstreamError)],
)
def test_an_error_event_raises_by_its_code(code: str | None, error: type[GatewayError]) -> None:
    parser = upstream.ResponsesStreamParser()
    with pytest.raises(error):
        parser.feed(json.dumps({"type": "error", "code": code, "message": "no", "param": None, "sequence_number": 3}))


def test_unknown_events_are_skipped_and_unreadable_ones_refused() -> None:
    parser = upstream.ResponsesStreamParser()
    event = parser.feed(
        '{"type": "response.web_search_call.searching", "output_index": 0, "item_id": "ws", "sequence_number": 1}'
    )
    assert event is not None and event.delta is None
    assert parser.feed("[DONE]") is None
    with pytest.raises(UpstreamError):
        parser.feed("{not json")


def test_our_stream_read_back_by_the_parser_gives_the_same_answer() -> None:
    s = stream()
    sent = [
        Delta(reasoning="Hmm."),
        Delta(content="Hi."),
        call_delta(0, "call_1", "f", '{"a":'),
        call_delta(0, arguments="1}"),
    ]
    sse = b"".join(s.delta(d) for d in sent) + s.end("tool_calls", USAGE)
    deltas, usage, model = fed([e.split("\ndata: ", 1)[1] for e in sse.decode().split("\n\n") if e])
    assert "".join(d.reasoning or "" for d in deltas) == "Hmm." and "".join(d.content or "" for d in deltas) == "Hi."
    calls = [c for d in deltas for c in d.tool_calls or ()]
    assert calls[0].id == "call_1" and "".join(c.function.arguments or "" for c in calls if c.function) == '{"a":1}'
    assert deltas[-1].finish_reason == "tool_calls" and usage == USAGE and model == "gpt"
    final = shapes.response("resp_s", 1, "gpt", request(input="hi"), None, "tool_calls", USAGE, output=s.output())
    result = upstream.parse_response(shapes.encode_response(final, request(input="hi")))
    assert result.message.tool_calls == [ToolCall(id="call_1", function=FunctionCall(name="f", arguments='{"a":1}'))]
    assert (result.message.content, result.message.reasoning, result.finish_reason) == ("Hi.", "Hmm.", "tool_calls")


# -- the upstream request ------------------------------------------------------------------


def test_openai_and_azure_endpoints() -> None:
    openai = Deployment(name="o", provider="openai", base_url="https://api.openai.com/v1", upstream_model="gpt-4.1")
    assert upstream.endpoint(openai, "sk-1") == (
        "https://api.openai.com/v1/responses",
        {"content-type": "application/json", "authorization": "Bearer sk-1"},
    )
    az = Deployment(name="a", provider="azure", base_url="https://res.openai.azure.com", upstream_model="my-gpt")
    assert azure.endpoint(az, "k") == (
        "https://res.openai.azure.com/openai/v1/responses",
        {"content-type": "application/json", "api-key": "k"},
    )


def test_the_native_body_has_the_deployments_model_and_the_whole_conversation() -> None:
    dep = Deployment(name="o", provider="openai", base_url="https://api.openai.com/v1", upstream_model="gpt-4.1")
    raw = b'{"model": "alias", "input": "And Rome?", "previous_response_id": "resp_1", "brand_new": [1]}'
    sent = passthrough.request(dep, raw, "sk-1", stream=True, api="responses")
    assert sent.url == "https://api.openai.com/v1/responses"
    assert json.loads(sent.content) == {"model": "gpt-4.1", "input": "And Rome?", "brand_new": [1], "stream": True}
    items: list[Item] = [
        MessageItem(role="user", content="Paris?"),
        KeptItem(item={"type": "web_search_call", "id": "ws_1", "status": "completed"}),
        MessageItem(role="assistant", content=[OutputText(text="18C")], id="msg_1", status="completed"),
        MessageItem(role="user", content="And Rome?"),
    ]
    doc = json.loads(native_body(raw, items))
    assert "previous_response_id" not in doc and doc["brand_new"] == [1]
    assert doc["input"][1] == {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    assert decode_items(json.dumps(doc["input"])) == items


def test_the_openai_sdk_reads_our_stream_and_response() -> None:
    from openai.types.responses import Response as SDKResponse
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    s = stream(request(input="hi", tools=[{"type": "function", "name": "f", "parameters": {}}], stream=True))
    sent = [Delta(reasoning="Hmm."), Delta(content="Hi."), call_delta(0, "call_1", "f", '{"a":1}')]
    sse = b"".join(s.delta(d) for d in sent) + s.end("tool_calls", USAGE)
    read = TypeAdapter(ResponseStreamEvent)
    found = [read.validate_python(e) for e in events(sse)]
    assert [e.sequence_number for e in found] == list(range(len(found)))
    final = SDKResponse.model_validate(msgspec.to_builtins(s.response))
    assert final.output_text == "Hi." and [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 64
