"""Moderations and rerank end to end: the official ``openai`` SDK's
``moderations.create``, rerank over httpx in Cohere's (``/v2/rerank``) and
Jina's (``/v1/rerank``) shapes to Cohere, Jina, Voyage and an
OpenAI-compatible server (all the mock), each row's units and cost exact
against what the mock billed, and hostile requests answered 400.

(The ``cohere`` SDK is not installed in this environment, so Cohere's shape
is spoken with httpx.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from services import pricing
from tests.stack import DEMO_KEY, PRIVATE_KEY, TASK_MODELS, Stack

EXTRA = (
    TASK_MODELS
    + """
[[models]]
name = "rerank-jina"
provider = "jina"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "jina-reranker-v2-base-multilingual"

[[models]]
name = "rerank-voyage"
provider = "voyage"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "rerank-2"

[[models]]
name = "text-moderation"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/v1"
upstream_model = "text-moderation-latest"
"""
)
# Each rerank model's catalog entry (its upstream model's name), which prices it.
TOKEN_RERANKERS = {
    "demo-rerank-jina": "jina-reranker-v2-base-multilingual",
    "rerank-jina": "jina-reranker-v2-base-multilingual",
    "rerank-voyage": "rerank-2",
}
QUERY = "What is the capital of the United States?"
DOCUMENTS: list[Any] = [
    "Carson City is the capital city of Nevada.",
    {"text": "The capital of France is Paris."},
    "Washington, D.C. is the capital of the United States.",
    "Capital punishment has existed in the United States since before it was a country.",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Bodies up to 2 MB reach the rows' own checks (a 1 MB query is theirs to refuse, not the size limit's).
    s = Stack(tmp_path_factory.mktemp("modrerank"), extra_config=EXTRA, max_body_bytes=2_000_000).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(stack: Stack) -> Iterator[httpx.Client]:
    with client(stack, DEMO_KEY) as c:
        yield c


def client(stack: Stack, key: str) -> httpx.Client:
    """At the gateway's root: rerank is served at /v1/rerank and /v2/rerank."""
    root = stack.base_url.removesuffix("/v1")
    return httpx.Client(base_url=root, headers={"authorization": f"Bearer {key}"}, timeout=20)


def billed(stack: Stack) -> Any:
    """What the mock billed for its last answer (``/mock/usage``)."""
    return httpx.get(f"{stack.mock_url}/mock/usage", params={"last": 1}).json()[0]


