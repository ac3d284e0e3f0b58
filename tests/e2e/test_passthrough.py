"""Native pass-through with the official SDKs: what the unified format
cannot carry reaches an upstream of the client's own API family as written
(the mock shows the body it received), usage and cost are still recorded,
and nothing passes through redaction or to another family."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.stack import DEMO_KEY, REDACT_KEY, Stack

CACHED_SYSTEM = [{"type": "text", "text": "A long shared preamble.", "cache_control": {"type": "ephemeral"}}]
CACHED_TURN = [{"type": "text", "text": "Hello there", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]


def claude_client(stack: Stack, key: str = DEMO_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.base_url.removesuffix("/v1"), api_key=key, max_retries=0, timeout=20)


def received(stack: Stack) -> dict:
    return httpx.get(f"{stack.mock_url}/mock/last-request").json()


@pytest.fixture
def claude(stack: Stack) -> Iterator[anthropic.Anthropic]:
    with claude_client(stack) as c:
        yield c


@pytest.mark.parametrize("stream", [False, True])
def test_cache_control_and_top_k_reach_anthropic_intact_and_usage_is_recorded(
    claude: anthropic.Anthropic, stack: Stack, stream: bool
) -> None:
    kwargs = {
        "model": "claude-model",
        "max_tokens": 50,
        "system": CACHED_SYSTEM,
        "messages": [{"role": "user", "content": CACHED_TURN}],
        "extra_body": {"top_k": 7},
    }
    if stream:
        with claude.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
            text = "".join(s.text_stream)
            request_id = s.response.headers["x-request-id"]
    else:
        raw = claude.messages.with_raw_response.create(**kwargs)  # type: ignore[arg-type]
        text, request_id = raw.parse().content[0].text, raw.headers["x-request-id"]
    assert text.startswith("Sluice routes this")
    body = received(stack)
    assert body["system"] == CACHED_SYSTEM and body["messages"][0]["content"] == CACHED_TURN
    assert body["top_k"] == 7 and body["model"] == "claude-sonnet-4-20250514" and body["stream"] is stream
    row = stack.request_row(request_id)
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cost_pico_usd"] > 0
    assert row["usage_source"] == "reported"


def test_a_new_openai_field_reaches_an_openai_upstream(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        client.chat.completions.create(
            model="demo-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"prediction": {"type": "content", "content": "hi"}, "verbosity": "low"},
        )
    body = received(stack)
    assert body["prediction"] == {"type": "content", "content": "hi"} and body["verbosity"] == "low"
    assert body["model"] == "gpt-3.5-turbo"


def test_another_family_gets_the_translated_request(claude: anthropic.Anthropic, stack: Stack) -> None:
    claude.messages.create(
        model="demo-model", max_tokens=20, messages=[{"role": "user", "content": CACHED_TURN}], extra_body={"top_k": 3}
    )
    body = received(stack)
    assert "top_k" not in body and "cache_control" not in str(body)
    assert body["messages"] == [{"role": "user", "content": "Hello there"}]


def test_a_tenant_that_redacts_never_passes_its_clients_bytes_through(stack: Stack) -> None:
    with claude_client(stack, REDACT_KEY) as careful:
        careful.messages.create(
            model="claude-model",
            max_tokens=20,
            messages=[{"role": "user", "content": [{**CACHED_TURN[0], "text": "mail me at a@b.com"}]}],
            extra_body={"top_k": 3},
        )
    body = received(stack)
    assert "a@b.com" not in str(body) and "top_k" not in body
