"""Native pass-through: which bodies ride along, and what of them changes."""

from __future__ import annotations

import json

import msgspec
import pytest

from schemas.chat import ChatBody
from schemas.envelope import Deployment
from services.apis import chat
from services.providers import passthrough


def dep(provider: str) -> Deployment:
    return Deployment(name="d", provider=provider, base_url="http://u.test", upstream_model="up-model")


@pytest.mark.parametrize(
    ("api", "raw", "kept"),
    [
        ("chat", b'{"model": "m", "messages": [], "temperature": 1}', False),
        ("chat", b'{"model": "m", "messages": [], "prediction": {"type": "content"}}', True),
        # Tools and tool_choice are typed: kept when their types drop what the client wrote.
        (
            "chat",
            b'{"model": "m", "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto"}',
            False,
        ),
        ("chat", b'{"model": "m", "tools": [{"type": "custom", "custom": {"name": "f"}}]}', False),
        ("chat", b'{"model": "m", "tools": [{"type": "web_search", "filters": {}}]}', True),
        ("chat", b'{"model": "m", "tools": [{"type": "function", "function": {"name": "f", "x": 1}}]}', True),
        ("chat", b'{"model": "m", "tools": [{"type": "function", "function": {"name": "f", "strict": null}}]}', True),
        ("chat", b'{"model": "m", "tool_choice": {"type": "mcp", "server_label": "s"}}', True),
        ("chat", b'{"model": "m", "tools": "not a list"}', False),  # the unified body's 400
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": []}', False),
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": [], "top_k": 3}', True),
        ("messages", b'{"model": "m", "max_tokens": 5, "thinking": {"type": "enabled", "budget_tokens": 1024}}', True),
        (
            "messages",
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x", '
            b'"cache_control": {"type": "ephemeral"}}]}]}',
            True,
        ),
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": [], "context_management": {"edits": []}}', True),
        ("messages", b'{"model": "m", "max_tokens": 5, "messages": [], "output_config": {"effort": "high"}}', True),
        ("embeddings", b'{"model": "m", "input": "x", "new": 1}', False),
        ("chat", b"not json", False),
    ],
)
def test_a_body_is_kept_only_when_it_holds_more_than_the_unified_one(api: str, raw: bytes, kept: bool) -> None:
    assert passthrough.worth_keeping(api, raw) is kept


def test_only_the_model_and_stream_change_and_a_stream_asks_for_usage() -> None:
    raw = b'{"model": "alias", "stream": false, "messages": [1, 2], "x-new": {"deep": [1]}, "stream_options": {"a": 1}}'
    out = msgspec.json.decode(passthrough.rewrite(raw, dep("openai"), stream=True, ask_usage=True))
    assert out == {
        "model": "up-model",
        "stream": True,
        "messages": [1, 2],
        "x-new": {"deep": [1]},
        "stream_options": {"a": 1, "include_usage": True},
    }
    unstreamed = msgspec.json.decode(passthrough.rewrite(raw, dep("openai"), stream=False, ask_usage=False))
    assert "stream_options" not in unstreamed and unstreamed["stream"] is False


def test_the_native_families_and_their_endpoints() -> None:
    assert passthrough.native("messages", dep("anthropic")) and passthrough.native("chat", dep("groq"))
    assert not passthrough.native("chat", dep("anthropic")) and not passthrough.native("messages", dep("openai"))
    assert not passthrough.native("chat", dep("gemini"))
    req = passthrough.request(dep("anthropic"), b'{"model": "m", "top_k": 2}', "key", stream=False)
    assert req.url == "http://u.test/v1/messages" and req.headers["x-api-key"] == "key"
    assert msgspec.json.decode(req.content) == {"model": "up-model", "top_k": 2, "stream": False}


def test_the_fields_the_unified_form_does_not_carry_are_named() -> None:
    raw = b'{"model": "m", "max_tokens": 5, "messages": [], "thinking": {}, "context_management": {}, "top_k": 1}'
    assert passthrough.uncarried("messages", raw) == ["thinking", "context_management", "top_k"]
    assert passthrough.uncarried("chat", b'{"model": "m", "messages": [], "verbosity": "low"}') == ["verbosity"]
    assert passthrough.uncarried("chat", b"[1]") == [] and passthrough.uncarried("embeddings", raw) == []


# What OpenAI added to chat completions after Sluice's unified format was
# written: each decodes (never a 400 by itself), and a new top-level field
# (or a tool of a new type) keeps the client's body for an OpenAI deployment.
NEWER_CHAT_FIELDS = [
    {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
    {"tools": [{"type": "custom", "custom": {"name": "sql", "format": {"type": "grammar", "grammar": {}}}}]},
    {"tools": [{"type": "web_search_preview", "search_context_size": "low"}], "tool_choice": {"type": "allowed_tools"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": True}}},
    {"response_format": {"type": "grammar", "grammar": "start: WORD"}},
    {"messages": [{"role": "user", "content": "hi", "name": "a"}, {"role": "assistant", "audio": {"id": "au_1"}}]},
    {"verbosity": "low", "prediction": {"type": "content", "content": "x"}, "prompt_cache_key": "k"},
    {"web_search_options": {}, "modalities": ["text"], "service_tier": "flex", "store": False, "metadata": {"a": "b"}},
    {"reasoning_effort": "minimal", "safety_identifier": "s", "max_completion_tokens": 5},
]


@pytest.mark.parametrize("fields", NEWER_CHAT_FIELDS)
def test_newer_openai_chat_fields_decode_and_new_top_level_ones_ride_along(fields: dict) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]} | fields
    parsed = chat.parse(json.dumps(body).encode())
    assert parsed.body is not None
    # Kept for a new top-level field, or a tool of a type the unified tools hold only the type of.
    tool_types = {t["type"] for t in fields.get("tools", ())}
    if set(fields) - set(ChatBody.__struct_fields__) or tool_types - {"function", "custom"}:
        assert json.loads(parsed.raw) == body
    else:
        assert parsed.raw == b""
