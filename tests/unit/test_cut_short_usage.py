"""What a stream cut short (the client gone) bills, from what its upstream
had said by then: Anthropic reports the input in ``message_start`` and the
output only in ``message_delta`` at the end."""

from __future__ import annotations

import json

from schemas.chat import ChatBody, Message
from services import tokens
from services.providers.anthropic.chat import AnthropicStream
from services.usage import settle_cut_short, tokenizer_for

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    },
}


def test_anthropics_message_start_reports_the_input() -> None:
    event = AnthropicStream().feed(json.dumps(START))
    assert event is not None and event.usage is not None
    assert (event.usage.prompt_tokens, event.usage.cached_tokens, event.usage.completion_tokens) == (10, 3, 1)
    assert event.usage.source == "reported"


def test_a_stream_cut_short_bills_the_reported_input_and_the_streamed_output() -> None:
    parser = AnthropicStream()
    reported = parser.feed(json.dumps(START))
    assert reported is not None
    streamed = "".join(
        e.delta.content or ""
        for text in ("Sluice", " routes", " this")
        if (
            e := parser.feed(
                json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
            )
        )
        and e.delta is not None
    )
    body = ChatBody(model="m", messages=[Message(role="user", content="A long story")])
    usage = settle_cut_short(reported.usage, body, streamed, "claude-sonnet-4-20250514")
    enc = tokens.encoding(tokenizer_for("claude-sonnet-4-20250514")[0])
    assert (usage.prompt_tokens, usage.cached_tokens) == (10, 3)  # Anthropic's count, not ours
    assert usage.completion_tokens == tokens.count_text("Sluice routes this", enc) > 1
