"""Native pass-through with the official SDKs: what the unified format
cannot carry reaches an upstream of the client's own API family as written
(the mock shows the body it received), usage and cost are still recorded,
and nothing passes through redaction or to another family."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def received_headers(stack: Stack) -> dict:
    return httpx.get(f"{stack.mock_url}/mock/last-headers").json()


FIXTURES = Path(__file__).parents[1] / "fixtures"
# Every field of Claude Code 2.1's requests (tests/unit/test_anthropic_inbound.py),
# with the betas it asks for; and the requests Claude Code 2.1.332 was seen
# sending (tests/fixtures/clients/), the second one with a ``role: "system"`` message.
EVERY_FIELD = {
    "method": "POST",
    "path": "/v1/messages?beta=true",
    "headers": {
        "anthropic-beta": "claude-code-20250219, interleaved-thinking-2025-05-14, context-management-2025-06-27, "
        "mid-conversation-tool-changes-2026-07-01, thinking-token-count-2026-05-13, advanced-tool-use-2025-11-20, "
        "effort-2025-11-24"
    },
    "body": json.loads((FIXTURES / "anthropic" / "request_every_field.json").read_text()),
}


def cut(value: Any) -> Any:
    """``value`` with every string cut to 1,000 characters: the captured
    requests (50-90 KB, mostly prompt and tool descriptions) fit the shared
    gateway's 64 KB body limit, every field and block still there."""
    if isinstance(value, str):
        return value[:1000]
    if isinstance(value, list):
        return [cut(v) for v in value]
    return {k: cut(v) for k, v in value.items()} if isinstance(value, dict) else value


def captured(name: str) -> dict[str, Any]:
    request = json.loads((FIXTURES / "clients" / name).read_text())
    return request | {"body": cut(request["body"])}


CLAUDE_CODE = {
    "every_field": EVERY_FIELD,
    "captured": captured("claude_code_request.json"),
    "captured_tool_result": captured("claude_code_tool_result_request.json"),
    "captured_system": captured("claude_code_unknown_model_request.json"),
}


def claude_code_post(stack: Stack, request: dict[str, Any], model: str, *, stream: bool) -> httpx.Response:
    """A request as Claude Code sends it (its path with ``?beta=true``, its
    betas, its body), to ``model``."""
    body = copy.deepcopy(request["body"]) | {"model": model, "stream": stream}
    headers = {"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"}
    headers["anthropic-beta"] = request["headers"]["anthropic-beta"]
    return httpx.post(f"{stack.base_url.removesuffix('/v1')}{request['path']}", json=body, headers=headers, timeout=20)


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


FUNCTION_TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "description": "Finds.",
        "parameters": {"type": "object", "properties": {}},
        "strict": True,
    },
}
# A tool of a type Sluice's unified tools name only the type of.
NEWER_TOOL = {"type": "web_search_preview", "search_context_size": "low"}


@pytest.mark.parametrize("tools", [[FUNCTION_TOOL], [FUNCTION_TOOL, NEWER_TOOL]])
def test_tools_reach_an_openai_upstream_as_written(stack: Stack, tools: list[dict]) -> None:
    """Function tools, typed, are encoded as the client wrote them (the same
    keys in the same order); a tool of a type Sluice does not know is no 400
    and reaches an OpenAI upstream whole, in the client's own body."""
    choice = {"type": "function", "function": {"name": "f"}}
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0) as client:
        client.chat.completions.create(
            model="demo-model",
            messages=[{"role": "user", "content": "hi"}],
            tools=tools,  # type: ignore[arg-type]
            tool_choice=choice,  # type: ignore[arg-type]
        )
    body = received(stack)
    assert json.dumps(body["tools"]) == json.dumps(tools) and body["tool_choice"] == choice
    # Another family cannot take a tool of OpenAI's own: the caller's 400, naming it.
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "claude-model", "messages": [{"role": "user", "content": "hi"}], "tools": tools},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=20,
    )
    if len(tools) == 1:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 400 and "tools[1] is of type 'web_search_preview'" in resp.json()["error"]["message"]


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


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("name", list(CLAUDE_CODE))
def test_a_claude_code_request_reaches_anthropic_as_written_with_its_betas(
    stack: Stack, name: str, stream: bool
) -> None:
    request = CLAUDE_CODE[name]
    resp = claude_code_post(stack, request, "claude-model", stream=stream)
    assert resp.status_code == 200, resp.text
    assert ("event: message_stop" in resp.text) if stream else resp.json()["type"] == "message"
    assert received(stack) == request["body"] | {"model": "claude-sonnet-4-20250514", "stream": stream}
    assert received_headers(stack)["anthropic-beta"] == request["headers"]["anthropic-beta"]


@pytest.mark.parametrize("name", list(CLAUDE_CODE))
@pytest.mark.parametrize(("model", "path"), [("demo-model", "messages"), ("gemini-model", "contents")])
def test_a_claude_code_request_to_another_family_is_served_without_what_it_cannot_take(
    stack: Stack, name: str, model: str, path: str
) -> None:
    request = CLAUDE_CODE[name]
    resp = claude_code_post(stack, request, model, stream=False)
    assert resp.status_code == 200, resp.text
    body = received(stack)
    assert path in body and "anthropic-beta" not in received_headers(stack)
    text = json.dumps(body)
    assert "context_management" not in text and "defer_loading" not in text and "cache_control" not in text
    for m in request["body"]["messages"]:  # in place for OpenAI's family, in the system instruction for Gemini's
        blocks = [{"text": m["content"]}] if isinstance(m["content"], str) else m["content"]
        for b in blocks if m["role"] == "system" else ():
            assert "text" not in b or json.dumps(b["text"])[1:-1] in text


def test_an_invalid_anthropic_beta_header_is_the_callers_400(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="claude-model",
            max_tokens=5,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"anthropic-beta": "a;b"},
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_the_sdks_beta_messages_go_to_the_same_endpoint(claude: anthropic.Anthropic, stack: Stack) -> None:
    message = claude.beta.messages.create(
        model="claude-model",
        max_tokens=50,
        betas=["context-management-2025-06-27", "effort-2025-11-24"],
        messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "Answer briefly."}],
        extra_body={"output_config": {"effort": "low"}, "context_management": {"edits": []}},
    )
    assert message.content[0].type == "text"
    assert received(stack)["output_config"] == {"effort": "low"}
    assert received_headers(stack)["anthropic-beta"] == "context-management-2025-06-27,effort-2025-11-24"
