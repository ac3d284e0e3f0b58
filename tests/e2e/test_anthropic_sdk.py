"""The official anthropic SDK against POST /v1/messages, served by an
OpenAI-shaped upstream: the request and every reply are translated."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest

from tests.stack import DEMO_KEY, LIMITED_KEY, Stack

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    root = stack.base_url.removesuffix("/v1")
    with anthropic.Anthropic(base_url=root, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def test_message_text_and_usage(claude: anthropic.Anthropic, stack: Stack) -> None:
    raw = claude.messages.with_raw_response.create(
        model="demo-model",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello [mock:chunks=4] [mock:cached=2]"}],
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "demo-model"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "Sluice routes this answer"
    assert msg.stop_reason == "end_turn"
    # OpenAI counts cached tokens inside prompt_tokens, Anthropic apart from input_tokens.
    row = stack.request_row(raw.headers["x-request-id"])
    assert msg.usage.output_tokens == 4 == row["completion_tokens"]
    assert msg.usage.cache_read_input_tokens == 2 == row["cached_tokens"]
    assert msg.usage.input_tokens + 2 == row["prompt_tokens"]
    assert row["api"] == "messages" and row["provider"] == "openai" and row["usage_source"] == "reported"


@pytest.mark.parametrize("model", ["demo-model", "gemini-model"])
def test_message_stream_is_anthropic_events(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "Hi [mock:chunks=5]"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_start") == 1 and kinds.count("content_block_stop") == 1
    assert kinds.count("text") == 5  # the SDK's own event per text delta
    assert final.content[0].text == "Sluice routes this answer through"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0


# demo-model is OpenAI-shaped upstream; the others go Anthropic -> unified ->
# Gemini, and Anthropic -> unified -> Anthropic.
@pytest.mark.parametrize("model", ["demo-model", "gemini-model", "claude-model"])
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_tool_use_round_trip(claude: anthropic.Anthropic, streamed: bool, model: str) -> None:
    request = {
        "model": model,
        "max_tokens": 100,
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "Weather in Paris? [mock:tool]"}],
    }
    if streamed:
        with claude.messages.stream(**request) as stream:
            msg = stream.get_final_message()
    else:
        msg = claude.messages.create(**request)
    assert msg.stop_reason == "tool_use"
    (call,) = [b for b in msg.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "mock"} and call.id

    # The tool result goes back as Anthropic content blocks; the OpenAI
    # upstream sees a tool message and answers (echo shows the last message).
    follow_up = claude.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},  # the mock reads directives anywhere
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny [mock:echo]"}],
            },
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert follow_up.content[0].text == "sunny [mock:echo]"


def test_errors_come_in_anthropic_shape(stack: Stack, claude: anthropic.Anthropic) -> None:
    root = stack.base_url.removesuffix("/v1")
    with (
        anthropic.Anthropic(base_url=root, api_key="sk-wrong", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        bad.messages.create(model="demo-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["error"]["type"] == "authentication_error"
    with (
        anthropic.Anthropic(base_url=root, api_key=LIMITED_KEY, max_retries=0) as limited,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        limited.messages.create(model="other-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.NotFoundError) as info:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(
            model="demo-model", max_tokens=10, messages=[{"role": "user", "content": "[mock:status=429]"}]
        )
    # A body missing Anthropic's required max_tokens is the caller's error, said plainly.
    resp = claude._client.post(
        f"{root}/v1/messages", json={"model": "demo-model", "messages": []}, headers={"x-api-key": DEMO_KEY}
    )
    assert resp.status_code == 400
    body = json.loads(resp.content)
    assert body["type"] == "error" and "max_tokens" in body["error"]["message"]
