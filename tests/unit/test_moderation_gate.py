"""The moderation guardrail as a request's call runs it (``RequestCall``
with ``Envelope.moderation``), against a fake upstream that answers both
the moderation and the chat: blocked requests never reach the chat model,
flagged ones do and are marked, a failing moderation fails closed or open,
its cost is the request's and its time a span of its own."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from schemas.chat import ChatBody, Message
from schemas.envelope import Deployment, Envelope, GuardrailAction, ModerationCheck
from services.providers.attempts import Try
from services.providers.http import UpstreamHTTP
from services.providers.moderation_gate import GuardrailStop
from services.providers.request_call import RequestCall
from tests.unit.test_request_call import COMPLETION, Recorder, dep

MARKERS = {"attack": "violence", "hate": "hate"}


def mod_dep(name: str, catalog_model: str = "omni-moderation-latest") -> Deployment:
    return Deployment(
        name=name,
        provider="openai",
        base_url=f"http://{name}.test/v1",
        upstream_model="omni-moderation-latest",
        catalog_model=catalog_model,
    )


def envelope(action: GuardrailAction, *moderators: Deployment, deadline_s: float = 30.0) -> Envelope:
    now = time.time_ns()
    body = ChatBody(
        model="g",
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="We attack at dawn"),
        ],
    )
    check = ModerationCheck(model="mod", action=action, group="mod", candidates=list(moderators))
    return Envelope(
        reply="_INBOX.test",
        body=body,
        id="req-1",
        received_at_ns=now,
        deadline_ns=now + int(deadline_s * 1e9),
        candidates=[dep("chat")],
        moderation=check,
    )


def verdicts(texts: list[str]) -> bytes:
    results = []
    for text in texts:
        hit = {MARKERS[w] for w in text.lower().split() if w in MARKERS}
        names = ["violence", "hate", "harassment"]
        results.append(
            {
                "flagged": bool(hit),
                "categories": {n: n in hit for n in names},
                "category_scores": {n: 0.97 if n in hit else 0.01 for n in names},
            }
        )
    return json.dumps({"id": "modr-1", "model": "omni-moderation-latest", "results": results}).encode()


class Upstream:
    """Both upstreams: moderations (or a failure of them) and chat completions; what each was asked."""

    def __init__(self, moderation_status: int = 200) -> None:
        self.moderation_status = moderation_status
        self.moderated: list[list[str]] = []
        self.chats = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/moderations"):
            texts = json.loads(request.content)["input"]
            self.moderated.append(texts)
            if self.moderation_status != 200:
                return httpx.Response(self.moderation_status, content=b'{"error": {"message": "down"}}')
            return httpx.Response(200, content=verdicts(texts))
        self.chats += 1
        return httpx.Response(200, content=COMPLETION)


class Tries(Recorder):
    """The tries a call reports, with their attempt numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: list[int] = []

    async def tried(self, t: Try, says_health: bool) -> None:
        await super().tried(t, says_health)
        self.numbers.append(t.number)


def call_of(env: Envelope, upstream: Upstream) -> tuple[RequestCall, Tries]:
    rec = Tries()
    return RequestCall(env, UpstreamHTTP(httpx.MockTransport(upstream)), rec.send, rec.tried, rec.in_flight), rec


async def test_a_flagged_request_of_a_blocking_tenant_never_reaches_the_chat_model() -> None:
    upstream = Upstream()
    call, rec = call_of(envelope("block", mod_dep("m1")), upstream)
    with pytest.raises(GuardrailStop) as stopped:
        await call.run()
    failure = await call.failure(stopped.value)
    assert upstream.chats == 0 and upstream.moderated == [["Be brief.", "We attack at dawn"]]
    assert (failure.status, failure.code, failure.type) == (400, "content_flagged", "invalid_request_error")
    assert "violence" in failure.message and "messages[1].content" in failure.message and "dawn" not in failure.message
    # The moderation deployment judged it; the request made no try of its own.
    assert (failure.deployment, failure.attempts, failure.seq) == ("m1", 0, 0)
    assert rec.tries == [("m1", 200, True)] and rec.numbers == [0]
    assert [(d.detector, d.action, d.where) for d in call.guardrail_found()] == [
        ("moderation:violence", "block", "messages[1].content")
    ]
    [span] = failure.timing.spans
    assert span.stage == "moderation" and span.end_ns >= span.start_ns > 0
    # Counted, free: the moderation's usage is the row's, at its (zero) price.
    assert failure.usage is not None and failure.usage.prompt_tokens > 0
    assert failure.cost is not None and failure.cost.total == 0
    assert rec.in_flight == {"m1": 0}


