"""The official openai SDK against /v1/chat/completions and /v1/embeddings,
served by Anthropic- and Gemini-shaped upstreams (the bundled mock speaks
both): content, tool calls, finish reasons and usage arrive intact."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from services import pricing
from tests.stack import DEMO_KEY, Stack

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
# model name in the stack -> (provider, catalog model)
UPSTREAMS = {"claude-model": ("anthropic", "claude-sonnet-4-20250514"), "gemini-model": ("gemini", "gemini-2.5-flash")}


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def priced(row: dict, catalog_model: str) -> None:
    """The row's cost is its token counts times the catalog's prices, split three ways."""
    price = pricing.price_for(catalog_model)
    assert price is not None
    uncached = row["prompt_tokens"] - row["cached_tokens"]
    assert row["cost_input_pico_usd"] == uncached * price.input
    assert row["cost_cached_input_pico_usd"] == row["cached_tokens"] * price.cached_input
    assert row["cost_output_pico_usd"] == row["completion_tokens"] * price.output
    assert (
        row["cost_pico_usd"]
        == row["cost_input_pico_usd"] + row["cost_cached_input_pico_usd"] + row["cost_output_pico_usd"]
    )


@pytest.mark.parametrize("model", sorted(UPSTREAMS))
def test_completion(client: openai.OpenAI, stack: Stack, model: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi [mock:chunks=3] [mock:cached=2]"},
        ],
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "Sluice routes this"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 2
    row = stack.request_row(raw.headers["x-request-id"])
    provider, catalog_model = UPSTREAMS[model]
    assert row["provider"] == provider and row["usage_source"] == "reported"
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
        resp.usage.prompt_tokens,
        3,
        2,
    )
    priced(row, catalog_model)


@pytest.mark.parametrize("model", sorted(UPSTREAMS))
def test_stream_with_usage(client: openai.OpenAI, stack: Stack, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi [mock:chunks=4]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == "Sluice routes this answer"
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("model", sorted(UPSTREAMS))
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
def test_tool_calls(client: openai.OpenAI, model: str, streamed: bool) -> None:
    request = {"model": model, "messages": [{"role": "user", "content": "Weather? [mock:tool]"}], "tools": TOOLS}
    if streamed:
        name, args, call_id, finish = "", "", "", None
        for chunk in client.chat.completions.create(**request, stream=True):
            if not chunk.choices:
                continue
            for tc in chunk.choices[0].delta.tool_calls or ():
                assert tc.index == 0
                call_id = tc.id or call_id
                name += tc.function.name or "" if tc.function else ""
                args += tc.function.arguments or "" if tc.function else ""
            finish = chunk.choices[0].finish_reason or finish
    else:
        resp = client.chat.completions.create(**request)
        (tc,) = resp.choices[0].message.tool_calls
        name, args, call_id, finish = tc.function.name, tc.function.arguments, tc.id, resp.choices[0].finish_reason
    assert name == "get_weather" and json.loads(args) == {"city": "mock"} and call_id
    assert finish == "tool_calls"

    # The tool's answer goes back in OpenAI's shape and reaches the upstream in its own.
    follow_up = client.chat.completions.create(
        model=model,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "sunny [mock:echo]"},
        ],
    )
    assert follow_up.choices[0].finish_reason == "stop"
    assert follow_up.choices[0].message.content == "sunny [mock:echo]"


@pytest.mark.parametrize("model", sorted(UPSTREAMS))
def test_upstream_errors_map_to_openai_errors(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "[mock:status=429]"}])
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "[mock:status=500]"}])
    assert info.value.status_code == 500


@pytest.mark.parametrize(
    ("model", "catalog_model", "source"),
    [("embed-model", "text-embedding-3-small", "reported"), ("gemini-embed", "gemini-embedding-001", "estimated")],
)
def test_embeddings(client: openai.OpenAI, stack: Stack, model: str, catalog_model: str, source: str) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it; ask for
    # floats too, and both must give the same vectors.
    raw = client.embeddings.with_raw_response.create(model=model, input=["one two", "three"])
    as_base64 = raw.parse()
    as_floats = client.embeddings.create(model=model, input=["one two", "three"], encoding_format="float")
    assert [d.index for d in as_base64.data] == [0, 1]
    assert len(as_base64.data[0].embedding) == 8
    for a, b in zip(as_base64.data, as_floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)  # float32 on the wire
    assert as_base64.data[0].embedding != as_base64.data[1].embedding
    row = stack.request_row(raw.headers["x-request-id"])
    assert row["api"] == "embeddings" and row["usage_source"] == source
    assert row["prompt_tokens"] == as_base64.usage.prompt_tokens == 3 and row["completion_tokens"] == 0
    priced(row, catalog_model)


def test_embeddings_bad_input_is_400(client: openai.OpenAI) -> None:
    for bad in ([], [""], ["text", [1, 2]]):
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="embed-model", input=bad)
    with pytest.raises(openai.BadRequestError):  # Anthropic has no embeddings API
        client.embeddings.create(model="claude-model", input="x")
