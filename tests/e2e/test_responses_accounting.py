"""What a ``/v1/responses`` request is billed, and what its caller gets
back, on every family: the row's tokens and cost against the mock
upstream's own counts (its plan for the request it received), a client that
leaves mid-stream billed for what was streamed, and a masking tenant's
values restored in ``response.output_text.delta`` events however the
upstream's answer was cut."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from loadtest.mock_upstream import anthropic_shape, gemini_shape, responses_shape
from loadtest.mock_upstream.answer import Answer, plan
from loadtest.mock_upstream.faults import Behaviour, apply_directives
from schemas.chat import Message
from services import pricing, tokens
from services.usage import tokenizer_for
from tests.stack import DEMO_KEY, PRIVATE_KEY, Stack

MODELS = ["demo-model", "claude-model", "gemini-model"]
# Each model's catalog entry (tests/stack.py), which prices it.
CATALOG = {
    "demo-model": "gpt-3.5-turbo",
    "claude-model": "claude-sonnet-4-20250514",
    "gemini-model": "gemini-2.5-flash",
}
# What each deployment's upstream receives: an OpenAI deployment the client's
# Responses body (pass-through), the others their own family's request.
SHAPES: dict[str, ModuleType] = {
    "demo-model": responses_shape,
    "claude-model": anthropic_shape,
    "gemini-model": gemini_shape,
}
EMAIL, PHONE, CARD = "jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"
SAID = f"Reach {EMAIL} or {PHONE}; card {CARD}, twice: {EMAIL}."


def client(stack: Stack, key: str = DEMO_KEY) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, headers={"authorization": f"Bearer {key}"}, timeout=20)


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """A Responses stream's events (``event:`` then ``data:``, a blank line after each)."""
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            event = json.loads(line[len("data: ") :])
            assert event["type"] == kind
            yield event


def create(stack: Stack, body: dict[str, Any], key: str = DEMO_KEY) -> tuple[str, dict[str, Any], list[dict]]:
    """The request's id, its response (a stream's last event's), and a stream's events."""
    with client(stack, key) as c:
        if not body.get("stream"):
            r = c.post("responses", json=body)
            assert r.status_code == 200, r.text
            return r.headers["x-request-id"], r.json(), []
        with c.stream("POST", "responses", json=body) as r:
            assert r.status_code == 200, r.read()
            events = list(sse_events(r.iter_lines()))
        assert events[-1]["type"] == "response.completed"
        return r.headers["x-request-id"], events[-1]["response"], events


def upstream_saw(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"{stack.mock_url}/mock/last-request").json()


def mock_answer(stack: Stack, model: str) -> Answer:
    """What the mock planned for the last request it received (its usage comes from this)."""
    prompt, last, messages, tools = SHAPES[model].read(upstream_saw(stack))
    return plan(prompt, last, messages, tools, apply_directives(Behaviour(), prompt))


def catalog_cost(model: str, prompt: int, completion: int, cached: int = 0) -> int:
    """Pico-USD at the catalog's prices: uncached input, cached input, output."""
    price = pricing.price_for(CATALOG[model])
    assert price is not None and price.input > 0 and price.output > 0
    return (prompt - cached) * price.input + cached * price.cached_input + completion * price.output


# -- usage and cost, whole and streamed --------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", MODELS)
def test_usage_and_cost_are_the_upstreams_own_counts(stack: Stack, model: str, stream: bool) -> None:
    said = f"Count this, {model} {'streamed' if stream else 'whole'} [mock:chunks=7] [mock:cached=3] [mock:reasoning=5]"
    request_id, response, _ = create(stack, {"model": model, "input": said, "stream": stream})
    mock = mock_answer(stack, model)
    # Anthropic reports no reasoning tokens of their own (they are in its output tokens).
    reasoning = 0 if model == "claude-model" else 5
    assert (mock.cached_tokens, mock.reasoning_tokens, mock.completion_tokens) == (3, 5, 7 + 5)
    reported = httpx.get(f"{stack.mock_url}/mock/usage", params={"last": 1}).json()[0]
    assert reported == {"prompt_tokens": mock.prompt_tokens, "completion_tokens": mock.completion_tokens}

    usage = response["usage"]
    assert usage["input_tokens"] == mock.prompt_tokens and usage["output_tokens"] == mock.completion_tokens
    assert usage["total_tokens"] == mock.prompt_tokens + mock.completion_tokens
    assert usage["input_tokens_details"]["cached_tokens"] == 3
    assert usage["output_tokens_details"]["reasoning_tokens"] == reasoning

    row = stack.request_row(request_id)
    assert (row["api"], row["status"], row["usage_source"]) == ("responses", 200, "reported")
    assert row["prompt_tokens"] == mock.prompt_tokens and row["completion_tokens"] == mock.completion_tokens
    assert row["cached_tokens"] == 3 and row["reasoning_tokens"] == reasoning
    cost = catalog_cost(model, mock.prompt_tokens, mock.completion_tokens, cached=3)
    assert row["cost_pico_usd"] == cost > 0


