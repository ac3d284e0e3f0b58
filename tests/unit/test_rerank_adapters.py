"""Rerank: the adapters (Cohere /v2/rerank, Jina and the servers in its shape,
Voyage) against answers in each provider's documented format, the call
that checks and prices a ranking, the API rows at /v1/rerank and /v2/rerank,
and the mock upstream answering each adapter in its provider's shape."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import msgspec
import pytest

from loadtest.mock_upstream.app import MockUpstream
from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamError, UpstreamRateLimited
from schemas.replies import Final
from schemas.tasks import RerankDocument, RerankHit, RerankRequest, RerankResult
from services import pricing
from services.apis import rerank as rerank_api
from services.apis.base import RequestView
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.cohere.rerank import CohereRerank
from services.providers.http import UpstreamHTTP
from services.providers.jina.rerank import JinaRerank
from services.providers.tasks import rerank as rerank_call
from services.providers.voyage.rerank import VoyageRerank
from tests.adapters import fixture, sent_json

COHERE = Deployment("co", "cohere", "https://api.cohere.test", "rerank-v3.5", catalog_model="rerank-v3.5")
JINA = Deployment(
    "jina",
    "jina",
    "https://api.jina.test/v1",
    "jina-reranker-v2-base-multilingual",
    catalog_model="jina-reranker-v2-base-multilingual",
)
VOYAGE = Deployment("voy", "voyage", "https://api.voyage.test/v1", "rerank-2", catalog_model="rerank-2")
VLLM = Deployment("local", "vllm", "http://127.0.0.1:8000/v1", "BAAI/bge-reranker-base")
DOCS: list[str | RerankDocument] = [
    "Carson City is the capital city of Nevada.",
    RerankDocument(text="The capital of France is Paris."),
    "Washington, D.C. is the capital of the United States.",
    "Capital punishment has existed in the United States since before it was a country.",
    "The capital of the United States is Washington.",
]


def task(**fields: Any) -> RerankRequest:
    return RerankRequest(model="m", query="What is the capital of the United States?", documents=DOCS, **fields)


async def call(
    dep: Deployment, t: RerankRequest, answer: bytes, status: int = 200
) -> tuple[CallOutcome, httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=answer)

    async with contextlib.aclosing(UpstreamHTTP(httpx.MockTransport(handler))) as client:
        outcome = await rerank_call.call(client, dep, t, CallProgress())
    return outcome, seen[0]


def pico(usd: str) -> int:
    return pricing.usd_to_pico(usd)


# -- the adapters, against the providers' documented answers -------------------


def test_cohere_request_is_v2s_shape() -> None:
    req = CohereRerank().build_rerank_request(COHERE, task(top_n=3, max_tokens_per_doc=512), "co-key")
    assert req.url == "https://api.cohere.test/v2/rerank"
    assert req.headers["authorization"] == "Bearer co-key"
    sent = sent_json(req.content)
    # v2 takes strings alone, and has no return_documents.
    assert sent == {
        "model": "rerank-v3.5",
        "query": "What is the capital of the United States?",
        "documents": [d if isinstance(d, str) else d.text for d in DOCS],
        "top_n": 3,
        "max_tokens_per_doc": 512,
    }


async def test_cohere_answer_is_billed_in_search_units() -> None:
    outcome, _ = await call(COHERE, task(top_n=3), fixture("cohere/rerank_v2.json"))
    assert isinstance(outcome.task_result, RerankResult)
    assert [h.index for h in outcome.task_result.results] == [3, 4, 0]
    assert outcome.task_result.id == "07734bd2-2473-4f07-94e1-0d9f0e6843cf"
    assert outcome.usage == Usage(units=1, unit="search_unit", source="reported")
    # rerank-v3.5: $2.00 per thousand search units.
    assert outcome.cost.total == outcome.cost.units == pico("0.002")


def test_jina_request_asks_for_no_documents_back() -> None:
    req = JinaRerank().build_rerank_request(JINA, task(top_n=2, max_tokens_per_doc=9), "jina-key")
    assert req.url == "https://api.jina.test/v1/rerank"
    sent = sent_json(req.content)
    # The gateway has the documents; max_tokens_per_doc is Cohere's alone.
    assert sent["return_documents"] is False and sent["top_n"] == 2
    assert "max_tokens_per_doc" not in sent and sent["documents"][1] == "The capital of France is Paris."


async def test_jina_answer_is_billed_in_tokens() -> None:
    outcome, _ = await call(JINA, task(), fixture("jina/rerank.json"))
    assert isinstance(outcome.task_result, RerankResult)
    assert [(h.index, h.document) for h in outcome.task_result.results] == [(0, None), (2, None)]
    assert outcome.usage == Usage(prompt_tokens=815, source="reported")
    assert outcome.model == "jina-reranker-v2-base-multilingual"
    # $0.05 per million tokens.
    assert outcome.cost.total == 815 * pico("0.05") // 1_000_000


async def test_vllm_answers_in_jinas_shape() -> None:
    outcome, seen = await call(VLLM, task(), fixture("vllm/rerank.json"))
    assert str(seen.url) == "http://127.0.0.1:8000/v1/rerank"
    assert isinstance(outcome.task_result, RerankResult)
    assert [h.index for h in outcome.task_result.results] == [1, 0]
    assert outcome.usage.prompt_tokens == 56


def test_voyage_request_is_its_own_shape() -> None:
    req = VoyageRerank().build_rerank_request(VOYAGE, task(top_n=2), "voy-key")
    assert req.url == "https://api.voyage.test/v1/rerank"
    sent = sent_json(req.content)
    assert sent["top_k"] == 2 and "top_n" not in sent
    assert sent["return_documents"] is False and sent["truncation"] is True


async def test_voyage_answer_is_read_from_data() -> None:
    outcome, _ = await call(VOYAGE, task(), fixture("voyage/rerank.json"))
    assert isinstance(outcome.task_result, RerankResult)
    assert [h.index for h in outcome.task_result.results] == [0, 1]
    assert outcome.usage == Usage(prompt_tokens=26, source="reported")
    assert outcome.cost.total == 26 * pico("0.05") // 1_000_000


# -- the call: the ranking checked, usage settled ------------------------------


@pytest.mark.parametrize("indexes", [[0, 5], [1, 1], [-1]])
async def test_a_ranking_of_documents_not_sent_fails_the_try(indexes: list[int]) -> None:
    answer = {"results": [{"index": i, "relevance_score": 0.5} for i in indexes]}
    with pytest.raises(CallFailed) as failed:
        await call(COHERE, task(), msgspec.json.encode(answer))
    assert isinstance(failed.value.error, UpstreamError)


async def test_ranking_is_best_first_and_cut_at_top_n() -> None:
    answer = {"results": [{"index": i, "relevance_score": s} for i, s in [(0, 0.1), (4, 0.9), (2, 0.5)]]}
    outcome, _ = await call(COHERE, task(top_n=2), msgspec.json.encode(answer))
    assert isinstance(outcome.task_result, RerankResult)
    assert outcome.task_result.results == [RerankHit(4, 0.9), RerankHit(2, 0.5)]


async def test_unreported_usage_is_estimated_in_the_upstreams_unit() -> None:
    answer = msgspec.json.encode({"results": [{"index": 0, "relevance_score": 0.5}]})
    cohere, _ = await call(COHERE, task(), answer)
    # Five short documents: one search unit.
    assert cohere.usage.unit == "search_unit" and cohere.usage.units == 1 and cohere.usage.source == "estimated"
    many = RerankRequest(model="m", query="q", documents=["d"] * 250)
    assert rerank_call.estimate_usage(many, "rerank-v3.5", search_units=True).units == 3
    jina, _ = await call(JINA, task(), answer)
    assert jina.usage.unit == "" and jina.usage.prompt_tokens > 0 and jina.cost.total > 0


async def test_upstream_errors_are_mapped() -> None:
    with pytest.raises(CallFailed) as failed:
        await call(COHERE, task(), b'{"id": "x", "message": "You are using a Trial key"}', status=429)
    assert isinstance(failed.value.error, UpstreamRateLimited)
    assert "Trial key" in failed.value.error.message
    with pytest.raises(CallFailed) as failed:
        await call(VOYAGE, task(), b'{"detail": "The request body is not valid JSON"}', status=400)
    assert failed.value.error.status == 400 and "not valid JSON" in failed.value.error.message


async def test_a_reported_count_past_reason_is_unreadable() -> None:
    answer = {"results": [], "meta": {"billed_units": {"search_units": 1e15}}}
    with pytest.raises(CallFailed) as failed:
        await call(COHERE, task(), msgspec.json.encode(answer))
    assert isinstance(failed.value.error, UpstreamError)


async def test_a_provider_without_rerank_is_refused() -> None:
    dep = Deployment("claude", "anthropic", "https://api.anthropic.test", "claude-sonnet-4-20250514")
    with pytest.raises(CallFailed) as failed:
        await call(dep, task(), b"{}")
    assert isinstance(failed.value.error, InvalidRequest) and "serves no rerank" in failed.value.error.message


# -- the API rows --------------------------------------------------------------

V1, V2 = rerank_api.APIS


def test_rows_are_both_named_rerank() -> None:
    assert [(api.name, api.path, api.streams) for api in rerank_api.APIS] == [
        ("rerank", "/v1/rerank", False),
        ("rerank", "/v2/rerank", False),
    ]


def test_return_documents_defaults_by_path() -> None:
    body = b'{"model": "r", "query": "q", "documents": ["a", {"text": "b", "title": "t"}]}'
    jina_style, cohere_v2 = V1.parse(body), V2.parse(body)
    assert isinstance(jina_style.task, RerankRequest) and isinstance(cohere_v2.task, RerankRequest)
    assert jina_style.task.return_documents is True and cohere_v2.task.return_documents is False
    assert jina_style.task.documents == ["a", RerankDocument(text="b")]
    asked = V2.parse(b'{"model": "r", "query": "q", "documents": ["a"], "return_documents": true, "top_n": 1.0}')
    assert isinstance(asked.task, RerankRequest) and asked.task.return_documents is True and asked.task.top_n == 1


@pytest.mark.parametrize(
    "body",
    [
        {"model": "r", "query": "q", "documents": ["d"] * 10_000},
        {"model": "r", "query": "q" * 1_000_000, "documents": ["d"]},
        {"model": "r", "query": "q", "documents": [[["nested"]], {"junk": {"deeper": [1]}}]},
        {"model": "r", "query": "q", "documents": [{"title": "no text"}]},
        {"model": "r", "query": "q", "documents": []},
        {"model": "r", "query": "   ", "documents": ["d"]},
        {"model": "r", "query": "q", "documents": ["d"], "top_n": 0},
        {"model": "r", "query": "q", "documents": ["d"], "top_n": 1.5},
        {"model": "r", "query": "q", "documents": ["d"], "max_tokens_per_doc": -1},
        {"model": "r", "documents": ["d"]},
        ["not", "an", "object"],
    ],
)
def test_hostile_requests_are_refused(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        V1.parse(msgspec.json.encode(body))


def test_deep_nesting_is_refused() -> None:
    deep = b'{"model": "r", "query": "q", "documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidRequest):
        V1.parse(deep)


def render(api: Any, body: bytes, result: RerankResult, usage: Usage) -> dict[str, Any]:
    parsed = api.parse(body)
    renderer = api.renderer(RequestView("req-1", 0, "demo-rerank", parsed))
    return msgspec.json.decode(renderer.final(Final(id="req-1", seq=0, model="m", usage=usage, task_result=result)))


def test_answer_returns_the_callers_documents_and_billed_units() -> None:
    body = b'{"model": "demo-rerank", "query": "q", "documents": ["alpha", {"text": "beta"}], "return_documents": true}'
    result = RerankResult(id="upstream-id", results=[RerankHit(1, 0.75, document="[MASKED]"), RerankHit(0, 0.25)])
    answer = render(V2, body, result, Usage(units=1, unit="search_unit"))
    assert answer == {
        "id": "req-1",
        "model": "demo-rerank",
        "results": [
            {"index": 1, "relevance_score": 0.75, "document": {"text": "beta"}},
            {"index": 0, "relevance_score": 0.25, "document": {"text": "alpha"}},
        ],
        "meta": {"billed_units": {"search_units": 1}},
    }


def test_answer_billed_in_tokens_carries_usage_and_no_documents_unasked() -> None:
    body = b'{"model": "demo-rerank", "query": "q", "documents": ["alpha"]}'
    answer = render(V2, body, RerankResult(id="", results=[RerankHit(0, 0.5)]), Usage(prompt_tokens=12))
    assert answer["results"] == [{"index": 0, "relevance_score": 0.5}]
    assert answer["meta"] == {"billed_units": {"input_tokens": 12}} and answer["usage"] == {"total_tokens": 12}


# -- the mock, answering each adapter in its provider's shape -------------------


async def mock_call(dep: Deployment, t: RerankRequest, mock: MockUpstream) -> CallOutcome:
    async with contextlib.aclosing(UpstreamHTTP(httpx.ASGITransport(mock))) as client:
        return await rerank_call.call(client, dep, t, CallProgress())


async def mock_usage(mock: MockUpstream) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        return (await client.get("/mock/usage", params={"last": 1})).json()[0]


@pytest.mark.parametrize("dep", [COHERE, JINA, VOYAGE, VLLM], ids=lambda d: d.provider)
async def test_the_mock_answers_each_adapter(dep: Deployment) -> None:
    mock = MockUpstream()
    mock_dep = msgspec.structs.replace(dep, base_url="http://mock" + ("/v1" if dep.provider != "cohere" else ""))
    outcome = await mock_call(mock_dep, task(top_n=2), mock)
    assert isinstance(outcome.task_result, RerankResult)
    # Word overlap with the query: documents 2 and 4 hold 6 of its 7 words (a tie keeps their order).
    assert [h.index for h in outcome.task_result.results] == [2, 4]
    billed = await mock_usage(mock)
    if dep.provider == "cohere":
        assert billed == {"search_units": outcome.usage.units} and outcome.usage.unit == "search_unit"
    else:
        assert billed == {"prompt_tokens": outcome.usage.prompt_tokens, "completion_tokens": 0}
        assert outcome.usage.source == "reported"


async def test_the_mock_refuses_a_field_its_provider_does_not_define() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(MockUpstream()), base_url="http://mock") as client:
        v2 = await client.post("/v2/rerank", json={"model": "r", "query": "q", "documents": ["a"], "top_k": 1})
        objects = await client.post("/v2/rerank", json={"model": "r", "query": "q", "documents": [{"text": "a"}]})
        voyage = await client.post(
            "/v1/rerank", json={"model": "r", "query": "q", "documents": [{"text": "a"}], "truncation": True}
        )
        jina = await client.post("/v1/rerank", json={"model": "r", "query": "q", "documents": [{"text": "a"}]})
        fault = await client.post("/v1/rerank", json={"model": "r", "query": "q [mock:status=503]", "documents": ["a"]})
    assert v2.status_code == objects.status_code == voyage.status_code == 400
    assert "message" in v2.json() and "detail" in voyage.json()
    assert jina.status_code == 200 and jina.json()["results"][0]["document"] == {"text": "a"}
    assert fault.status_code == 503 and "detail" in fault.json()