def rerank(http: httpx.Client, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r.headers["x-request-id"], r.json()


@pytest.mark.timeout(60)
def test_moderation_with_the_openai_sdk(stack: Stack) -> None:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as client:
        raw = client.moderations.with_raw_response.create(
            model="demo-moderation", input=["a calm day", "we attack at dawn", "fine [mock:flag=harassment]"]
        )
        answer = raw.parse()
        parts = client.moderations.create(
            model="demo-moderation",
            input=[
                {"type": "text", "text": "a quiet garden"},
                {"type": "image_url", "image_url": {"url": "https://example.test/garden.png"}},
            ],
        )
        legacy = client.moderations.create(model="text-moderation", input="kill the lights")
    request_id = raw.headers["x-request-id"]
    assert answer.id == request_id and answer.model == "demo-moderation"
    calm, attack, directed = answer.results
    assert not calm.flagged and attack.flagged and attack.categories.violence
    assert attack.category_scores.violence > 0.9 and directed.categories.harassment
    assert attack.category_applied_input_types.violence == ["text"]
    [verdict] = parts.results
    assert not verdict.flagged and verdict.category_applied_input_types.violence == ["text", "image"]
    [old] = legacy.results
    assert old.flagged and old.categories.illicit is None
    # Free, but counted: the row holds the text's tokens and costs nothing.
    row = stack.request_row(request_id)
    assert row["api"] == "moderations" and row["status"] == 200, row
    assert row["prompt_tokens"] > 0 and row["cost_pico_usd"] == 0 and row["units"] == 0


@pytest.mark.timeout(60)
def test_rerank_in_cohere_v2s_shape_bills_search_units(stack: Stack, http: httpx.Client) -> None:
    request_id, answer = rerank(
        http, "/v2/rerank", {"model": "demo-rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 2}
    )
    units = billed(stack)["search_units"]
    assert answer["id"] == request_id and answer["model"] == "demo-rerank"
    # Word overlap with the query: the Washington document (6 of its 7 words) first, then the
    # first of the three that hold 4 (a tie keeps the documents' order); v2 returns no documents.
    assert [r["index"] for r in answer["results"]] == [2, 0]
    assert all("document" not in r for r in answer["results"])
    assert answer["meta"] == {"billed_units": {"search_units": units}} and "usage" not in answer
    row = stack.request_row(request_id)
    assert row["api"] == "rerank" and row["unit"] == "search_unit" and row["units"] == units == 1
    per_unit = pricing.unit_price("rerank-v3.5", "search_unit")
    assert per_unit is not None and row["cost_pico_usd"] == row["cost_units_pico_usd"] == units * per_unit


@pytest.mark.timeout(60)
@pytest.mark.parametrize("model", sorted(TOKEN_RERANKERS))
def test_rerank_in_jinas_shape_bills_tokens(stack: Stack, http: httpx.Client, model: str) -> None:
    request_id, answer = rerank(http, "/v1/rerank", {"model": model, "query": QUERY, "documents": DOCUMENTS})
    tokens = billed(stack)["prompt_tokens"]
    # /v1/rerank returns the documents unless asked not to (Jina's default), objects as given.
    assert [(r["index"], r["document"]["text"]) for r in answer["results"][:2]] == [
        (2, DOCUMENTS[2]),
        (0, DOCUMENTS[0]),
    ]
    assert answer["results"][2]["document"] == DOCUMENTS[1]
    assert answer["results"][-1]["relevance_score"] <= answer["results"][0]["relevance_score"]
    assert answer["usage"] == {"total_tokens": tokens} and answer["meta"]["billed_units"] == {"input_tokens": tokens}
    row = stack.request_row(request_id)
    assert row["prompt_tokens"] == tokens and row["unit"] == "" and row["units"] == 0
    price = pricing.price_for(TOKEN_RERANKERS[model])
    assert price is not None and row["cost_pico_usd"] == tokens * price.input > 0


@pytest.mark.timeout(60)
def test_a_masked_document_comes_back_as_the_caller_wrote_it(stack: Stack) -> None:
    documents = ["Write to jane.doe@example.com about the capital", "The capital of France is Paris."]
    body = {"model": "demo-rerank", "query": "capital", "documents": documents, "return_documents": True}
    with client(stack, PRIVATE_KEY) as c:
        r = c.post("/v2/rerank", json=body)
    assert r.status_code == 200, r.text
    sent = httpx.get(f"{stack.mock_url}/mock/last-request").json()
    assert "jane.doe@example.com" not in sent["documents"][0]
    assert sorted(hit["document"]["text"] for hit in r.json()["results"]) == sorted(documents)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "body",
    [
        {"model": "demo-rerank", "query": "q", "documents": ["d"] * 10_000},
        {"model": "demo-rerank", "query": "q" * 1_000_000, "documents": ["d"]},
        {"model": "demo-rerank", "query": "q", "documents": [[["nested"]], {"junk": {"deeper": [1]}}]},
        {"model": "demo-rerank", "query": "q", "documents": ["d"], "top_n": 0},
        {"model": "demo-rerank", "query": {"text": "q"}, "documents": ["d"]},
    ],
    ids=["10k-documents", "1mb-query", "nested-junk", "top-n-0", "query-object"],
)
def test_hostile_rerank_requests_are_400(http: httpx.Client, body: dict[str, Any]) -> None:
    for path in ("/v1/rerank", "/v2/rerank"):
        r = http.post(path, json=body)
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.timeout(60)
def test_models_are_called_on_their_own_endpoint(http: httpx.Client) -> None:
    chat = http.post("/v1/rerank", json={"model": "demo-model", "query": "q", "documents": ["d"]})
    assert chat.status_code == 400 and "/v1/chat/completions" in chat.json()["error"]["message"]
    ranker = http.post(
        "/v1/chat/completions", json={"model": "demo-rerank", "messages": [{"role": "user", "content": "x"}]}
    )
    assert ranker.status_code == 400 and "/v1/rerank" in ranker.json()["error"]["message"]
    moderator = http.post("/v2/rerank", json={"model": "demo-moderation", "query": "q", "documents": ["d"]})
    assert moderator.status_code == 400 and "/v1/moderations" in moderator.json()["error"]["message"]