def test_an_input_only_openai_reads_goes_to_an_openai_deployment_and_is_billed(stack: Stack) -> None:
    """A compaction item (how OpenAI hands back a compacted conversation)
    holds nothing the unified request carries: the OpenAI deployment gets it
    as sent (it was a 400, "'messages' must contain at least one message")."""
    items = [{"type": "compaction", "encrypted_content": "gAAAAB-compacted-conversation"}]
    request_id, response, _ = create(stack, {"model": "demo-model", "input": items})
    assert upstream_saw(stack)["input"] == items and response["status"] == "completed"
    mock = mock_answer(stack, "demo-model")
    row = stack.request_row(request_id)
    assert row["prompt_tokens"] == mock.prompt_tokens and row["completion_tokens"] == mock.completion_tokens
    assert row["cost_pico_usd"] == catalog_cost("demo-model", mock.prompt_tokens, mock.completion_tokens) > 0


# -- a client that leaves mid-stream -------------------------------------------------


@pytest.mark.parametrize("model", ["demo-model", "claude-model"])
def test_a_client_gone_mid_stream_is_billed_for_what_was_streamed(stack: Stack, model: str) -> None:
    """demo-model's upstream gets the client's Responses body and streams
    OpenAI's events; claude-model's is translated. Either way the upstream's
    stream is stopped, and the row bills the prompt and the words streamed.
    A word every 300 ms: the client is gone long before the next one."""
    before = stack.mock_stats()["cancelled_streams"]
    said = f"A long story, {model} [mock:chunks=400] [mock:chunk_ms=300]"
    deltas: list[str] = []
    with client(stack) as c, c.stream("POST", "responses", json={"model": model, "input": said, "stream": True}) as r:
        request_id = r.headers["x-request-id"]
        for event in sse_events(r.iter_lines()):
            if event["type"] == "response.output_text.delta":
                deltas.append(event["delta"])
                if len(deltas) == 3:
                    break
    streamed = "".join(deltas)
    assert streamed == "Sluice routes this"
    stack.wait_upstream_cancelled(before, timeout=5)
    assert stack.mock_stats()["active_streams"] == 0

    row = stack.request_row(request_id)
    assert row["status"] == 499 and row["client_disconnected"] and row["error_code"] == "client_closed"
    encoding, source = tokenizer_for(CATALOG[model])
    enc = tokens.encoding(encoding)
    # Neither upstream had said how many tokens it wrote (OpenAI's usage comes
    # with response.completed, Anthropic's start says 1): the streamed text, counted.
    assert row["completion_tokens"] == tokens.count_text(streamed, enc)
    assert row["usage_source"] == source
    if model == "demo-model":  # OpenAI's usage never came: the prompt counted too
        assert row["prompt_tokens"] == tokens.count_prompt([Message(role="user", content=said)], enc)
    else:  # Anthropic's message_start reported the input
        assert row["prompt_tokens"] == mock_answer(stack, model).prompt_tokens
    assert row["cost_pico_usd"] == catalog_cost(model, row["prompt_tokens"], row["completion_tokens"]) > 0


# -- a masking tenant's values, restored ------------------------------------------------


def assert_never_sent(seen: dict[str, Any]) -> None:
    text = json.dumps(seen)
    for value in (EMAIL, PHONE, CARD):
        assert value not in text, value
    assert "[EMAIL_1]" in text


SPLITS = [("demo-model", n) for n in range(1, 11)] + [(m, n) for m in ("claude-model", "gemini-model") for n in (1, 4)]


@pytest.mark.parametrize(("model", "split"), SPLITS)
def test_masked_values_come_back_in_text_deltas_cut_anywhere(stack: Stack, model: str, split: int) -> None:
    """Tenant "private" masks the values before the upstream sees them; the
    echo comes back ``split`` characters a chunk, so with 1 every placeholder
    ([EMAIL_1], ...) is cut at each of its positions, and the others shift the
    cuts: the deltas still join into the caller's own text."""
    said = f"{SAID} [mock:echo][mock:split={split}]"
    _, response, events = create(stack, {"model": model, "input": said, "stream": True}, PRIVATE_KEY)
    assert_never_sent(upstream_saw(stack))
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == said
    assert len([d for d in deltas if d]) > 5  # still a stream, not one held-back piece
    # A placeholder is held back until it is whole; then its value goes out in one piece.
    for value in (EMAIL, PHONE, CARD):
        assert any(value in d for d in deltas), value
    (done,) = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert done == said == response["output"][0]["content"][0]["text"]


@pytest.mark.parametrize("model", MODELS)
def test_masked_values_come_back_in_a_whole_response(stack: Stack, model: str) -> None:
    said = f"{SAID} [mock:echo]"
    _, response, _ = create(stack, {"model": model, "input": said}, PRIVATE_KEY)
    assert_never_sent(upstream_saw(stack))
    assert response["output"][-1]["content"][0]["text"] == said
