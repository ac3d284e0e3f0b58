"""Moderation: OpenAI's moderations as an upstream (against answers in its
documented format), the call that checks and counts it, the API row at
/v1/moderations, and the mock upstream's verdicts."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import msgspec
import pytest

from loadtest.mock_upstream.app import MockUpstream
from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamError, UpstreamOverloaded
from schemas.replies import Final
from schemas.tasks import ModerationImageUrl, ModerationPart, ModerationRequest, ModerationResult, ModerationVerdict
from services import task_policy
from services.apis import moderations as moderation_api
from services.apis.base import RequestView
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import UpstreamHTTP
from services.providers.openai.chat import OpenAIChat
from services.providers.openai.moderation import OpenAIModeration
from services.providers.tasks import moderation as moderation_call
from tests.adapters import fixture, sent_json

DEP = Deployment(
    "mod", "openai", "https://api.openai.test/v1", "omni-moderation-latest", catalog_model="omni-moderation-latest"
)
PARTS: list[str | ModerationPart] = [
    ModerationPart(type="text", text="I want to hurt them."),
    ModerationPart(type="image_url", image_url=ModerationImageUrl(url="https://example.test/a.png")),
]
adapter = OpenAIModeration(OpenAIChat())


async def call(
    dep: Deployment, t: ModerationRequest, answer: bytes, status: int = 200
) -> tuple[CallOutcome, httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=answer)

    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        outcome = await moderation_call.call(client, dep, t, CallProgress())
    return outcome, seen[0]


def test_request_goes_as_the_caller_wrote_it() -> None:
    req = adapter.build_moderation_request(DEP, ModerationRequest(model="alias", input=PARTS), "sk-key")
    assert req.url == "https://api.openai.test/v1/moderations" and req.headers["authorization"] == "Bearer sk-key"
    assert sent_json(req.content) == {
        "model": "omni-moderation-latest",
        "input": [
            {"type": "text", "text": "I want to hurt them."},
            {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}},
        ],
    }


async def test_omni_answer_is_read_whole_and_counted_free() -> None:
    outcome, _ = await call(DEP, ModerationRequest(model="m", input=PARTS), fixture("openai/moderation_omni.json"))
    assert isinstance(outcome.task_result, ModerationResult)
    [verdict] = outcome.task_result.results
    assert verdict.flagged and verdict.categories["violence"] and not verdict.categories["illicit"]
    assert len(verdict.categories) == len(verdict.category_scores) == 13
    assert verdict.category_applied_input_types is not None
    assert verdict.category_applied_input_types["violence"] == ["text", "image"]
    assert outcome.task_result.id == "modr-0d9740456c391e43c445bf0f010940c7"
    # Counted (the model's tokenizer is o200k_base), and free.
    assert outcome.usage.source == "counted" and outcome.usage.prompt_tokens > 0
    assert outcome.cost.total == 0


async def test_legacy_answer_drops_null_categories() -> None:
    texts = ModerationRequest(model="m", input=["first", "second"])
    outcome, _ = await call(DEP, texts, fixture("openai/moderation_text.json"))
    assert isinstance(outcome.task_result, ModerationResult)
    first, second = outcome.task_result.results
    assert "illicit" not in first.categories and len(first.categories) == 11
    assert first.category_applied_input_types is None and second.category_scores["violence"] == 1e-6


@pytest.mark.parametrize(
    ("value", "results"), [("one text", 2), (["a", "b", "c"], 2), (PARTS, 2)], ids=["text", "texts", "parts"]
)
async def test_a_verdict_per_input_or_the_try_fails(value: Any, results: int) -> None:
    verdict = msgspec.to_builtins(ModerationVerdict(flagged=False, categories={}, category_scores={}))
    answer = msgspec.json.encode({"id": "modr-1", "model": "m", "results": [verdict] * results})
    with pytest.raises(CallFailed) as failed:
        await call(DEP, ModerationRequest(model="m", input=value), answer)
    assert isinstance(failed.value.error, UpstreamError)


async def test_unreadable_answers_and_errors() -> None:
    t = ModerationRequest(model="m", input="x")
    with pytest.raises(CallFailed) as failed:
        await call(DEP, t, b'{"results": "no"}')
    assert isinstance(failed.value.error, UpstreamError)
    with pytest.raises(CallFailed) as failed:
        await call(DEP, t, b'{"error": {"message": "overloaded", "type": "server_error"}}', status=503)
    assert isinstance(failed.value.error, UpstreamOverloaded) and failed.value.error.retryable


async def test_a_provider_without_moderations_is_refused() -> None:
    dep = Deployment("groq", "groq", "https://api.groq.test/openai/v1", "llama-guard-4-12b")
    with pytest.raises(CallFailed) as failed:
        await call(dep, ModerationRequest(model="m", input="x"), b"{}")
    assert isinstance(failed.value.error, InvalidRequest) and "serves no moderations" in failed.value.error.message


# -- the API row ---------------------------------------------------------------

[API] = moderation_api.APIS


def test_row_and_its_default_model() -> None:
    assert (API.name, API.path, API.streams) == ("moderations", "/v1/moderations", False)
    parsed = API.parse(b'{"input": "hello"}')
    assert parsed.model == "omni-moderation-latest"
    assert parsed.task == ModerationRequest(model="omni-moderation-latest", input="hello")
    parts = API.parse(msgspec.json.encode({"model": "mod", "input": msgspec.to_builtins(PARTS)}))
    assert parts.task == ModerationRequest(model="mod", input=PARTS)


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": ["text", {"type": "text", "text": "a part"}]},
        {"input": [{"type": "text"}]},
        {"input": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]},
        {"input": [{"type": "image_url"}]},
        {"input": [{"type": "audio", "audio": "x"}]},
        {"input": ["x"] * 1001},  # more than policy takes (task_policy.MAX_MODERATION_INPUTS): refused at the door too
        {"input": [[["nested"]]]},
        {"model": "m"},
        {"input": "x", "model": 7},
    ],
)
def test_hostile_requests_are_refused(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        API.parse(msgspec.json.encode(body))


def test_the_door_takes_as_many_inputs_as_policy() -> None:
    """One bound: a list the door lets through, policy takes (a bus caller's request passes policy alone)."""
    at_most = API.parse(msgspec.json.encode({"input": ["x"] * task_policy.MAX_MODERATION_INPUTS}))
    assert isinstance(at_most.task, ModerationRequest)
    task_policy.check(at_most.task, "moderations")


def test_answer_is_openais_shape() -> None:
    parsed = API.parse(b'{"input": "hello", "model": "demo-moderation"}')
    verdict = ModerationVerdict(flagged=True, categories={"violence": True}, category_scores={"violence": 0.9})
    final = Final(
        id="r1", seq=0, model="m", usage=Usage(prompt_tokens=1), task_result=ModerationResult("up", [verdict])
    )
    body = API.renderer(RequestView("req-9", 0, "demo-moderation", parsed)).final(final)
    assert msgspec.json.decode(body) == {
        "id": "req-9",
        "model": "demo-moderation",
        "results": [{"flagged": True, "categories": {"violence": True}, "category_scores": {"violence": 0.9}}],
    }


# -- the mock's verdicts ---------------------------------------------------------


async def mock_call(t: ModerationRequest, mock: MockUpstream, model: str = "omni-moderation-latest") -> CallOutcome:
    dep = msgspec.structs.replace(DEP, base_url="http://mock/v1", upstream_model=model)
    async with contextlib.aclosing(UpstreamHTTP(httpx.ASGITransport(mock))) as client:
        return await moderation_call.call(client, dep, t, CallProgress())


async def test_the_mock_flags_markers_and_directives() -> None:
    mock = MockUpstream()
    t = ModerationRequest(model="m", input=["a calm day", "we attack at dawn", "fine [mock:flag=self-harm/intent]"])
    outcome = await mock_call(t, mock)
    assert isinstance(outcome.task_result, ModerationResult)
    calm, attack, directed = outcome.task_result.results
    assert not calm.flagged and max(calm.category_scores.values()) < 0.02
    assert attack.flagged and attack.categories["violence"] and attack.category_scores["violence"] > 0.9
    assert directed.flagged and [k for k, v in directed.categories.items() if v] == ["self-harm/intent"]
    assert len(calm.categories) == 13 and calm.category_applied_input_types is not None
    again = await mock_call(t, mock)
    assert isinstance(again.task_result, ModerationResult)
    assert again.task_result.results == outcome.task_result.results  # deterministic (the ids differ)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        usage = (await client.get("/mock/usage", params={"last": 2})).json()
    assert usage == [None, None]  # OpenAI reports no usage for a moderation


async def test_the_mock_answers_legacy_models_as_openai_does() -> None:
    mock = MockUpstream()
    outcome = await mock_call(ModerationRequest(model="m", input="kill it"), mock, "text-moderation-latest")
    assert isinstance(outcome.task_result, ModerationResult)
    [verdict] = outcome.task_result.results
    assert verdict.flagged and "illicit" not in verdict.categories and verdict.category_applied_input_types is None
    with pytest.raises(CallFailed) as failed:
        await mock_call(ModerationRequest(model="m", input=PARTS), mock, "text-moderation-latest")
    assert failed.value.error.status == 400
    with pytest.raises(CallFailed) as failed:
        await mock_call(ModerationRequest(model="m", input="x [mock:status=503]"), mock)
    assert failed.value.error.retryable
