"""Jina's rerank (``POST /v1/rerank``) as an upstream, and the servers that
speak its shape (vLLM, Infinity): ``<base_url>/rerank``, the base URL
ending in ``/v1`` as for their OpenAI-compatible endpoints.

The request is ``{model, query, documents, top_n, return_documents}``;
``return_documents`` is always false (the gateway has the documents, so
the answer need not carry them back). The answer is ``{model, usage:
{total_tokens}, results: [{index, relevance_score, document?}]}``; vLLM
adds ``id``. Jina bills tokens: ``usage.total_tokens``. It has no
``max_tokens_per_doc``: that is Cohere's alone, and is not sent.
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
    # Always written: Jina's default is true.
    return_documents: bool
    top_n: int | None = None


class _Result(msgspec.Struct):
    index: int
    relevance_score: float


class _Usage(msgspec.Struct):
    total_tokens: Reported | None = None
    prompt_tokens: Reported | None = None


class _Answer(msgspec.Struct):
    results: list[_Result]
    model: str = ""
    id: str = ""
    usage: _Usage | None = None


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_Answer).decode


class JinaRerank:
    bills_search_units = False

    def build_rerank_request(self, deployment: Deployment, task: RerankRequest, api_key: str | None) -> UpstreamRequest:
        body = _Body(
            model=deployment.upstream_model,
            query=task.query,
            documents=document_texts(task),
            return_documents=False,
            top_n=task.top_n,
        )
        return UpstreamRequest(
            url=f"{deployment.base_url}/rerank", headers=bearer_json_headers(api_key), content=_encode(body)
        )

    def parse_rerank(self, data: bytes) -> RerankAnswer:
        answer = read_ranking(_decode_answer, data)
        u = answer.usage
        # total_tokens is what Jina bills; Infinity also writes prompt_tokens (the same count).
        total = (u.total_tokens if u.total_tokens is not None else u.prompt_tokens) if u is not None else None
        usage = Usage(prompt_tokens=total, source="reported") if total is not None else None
        hits = [RerankHit(index=r.index, relevance_score=r.relevance_score) for r in answer.results]
        return RerankAnswer(hits=hits, usage=usage, id=answer.id, model=answer.model)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return map_error(status, body, headers)  # {"detail": ...} (FastAPI's), read leniently
