"""Voyage's rerank (``POST /v1/rerank``) as an upstream.

The request is ``{model, query, documents, top_k, return_documents,
truncation}`` (``top_k``, not ``top_n``; documents as strings); the answer
``{object: "list", data: [{index, relevance_score, document?}], model,
usage: {total_tokens}}``. Voyage bills tokens: ``usage.total_tokens``
(the query's tokens times the documents, plus every document's).
``return_documents`` is always false (the gateway has the documents), and
``truncation`` is sent as Voyage's default (true) so a long document is cut
to the model's context rather than refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError
from schemas.tasks import RerankHit, RerankRequest
from services.providers.base import UpstreamRequest
from services.providers.openai.errors import map_error
from services.providers.rerank_adapter import Reported, RerankAnswer, bearer_json_headers, document_texts, read_ranking


class _Body(msgspec.Struct, omit_defaults=True):
    model: str
    query: str
    documents: list[str]
    # Both always written, whatever Voyage's defaults are now.
    return_documents: bool
    truncation: bool
    top_k: int | None = None


class _Result(msgspec.Struct):
    index: int
    relevance_score: float


class _Usage(msgspec.Struct):
    total_tokens: Reported


class _Answer(msgspec.Struct):
    data: list[_Result]
    model: str = ""
    usage: _Usage | None = None


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_Answer).decode


class VoyageRerank:
    bills_search_units = False

    def build_rerank_request(self, deployment: Deployment, task: RerankRequest, api_key: str | None) -> UpstreamRequest:
        body = _Body(
            model=deployment.upstream_model,
            query=task.query,
            documents=document_texts(task),
            return_documents=False,
            truncation=True,
            top_k=task.top_n,
        )
        return UpstreamRequest(
            url=f"{deployment.base_url}/rerank", headers=bearer_json_headers(api_key), content=_encode(body)
        )

    def parse_rerank(self, data: bytes) -> RerankAnswer:
        answer = read_ranking(_decode_answer, data)
        usage = Usage(prompt_tokens=answer.usage.total_tokens, source="reported") if answer.usage else None
        hits = [RerankHit(index=r.index, relevance_score=r.relevance_score) for r in answer.data]
        return RerankAnswer(hits=hits, usage=usage, model=answer.model)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return map_error(status, body, headers)  # {"detail": ...}, read leniently
