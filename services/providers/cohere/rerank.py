"""Cohere's rerank (``POST /v2/rerank``) as an upstream.

v2 takes the documents as strings alone (an object's ``text`` is sent),
``top_n`` and ``max_tokens_per_doc``; it never returns the documents (the
gateway has them). Cohere bills search units: ``meta.billed_units.search_units``
(a query with up to 100 documents is one; a document longer than 500
tokens, query included, counts as several).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError
from schemas.tasks import RerankHit, RerankRequest
from services.providers.base import UpstreamRequest
from services.providers.openai.errors import map_error
from services.providers.rerank_adapter import RerankAnswer, bearer_json_headers, document_texts, read_ranking


class _Body(msgspec.Struct, omit_defaults=True):
    model: str
    query: str
    documents: list[str]
    top_n: int | None = None
    max_tokens_per_doc: int | None = None


class _Result(msgspec.Struct):
    index: int
    relevance_score: float


class _BilledUnits(msgspec.Struct):
    # A whole number, written as a float ("search_units": 1.0).
    search_units: Annotated[float, msgspec.Meta(ge=0, le=10**12)] | None = None


class _Meta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _Answer(msgspec.Struct):
    results: list[_Result]
    id: str = ""
    meta: _Meta | None = None


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_Answer).decode


class CohereRerank:
    bills_search_units = True

    def build_rerank_request(self, deployment: Deployment, task: RerankRequest, api_key: str | None) -> UpstreamRequest:
        body = _Body(
            model=deployment.upstream_model,
            query=task.query,
            documents=document_texts(task),
            top_n=task.top_n,
            max_tokens_per_doc=task.max_tokens_per_doc,
        )
        return UpstreamRequest(
            url=f"{deployment.base_url}/v2/rerank", headers=bearer_json_headers(api_key), content=_encode(body)
        )

    def parse_rerank(self, data: bytes) -> RerankAnswer:
        answer = read_ranking(_decode_answer, data)
        billed = answer.meta.billed_units if answer.meta is not None else None
        units = billed.search_units if billed is not None else None
        usage = Usage(units=int(units), unit="search_unit", source="reported") if units is not None else None
        hits = [RerankHit(index=r.index, relevance_score=r.relevance_score) for r in answer.results]
        return RerankAnswer(hits=hits, usage=usage, id=answer.id)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return map_error(status, body, headers)  # {"message": ...} at the top level, read leniently
