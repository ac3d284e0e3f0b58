"""The response cache's rules, key and replay, without NATS."""

from __future__ import annotations

import msgspec
import pytest

from schemas.chat import ChatBody, Delta, EmbeddingsBody, FunctionDef, Message, ToolCall, ToolDef, Usage
from schemas.control import CachePolicy
from schemas.replies import Final
from services import answer_cache
from services.apis import chat

POLICY = CachePolicy(max_age_s=600)


@pytest.mark.parametrize(
    ("header", "policy", "expected"),
    [
        ("", POLICY, (0, False)),  # opted in, but nothing asked and no default
        ("max-age=60", POLICY, (60, True)),
        ("max-age=99999", POLICY, (600, True)),  # capped by the tenant
        ("public, Max-Age=30", POLICY, (30, True)),
        ("max-age=60, no-store", POLICY, (0, False)),
        ("no-store", CachePolicy(max_age_s=600, default_max_age_s=120), (0, False)),
        ("", CachePolicy(max_age_s=600, default_max_age_s=120), (120, True)),
        ("no-cache", CachePolicy(max_age_s=600, default_max_age_s=120), (120, False)),  # fresh, then kept
        ("max-age=-5", POLICY, (0, False)),
        ("max-age=abc", POLICY, (0, False)),
        ("max-age=60", None, (0, False)),  # the tenant did not opt in
    ],
)
def test_what_a_request_may_do_with_the_cache(header: str, policy: CachePolicy | None, expected: tuple) -> None:
    assert answer_cache.decide(header, policy) == expected


def body(**fields: object) -> ChatBody:
    return ChatBody(model="m", messages=[Message(role="user", content="hi")], **fields)  # type: ignore[arg-type]


def test_the_key_changes_with_what_changes_the_answer_and_with_nothing_else() -> None:
    base = answer_cache.key("t", "g", body(), None)
    same = [body(stream=True), body(user="someone"), msgspec.structs.replace(body(), model="alias")]
    assert all(answer_cache.key("t", "g", b, None) == base for b in same)
    different = [
        answer_cache.key("t2", "g", body(), None),
        answer_cache.key("t", "g2", body(), None),
        answer_cache.key("t", "g", body(temperature=0.5), None),
        answer_cache.key("t", "g", body(max_tokens=5), None),
        answer_cache.key("t", "g", body(tools=[ToolDef(type="function", function=FunctionDef(name="f"))]), None),
        answer_cache.key("t", "g", ChatBody(model="m", messages=[Message(role="user", content="hi!")]), None),
        answer_cache.key("t", "g", None, EmbeddingsBody(model="m", input="hi")),
    ]
    assert base not in different and len(set(different)) == len(different)
    assert len(base) == 64


# Keys of requests with tools, as they were while the unified body held its
# tools and tool_choice as plain objects: typing them kept every entry.
KEPT_KEYS = [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "227a4d31d13506f5"),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather.",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        "strict": True,
                    },
                }
            ],
            "tool_choice": "required",
        },
        "bcdf22f99d360f4c",
    ),
    (
        {
            "tools": [
                {"function": {"parameters": {"type": "object"}, "name": "f", "description": "d"}, "type": "function"}
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
        "b59851c805a00f59",
    ),
    (
        {
            "tools": [{"type": "custom", "custom": {"name": "sql", "format": {"type": "grammar", "grammar": {}}}}],
            "tool_choice": {"type": "custom", "custom": {"name": "sql"}},
        },
        "ef9eade3631e482a",
    ),
    (
        {
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]},
            },
        },
        "aff02eadc27899b5",
    ),
]


@pytest.mark.parametrize(("fields", "kept"), KEPT_KEYS)
def test_a_request_with_tools_keys_as_before_they_were_typed(fields: dict, kept: str) -> None:
    raw = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]} | fields)
    parsed = chat.parse(raw)
    assert parsed.raw == b""
    assert answer_cache.key("t", "g", parsed.body, None).startswith(kept)


def test_a_stream_joins_into_the_message_and_replays_as_several_chunks() -> None:
    t = answer_cache.Transcript()
    text = "one two three four five six seven eight nine ten " * 4
    for word in text.split(" "):
        t.add(Delta(content=word + " "))
    t.add(
        msgspec.convert(
            {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}, Delta
        )
    )
    t.add(msgspec.convert({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, Delta))
    m = t.message()
    assert isinstance(m.tool_calls[0], ToolCall) and m.tool_calls[0].function.arguments == '{"a": 1}'
    final = Final(id="r", seq=0, model="x", usage=Usage(prompt_tokens=3, completion_tokens=4), deployment="d")
    final.cost.input, final.finish_reason = 77, "tool_calls"
    kept = answer_cache.answer_of(final, m, now_ms=1000, ttl_s=60)
    assert (kept.cost_pico_usd, kept.expires_at_ms) == (77, 61_000)
    chunks = answer_cache.replay("q", kept)
    assert 3 < len(chunks) <= answer_cache.REPLAY_CHUNKS + 2
    assert chunks[0].cache == "hit" and chunks[0].deployment == "d" and chunks[0].delta.role == "assistant"
    assert "".join(c.delta.content or "" for c in chunks) == m.content
    assert chunks[-2].delta.tool_calls[0].function.arguments == '{"a": 1}'
    assert chunks[-1].delta.finish_reason == "tool_calls" and [c.seq for c in chunks] == list(range(len(chunks)))
    hit = answer_cache.hit("q", kept, streamed=True, seq=len(chunks))
    assert hit.message is None and hit.usage.total_tokens == 0 and hit.cost.total == 0
    assert hit.cost_saved_pico_usd == 77 and hit.cache == "hit"


def test_only_one_choice_answers_are_kept() -> None:
    assert answer_cache.cacheable(body()) and answer_cache.cacheable(None) and not answer_cache.cacheable(body(n=2))


def test_a_body_passed_through_as_written_keys_by_its_own_bytes_too() -> None:
    plain = answer_cache.key("t", "g", body(), None)
    assert answer_cache.key("t", "g", body(), None, b'{"top_k": 5}') != plain
    top_k_6 = answer_cache.key("t", "g", body(), None, b'{"top_k": 6}')
    assert answer_cache.key("t", "g", body(), None, b'{"top_k": 5}') != top_k_6


def test_the_order_of_keys_in_free_form_fields_does_not_change_the_key() -> None:
    a = msgspec.json.decode(b'{"type": "json_schema", "json_schema": {"name": "x", "schema": {"a": 1, "b": 2}}}')
    b = msgspec.json.decode(b'{"json_schema": {"schema": {"b": 2, "a": 1}, "name": "x"}, "type": "json_schema"}')
    b_key = answer_cache.key("t", "g", body(response_format=b), None)
    assert answer_cache.key("t", "g", body(response_format=a), None) == b_key
