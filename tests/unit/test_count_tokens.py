"""Anthropic's token count (``POST /v1/messages/count_tokens``) without I/O:
the row's parsing, the count asked of an Anthropic deployment, the gateway's
own count for other families, and the whole call (``RequestCall``) against a
fake upstream."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from schemas.chat import ChatBody, Message, Usage
from schemas.envelope import Deployment, Envelope
from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final, TokenCount
from services import tokens
from services import usage as usage_svc
from services.apis import count_tokens
from services.apis.base import RequestView
from services.providers.anthropic import count as anthropic_count
from services.providers.call import CallFailed, call_count_tokens
from services.providers.http import UpstreamHTTP
from services.providers.request_call import RequestCall

FIXTURES = Path(__file__).parents[1] / "fixtures" / "clients"
# What Claude Code 2.1.332 sends before it answers a Read of a large file.
CLAUDE_CODE = json.loads((FIXTURES / "claude_code_count_tokens_request.json").read_text())
BETAS = CLAUDE_CODE["headers"]["anthropic-beta"]
TOOL = {"name": "lookup", "description": "Look up", "input_schema": {"type": "object", "properties": {}}}


def anthropic_dep(name: str = "claude") -> Deployment:
    return Deployment(
        name=name,
        provider="anthropic",
        base_url=f"http://{name}.test",
        upstream_model="claude-sonnet-4-20250514",
        api_key_env="TEST_ANTHROPIC_KEY",
    )


def openai_dep() -> Deployment:
    return Deployment(
        name="gpt", provider="openai", base_url="http://gpt.test/v1", upstream_model="gpt-4o", catalog_model="gpt-4o"
    )


def body(text: str = "How many tokens is this?") -> ChatBody:
    return ChatBody(
        model="m", messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)]
    )


def test_claude_codes_count_request_parses_and_keeps_its_body() -> None:
    raw = json.dumps(CLAUDE_CODE["body"]).encode()
    parsed = count_tokens.parse(raw)
    assert parsed.model == "claude-sonnet-4-6" and not parsed.stream
    assert parsed.raw == raw  # an Anthropic deployment's count sees exactly what the client sent
    assert parsed.body is not None and parsed.body.messages[0].role == "user"
    assert parsed.body.tools is None


def test_a_count_takes_what_a_message_takes_but_max_tokens() -> None:
    raw = json.dumps(
        {
            "model": "m",
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}],
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "context_management": {"edits": []},
        }
    ).encode()
    parsed = count_tokens.parse(raw)
    assert parsed.body is not None and [m.role for m in parsed.body.messages] == ["system", "user"]
    assert parsed.raw == raw
    # what another family's count cannot see
    assert "context_management" in parsed.dropped and "tools[1]:web_search_20250305" in parsed.dropped
    for bad in (b'{"model": "m", "messages": []}', b'{"messages": [{"role": "user", "content": "hi"}]}', b"{"):
        with pytest.raises(InvalidRequest):
            count_tokens.parse(bad)


def test_the_answer_is_anthropics_shape_and_nothing_else() -> None:
    parsed = count_tokens.parse(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}')
    renderer = count_tokens.API.renderer(RequestView("rid", 0, "m", parsed))
    final = Final(id="rid", seq=0, model="m", usage=Usage(), count=TokenCount(42, "upstream"))
    assert json.loads(renderer.final(final)) == {"input_tokens": 42}
    refused = Failure(id="rid", seq=0, status=401, type="authentication_error", code="invalid_api_key", message="no")
    error = json.loads(count_tokens.API.error_body(refused))
    assert error == {"type": "error", "error": {"type": "authentication_error", "message": "no"}}


def test_an_anthropic_deployment_is_asked_with_the_clients_own_body_and_betas() -> None:
    raw = json.dumps({**CLAUDE_CODE["body"], "thinking": {"type": "adaptive"}}).encode()
    req = anthropic_count.request(anthropic_dep(), body(), raw, "sk-ant", BETAS)
    assert req.url == "http://claude.test/v1/messages/count_tokens"
    assert req.headers["x-api-key"] == "sk-ant" and req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["anthropic-beta"] == BETAS
    sent = json.loads(req.content)
    assert sent == {**CLAUDE_CODE["body"], "thinking": {"type": "adaptive"}, "model": "claude-sonnet-4-20250514"}


def test_without_the_clients_body_the_unified_request_is_translated_less_what_a_count_refuses() -> None:
    unified = msgspec.structs.replace(body(), max_tokens=100, temperature=0.5, stream=True)
    sent = json.loads(anthropic_count.request(anthropic_dep(), unified, None, None, "").content)
    assert sent == {
        "model": "claude-sonnet-4-20250514",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "How many tokens is this?"}]}],
    }


async def test_anthropic_counts_exactly_and_bills_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant")
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"input_tokens": 1234})

    raw = json.dumps(CLAUDE_CODE["body"]).encode()
    client = UpstreamHTTP(httpx.MockTransport(answer))
    outcome = await call_count_tokens(client, anthropic_dep(), body(), raw=raw, anthropic_beta=BETAS)
    assert outcome.count == TokenCount(1234, "upstream")
    assert outcome.usage == Usage() and outcome.cost.total == 0 and outcome.message is None
    (request,) = seen
    assert request.url.path == "/v1/messages/count_tokens" and request.headers["x-api-key"] == "sk-ant"


async def test_anthropics_refusal_is_the_mapped_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
        return httpx.Response(429, json=error, headers={"retry-after": "3"})

    with pytest.raises(CallFailed) as failed:
        await call_count_tokens(UpstreamHTTP(httpx.MockTransport(answer)), anthropic_dep(), body())
    assert failed.value.error.status == 429 and "slow down" in failed.value.error.message


@pytest.mark.parametrize(
    "dep", [openai_dep(), Deployment(name="g", provider="gemini", base_url="http://g.test", upstream_model="gemini")]
)
async def test_another_family_is_counted_by_the_gateway_as_its_usage_would_be(dep: Deployment) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError("a count of another family calls no upstream")

    text = "Sluice counts these words with the model's own tokenizer, or a stand-in."
    outcome = await call_count_tokens(UpstreamHTTP(httpx.MockTransport(answer)), dep, body(text))
    # exactly the prompt tokens a completion's row would get when its upstream reports none
    expected = usage_svc.settle(None, body(text), "", dep.catalog_model).prompt_tokens
    assert outcome.count == TokenCount(expected, "gateway")
    name, _ = usage_svc.tokenizer_for(dep.catalog_model)
    assert expected == tokens.count_prompt(body(text).messages, tokens.encoding(name)) > 10
    assert outcome.usage == Usage() and outcome.cost.total == 0


def count_envelope(*deps: Deployment) -> Envelope:
    now = time.time_ns()
    return Envelope(
        reply="_INBOX.test",
        body=body(),
        api="count_tokens",
        id="req-1",
        received_at_ns=now,
        deadline_ns=now + 30_000_000_000,
        candidates=list(deps),
    )


async def test_a_count_call_walks_on_and_its_tries_say_nothing_of_health() -> None:
    tried: list[tuple[str, int, bool]] = []

    async def record(t: Any, says_health: bool) -> None:
        tried.append((t.deployment.name, t.status, says_health))

    async def send(chunk: Any) -> None:
        raise AssertionError("a count sends no chunks")

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(529, json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})

    call = RequestCall(
        count_envelope(anthropic_dep(), openai_dep()), UpstreamHTTP(httpx.MockTransport(answer)), send, record
    )
    final = await call.final(await call.run())
    # Anthropic overloaded: the OpenAI deployment's count is the gateway's
    assert final.count is not None and final.count.by == "gateway" and final.count.input_tokens > 0
    assert (final.usage, final.cost.total, final.message, final.deployment) == (Usage(), 0, None, "gpt")
    assert tried == [("claude", 503, False), ("gpt", 200, False)]  # 529: overloaded, our 503
