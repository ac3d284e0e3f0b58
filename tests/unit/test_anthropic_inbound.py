"""The Anthropic-compatible ingress's translation: Anthropic request -> unified,
unified deltas -> Anthropic's stream events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from schemas.chat import Delta, Usage
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest
from services.apis import anthropic_shapes as inbound
from services.apis import messages
from services.providers.anthropic.types import ARequest
from services.providers.registry import provider


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
    body = inbound.to_chat_body(req).body
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
    assert msgspec.to_builtins(body.tools) == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]


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


# A body with every field of Claude Code 2.1's requests that Sluice's decoding
# refused or lost, written from Anthropic's API reference (anthropic-sdk-python's
# MessageCreateParams, MessageParam, ToolUnionParam, beta context management);
# the requests captured in tests/fixtures/clients/ join it.
CLAUDE_CODE_BETAS = (
    "claude-code-20250219, interleaved-thinking-2025-05-14, context-management-2025-06-27, "
    "mid-conversation-tool-changes-2026-07-01, thinking-token-count-2026-05-13, advanced-tool-use-2025-11-20, "
    "effort-2025-11-24"
)
FIXTURES = Path(__file__).parents[1] / "fixtures"
CLAUDE_CODE_BODY: dict[str, Any] = json.loads((FIXTURES / "anthropic" / "request_every_field.json").read_text())
CAPTURED = sorted((FIXTURES / "clients").glob("claude_code*.json"))


def _claude_code_requests() -> list[tuple[dict[str, Any], str]]:
    """(body, anthropic-beta) of every Messages request Claude Code was seen
    sending (tests/fixtures/clients/README.md), and of the body written here."""
    out = [(CLAUDE_CODE_BODY, CLAUDE_CODE_BETAS)]
    for path in CAPTURED:
        doc = json.loads(path.read_text())
        if doc.get("method") == "POST" and doc.get("path", "").partition("?")[0] == "/v1/messages":
            out.append((doc["body"], doc["headers"].get("anthropic-beta", "")))
    return out


@pytest.mark.parametrize(("body", "betas"), _claude_code_requests())
def test_claude_code_requests_are_read_and_kept_whole(body: dict[str, Any], betas: str) -> None:
    parsed = messages.parse(json.dumps(body).encode())
    # Its own body goes to an Anthropic deployment, unchanged but for model and stream.
    assert parsed.raw and json.loads(parsed.raw) == body
    assert parsed.body is not None and parsed.body.max_tokens == body["max_tokens"]
    assert parsed.body.reasoning_effort == "high" and "context_management" in parsed.dropped
    assert messages.anthropic_beta(lambda name: betas if name == b"anthropic-beta" else None) == betas


def test_the_captured_requests_are_here() -> None:
    assert len(_claude_code_requests()) >= 5  # the one written here and four captured


def test_what_the_unified_request_leaves_out_is_named() -> None:
    parsed = messages.parse(json.dumps(CLAUDE_CODE_BODY).encode())
    assert parsed.dropped == [
        "context_management",
        "content:thinking",
        "content:redacted_thinking",
        "content:server_tool_use",
        "content:web_search_tool_result",
        "content:tool_addition",
        "tools[3]:web_search_20250305",
        "tools[4]:tool_search_tool_regex_20251119",
    ]
    body = parsed.body
    assert body is not None and body.reasoning_effort == "high" and body.user == "user_abc_account_def_session_ghi"
    assert [t.function.name for t in body.tools or () if t.function] == ["Bash", "Read", "mcp__docs__search"]
    # System messages keep their place; a tool result still follows its call.
    assert [(m.role, m.content) for m in body.messages if m.role != "assistant"] == [
        ("system", "You are Claude Code. Help with software tasks."),
        ("user", "<system-reminder>context</system-reminder>List the files."),
        ("system", "The user prefers short answers."),
        ("tool", "a.txt"),
        ("system", "Mind the tool results."),
        ("system", "Read is available now."),
        ("user", "Summarise."),
    ]
    assert [m.role for m in body.messages][3:5] == ["assistant", "tool"]


def test_a_plain_request_keeps_no_body_and_drops_nothing() -> None:
    parsed = messages.parse(b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}')
    assert parsed.raw == b"" and parsed.dropped == []


@pytest.mark.parametrize(
    ("fields", "effort", "dropped"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low", []),
        ({"thinking": {"type": "enabled", "budget_tokens": 3000}}, "medium", []),
        ({"thinking": {"type": "enabled", "budget_tokens": 31999, "display": "summarized"}}, "high", []),
        ({"thinking": {"type": "adaptive"}}, None, []),
        ({"thinking": {"type": "disabled"}}, None, []),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "high", []),
        ({"output_config": {"effort": "low"}}, "low", []),
        ({"output_config": {"effort": "ludicrous"}}, None, ["output_config.effort"]),
        ({"thinking": {"type": "someday"}}, None, ["thinking"]),
        ({"output_config": {"format": {"type": "json_schema", "schema": {}}}}, None, ["output_config.format"]),
        ({"top_k": 5, "service_tier": "auto", "speed": "fast"}, None, ["service_tier", "speed", "top_k"]),
    ],
)
def test_thinking_and_effort_become_a_reasoning_effort(fields: dict, effort: str | None, dropped: list) -> None:
    body = {"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}], **fields}
    parsed = messages.parse(json.dumps(body).encode())
    assert parsed.body is not None and parsed.body.reasoning_effort == effort
    assert parsed.dropped == dropped and parsed.raw  # an Anthropic deployment gets them all


@pytest.mark.parametrize("family", ["openai", "azure", "gemini", "mistral", "cohere", "anthropic"])
def test_every_family_builds_its_request_from_a_claude_code_body(family: str) -> None:
    parsed = messages.parse(json.dumps(CLAUDE_CODE_BODY).encode())
    assert parsed.body is not None
    dep = Deployment(name="d", provider=family, base_url="http://u.test", upstream_model="up", api_version="v")
    sent = msgspec.json.decode(provider(family).chat.build_request(dep, parsed.body, "k", stream=True).content)
    if family in ("openai", "azure"):
        assert [m["role"] for m in sent["messages"]] == [
            *("system", "user", "system", "assistant", "tool", "system", "system", "user")
        ]
        assert sent["reasoning_effort"] == "high" and len(sent["tools"]) == 3
    if family == "gemini":
        assert sent["systemInstruction"]["parts"][0]["text"].endswith(
            "The user prefers short answers.\n\nMind the tool results.\n\nRead is available now."
        )
        assert "thinking" not in json.dumps(sent) and len(sent["tools"][0]["functionDeclarations"]) == 3
    if family == "anthropic":  # translated (a tenant with redaction): system messages join ``system``
        assert sent["system"].endswith("Read is available now.") and "thinking" not in sent


@pytest.mark.parametrize(
    "content",
    [
        [{"type": ["not", "a", "string"]}],
        [{"type": "image", "source": "nowhere"}],
        [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}],
        [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
        [{"type": "tool_result", "tool_use_id": "t", "content": [1, "x", {"type": "image"}]}],
        [{"type": "mid_conv_system", "content": {"not": "a list"}}],
        [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}}],
    ],
)
def test_odd_content_is_dropped_or_read_never_a_crash(content: list) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    parsed = messages.parse(json.dumps(body).encode())
    assert parsed.raw


def test_a_tool_choice_of_a_tool_left_out_becomes_auto() -> None:
    body = copy.deepcopy(CLAUDE_CODE_BODY) | {"tool_choice": {"type": "tool", "name": "web_search"}}
    parsed = messages.parse(json.dumps(body).encode())
    assert parsed.body is not None and parsed.body.tool_choice == "auto" and "tool_choice" in parsed.dropped


def test_what_anthropic_refuses_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        messages.parse(b'{"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}')
    with pytest.raises(InvalidRequest):
        messages.parse(b'{"model": "m", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}')
    # 0 only fills Anthropic's prompt cache: Anthropic takes it.
    assert messages.parse(b'{"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}')


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (CLAUDE_CODE_BETAS, True),
        ("context-1m-2025-08-07", True),
        ("a,b", True),
        ("", True),
        ("a\r\nx-api-key: stolen", False),
        ("a;b", False),
        ("a,,b", False),
        ("a,", False),
        ("é", False),
        ("a" * 1025, False),
    ],
)
def test_the_anthropic_beta_header_is_beta_names_or_a_400(value: str, ok: bool) -> None:
    def header(name: bytes) -> str | None:
        return value if name == b"anthropic-beta" else None

    if ok:
        assert messages.API.anthropic_beta(header) == value
    else:
        with pytest.raises(InvalidRequest):
            messages.API.anthropic_beta(header)
