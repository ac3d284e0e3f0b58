"""The Anthropic-compatible ingress's translation: Anthropic request -> unified,
unified deltas -> Anthropic's stream events."""

from __future__ import annotations

import msgspec

from schemas.chat import Delta, Usage
from services.apis import anthropic_shapes as inbound
from services.providers.anthropic.types import ARequest


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            doc = msgspec.json.decode(data.removeprefix("data: "))
            assert name == f"event: {doc['type']}"
            out.append((doc["type"], doc))
    return out


def test_request_translation() -> None:
    req = msgspec.json.decode(
        msgspec.json.encode(
            {
                "model": "m",
                "max_tokens": 50,
                "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
                "stop_sequences": ["END"],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "see"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "thinking", "thinking": "hmm", "signature": "s"},
                            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
                            {"type": "text", "text": "thanks"},
                        ],
                    },
                ],
            }
        ),
        type=ARequest,
    )
    body = inbound.to_chat_body(req)
    assert [m.role for m in body.messages] == ["system", "user", "assistant", "tool", "user"]
    assert body.messages[0].content == "Be brief."
    assert msgspec.to_builtins(body.messages[1].content[1]) == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAA"},
    }
    assert body.messages[2].content is None  # thinking is not carried over
    assert msgspec.to_builtins(body.messages[2].tool_calls) == [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert (body.messages[3].tool_call_id, body.messages[3].content) == ("t1", "42")
    assert body.tool_choice == "required" and body.parallel_tool_calls is False
    assert body.stop == ["END"] and body.max_tokens == 50
    assert body.tools == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_stream_renderer_frames_text_and_tool_calls_in_blocks() -> None:
    r = inbound.StreamRenderer("rid", "m")
    raw = r.delta(Delta(role="assistant", content=""))
    raw += r.delta(Delta(content="Let me look."))
    raw += r.delta(
        msgspec.convert({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "f", "arguments": ""}}]}, Delta)
    )
    raw += r.delta(msgspec.convert({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}, Delta))
    raw += r.delta(msgspec.convert({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, Delta))
    raw += r.delta(
        msgspec.convert({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "g", "arguments": "{}"}}]}, Delta)
    )
    raw += r.end("tool_calls", Usage(prompt_tokens=30, cached_tokens=10, completion_tokens=7))
    evs = events(raw)
    assert [e[0] for e in evs] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert evs[0][1]["message"]["id"] == "msg_rid" and evs[0][1]["message"]["content"] == []
    assert [e[1]["index"] for e in evs if e[0] == "content_block_start"] == [0, 1, 2]
    assert evs[4][1]["content_block"] == {"type": "tool_use", "id": "c0", "name": "f", "input": {}}
    assert evs[11][1]["delta"]["stop_reason"] == "tool_use"
    assert evs[11][1]["usage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
    }


def test_errors_take_anthropic_types() -> None:
    assert msgspec.json.decode(inbound.error_body("rate_limit_error", "upstream_rate_limited", "slow down")) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    assert inbound.error_type("upstream_error", "upstream_overloaded") == "overloaded_error"
    assert inbound.error_type("server_error", "internal_error") == "api_error"