async def test_a_clean_request_goes_on_to_the_chat_with_the_moderation_timed_apart() -> None:
    upstream = Upstream()
    env = envelope("block", mod_dep("m1"))
    assert env.body is not None
    env.body.messages[1].content = "Good morning"
    call, rec = call_of(env, upstream)
    final = await call.final(await call.run())
    assert upstream.chats == 1 and upstream.moderated == [["Be brief.", "Good morning"]]
    assert final.deployment == "chat" and final.attempts == 1
    assert rec.tries == [("m1", 200, True), ("chat", 200, True)] and rec.numbers == [0, 1]
    assert call.guardrail_found() == []
    assert [s.stage for s in final.timing.spans] == ["moderation"]
    assert final.timing.spans[0].end_ns <= final.timing.upstream_start_ns


async def test_a_flagging_tenant_gets_its_answer_and_the_flags_are_recorded() -> None:
    upstream = Upstream()
    call, _ = call_of(envelope("flag", mod_dep("m1")), upstream)
    final = await call.final(await call.run())
    assert upstream.chats == 1 and final.message is not None
    assert [(d.detector, d.action, d.where, d.end) for d in call.guardrail_found()] == [
        ("moderation:violence", "flag", "messages[1].content", len("We attack at dawn"))
    ]


async def test_the_moderations_cost_is_added_to_the_chats() -> None:
    upstream = Upstream()
    # A moderation deployment priced per token (the catalog's moderation models are free).
    call, _ = call_of(envelope("flag", mod_dep("m1", catalog_model="gpt-4o-mini")), upstream)
    final = await call.final(await call.run())
    gate = call.gate
    assert gate is not None and gate.cost.total > 0
    assert final.cost is not None and final.cost.input > gate.cost.input
    assert final.cost_pico_usd == final.cost.total
    assert final.usage.prompt_tokens == 19  # the chat's own usage, as the upstream reported it


async def test_a_failing_moderation_moves_to_the_next_deployment_first() -> None:
    upstream = Upstream()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "m1.test":
            return httpx.Response(503, content=b'{"error": {"message": "busy"}}')
        return upstream(request)

    rec = Tries()
    env = envelope("block", mod_dep("m1"), mod_dep("m2"))
    call = RequestCall(env, UpstreamHTTP(httpx.MockTransport(answer)), rec.send, rec.tried, rec.in_flight)
    with pytest.raises(GuardrailStop):
        await call.run()
    assert rec.tries == [("m1", 503, True), ("m2", 200, True)] and upstream.chats == 0


@pytest.mark.parametrize("action", ["block", "flag"])
async def test_a_moderation_that_cannot_be_had_fails_closed_for_block_and_open_for_flag(
    action: GuardrailAction,
) -> None:
    for env in (envelope(action, mod_dep("m1")), envelope(action)):  # its upstream fails; no deployment at all
        upstream = Upstream(moderation_status=503)
        call, _ = call_of(env, upstream)
        if action == "block":
            with pytest.raises(GuardrailStop) as stopped:
                await call.run()
            failure = await call.failure(stopped.value)
            assert (failure.status, failure.code, failure.type) == (503, "moderation_unavailable", "server_error")
            assert upstream.chats == 0 and failure.usage is None
        else:
            final = await call.final(await call.run())
            assert upstream.chats == 1 and final.message is not None
        assert [(d.detector, d.action) for d in call.guardrail_found()] == [("moderation:unchecked", action)]


async def test_a_request_with_no_text_is_not_sent_to_moderation() -> None:
    upstream = Upstream()
    env = envelope("block", mod_dep("m1"))
    assert env.body is not None
    env.body.messages = [Message(role="user", content="")]
    call, _ = call_of(env, upstream)
    await call.final(await call.run())
    assert upstream.moderated == [] and upstream.chats == 1 and call.guardrail_found() == []


async def test_a_deadline_passing_in_the_moderation_cuts_its_try_not_the_chats() -> None:
    async def hang() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=hang())

    rec = Tries()
    env = envelope("block", mod_dep("m1"), deadline_s=0.2)
    call = RequestCall(env, UpstreamHTTP(httpx.MockTransport(answer)), rec.send, rec.tried, rec.in_flight)
    with pytest.raises(TimeoutError) as late:
        await call.run()
    failure = await call.failure(late.value)
    assert (failure.status, failure.code, failure.deployment) == (504, "upstream_timeout", "m1")
    # The moderation deployment's try is the one cut (and it says so of that deployment's health).
    assert rec.tries == [("m1", 504, True)] and rec.numbers == [0]
    assert [s.stage for s in failure.timing.spans] == ["moderation"]
