"""The rerank requests' upstream call: the family's rerank adapter
(Cohere, Jina, Voyage, the compatible servers), the ranking checked
against the request, the usage settled and priced.

Usage is the upstream's word when it gave one: search units for Cohere
(``Usage.units``, unit "search_unit", priced per thousand), tokens for the
others (``Usage.prompt_tokens``, priced per token). Without it, the same
units are estimated by the definitions the providers publish (labelled
"counted" or "estimated" as the chat's are), counted as the reservation
counts them (``task_usage``), so an estimate never bills past it.
"""

from __future__ import annotations

import time

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamError
from schemas.tasks import RerankRequest, RerankResult
from services import task_usage
from services import usage as usage_svc
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import Upstream
from services.providers.registry import provider
from services.providers.rerank_adapter import RerankAnswer
from services.providers.tasks import task_outcome
from services.providers.tasks.json_call import post_json


async def call(client: Upstream, dep: Deployment, task: RerankRequest, progress: CallProgress) -> CallOutcome:
    """One try of ``task`` at ``dep``."""
    adapter = provider(dep.provider).rerank
    if adapter is None:
        refused = InvalidRequest(f"Model deployment {dep.name!r} ({dep.provider}) serves no rerank.")
        raise CallFailed(refused, time.time_ns(), 0)

    def read(data: bytes) -> RerankAnswer:
        return checked(adapter.parse_rerank(data), task)

    answer, start_ns, first_byte_ns = await post_json(
        client, dep, adapter.build_rerank_request, task, read, adapter.map_error, progress
    )
    usage = answer.usage or estimate_usage(task, dep.catalog_model, search_units=adapter.bills_search_units)
    return task_outcome(
        answer.model or dep.upstream_model,
        usage,
        usage_svc.cost_of(usage, dep.catalog_model),
        RerankResult(id=answer.id, results=answer.hits),
        start_ns,
        first_byte_ns,
    )


def checked(answer: RerankAnswer, task: RerankRequest) -> RerankAnswer:
    """The ranking, best first, when it ranks the request's documents: each
    index one of them and given once, at most ``top_n`` of them (an upstream
    that sent more is cut to what was asked). Else an ``UpstreamError``: an
    index past the documents would make the caller's answer point nowhere."""
    count = len(task.documents)
    seen: set[int] = set()
    for hit in answer.hits:
        if not 0 <= hit.index < count or hit.index in seen:
            raise UpstreamError(f"Upstream ranked document {hit.index}, of {count} documents (or twice).")
        seen.add(hit.index)
    hits = sorted(answer.hits, key=lambda h: -h.relevance_score)
    return msgspec.structs.replace(answer, hits=hits[: task.top_n] if task.top_n is not None else hits)


def estimate_usage(task: RerankRequest, catalog_model: str | None, *, search_units: bool) -> Usage:
    """What a ranking the upstream did not report uses: Cohere's search
    units (``search_units``), else tokens as Voyage defines them for a
    reranker: the query's tokens once per document, plus every document's."""
    _, source = usage_svc.tokenizer_for(catalog_model)
    if not search_units:
        return Usage(prompt_tokens=task_usage.rerank_tokens(task, catalog_model), source=source)
    return Usage(units=task_usage.search_units(task, catalog_model), unit="search_unit", source=source)
