"""Rerank in the shape Cohere and Jina define it: ``POST /v1/rerank`` (Jina's
path, and Cohere's v1) and ``POST /v2/rerank`` (Cohere's v2), whatever
provider serves the model (Cohere, Jina, Voyage, vLLM, Infinity).

The request is ``{model, query, documents, top_n, return_documents,
max_tokens_per_doc}``, documents as strings or ``{text}`` objects (other
fields of an object, Cohere v1's ``rank_fields``, are not read). The answer
is ``{id, model, results: [{index, relevance_score, document?: {text}}],
meta: {billed_units}}``, plus Jina's ``usage`` when the ranking was billed in
tokens. The documents an answer returns are the caller's own, taken from
the request by index: an upstream is never asked to send them back, and a
tenant's masked documents come back as the caller wrote them.

``return_documents`` left out: returned at ``/v1/rerank`` (Jina's default;
a Cohere v1 client ignores the field) and not at ``/v2/rerank`` (Cohere v2
has no such parameter and never returns them).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from schemas.chat import Integral, Usage, integral
from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final
from schemas.reservation import RateState
from schemas.tasks import RerankDocument, RerankRequest, RerankResult
from services.apis import openai_shapes, rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, WholeAnswers, bearer, decode_json
from services.providers.rerank_adapter import document_texts

# Voyage refuses more than 1,000 documents and Cohere advises against them;
# a caller with more splits them (each split is ranked on its own anyway).
MAX_DOCUMENTS = 1_000
# Voyage's longest query is 8,000 tokens (rerank-2.5): some 32,000 characters.
MAX_QUERY_CHARS = 32_000


class RerankBody(msgspec.Struct, omit_defaults=True):
    """A rerank request as the caller writes it."""

    model: str
    query: str
    documents: list[str | RerankDocument]
    top_n: Integral | None = None
    return_documents: bool | None = None
    max_tokens_per_doc: Integral | None = None

    def __post_init__(self) -> None:
        self.top_n = integral("top_n", self.top_n)
        self.max_tokens_per_doc = integral("max_tokens_per_doc", self.max_tokens_per_doc)


class RankedText(msgspec.Struct):
    text: str


class Ranked(msgspec.Struct, omit_defaults=True):
    index: int
    relevance_score: float
    document: RankedText | None = None


class BilledUnits(msgspec.Struct, omit_defaults=True):
    search_units: int | None = None
    input_tokens: int | None = None


class RerankMeta(msgspec.Struct):
    billed_units: BilledUnits


class TokenUsage(msgspec.Struct):
    total_tokens: int


class RerankAnswer(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    results: list[Ranked]
    meta: RerankMeta
    usage: TokenUsage | None = None


_decode_body = msgspec.json.Decoder(RerankBody).decode
_encode = msgspec.json.Encoder().encode


def parser(documents_by_default: bool) -> Callable[[bytes], Parsed]:
    """The parse of one path: ``documents_by_default``, whether an answer
    returns the documents when the request does not say."""

    def parse(raw: bytes) -> Parsed:
        body = decode_json(_decode_body, raw)
        check(body)
        returned = body.return_documents if body.return_documents is not None else documents_by_default
        task = RerankRequest(
            model=body.model,
            query=body.query,
            documents=body.documents,
            top_n=body.top_n,
            return_documents=returned,
            max_tokens_per_doc=body.max_tokens_per_doc,
        )
        return Parsed(model=body.model, task=task)

    return parse


def check(body: RerankBody) -> None:
    """What no provider would rank, refused before anything is published."""
    if not body.query.strip():
        raise InvalidRequest("'query' must be a non-empty string.")
    if len(body.query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"'query' is {len(body.query)} characters long; at most {MAX_QUERY_CHARS} are ranked.")
    if not body.documents:
        raise InvalidRequest("'documents' must hold at least one document.")
    if len(body.documents) > MAX_DOCUMENTS:
        raise InvalidRequest(f"'documents' holds {len(body.documents)} documents; at most {MAX_DOCUMENTS} are ranked.")
    if body.top_n is not None and body.top_n < 1:
        raise InvalidRequest("'top_n' must be at least 1.")
    if body.max_tokens_per_doc is not None and body.max_tokens_per_doc < 1:
        raise InvalidRequest("'max_tokens_per_doc' must be at least 1.")


def billed(usage: Usage) -> tuple[RerankMeta, TokenUsage | None]:
    """Cohere's ``meta.billed_units`` (search units, or input tokens), and
    Jina's ``usage`` for a ranking billed in tokens."""
    if usage.unit == "search_unit":
        return RerankMeta(BilledUnits(search_units=usage.units)), None
    return RerankMeta(BilledUnits(input_tokens=usage.prompt_tokens)), TokenUsage(usage.prompt_tokens)


class RerankRenderer(WholeAnswers):
    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def final(self, f: Final) -> bytes:
        result = f.task_result
        task = self.r.parsed.task
        assert isinstance(result, RerankResult) and isinstance(task, RerankRequest), "a rerank answers a ranking"
        texts = document_texts(task)
        ranked = [
            Ranked(
                index=hit.index,
                relevance_score=hit.relevance_score,
                document=RankedText(texts[hit.index])
                if task.return_documents and 0 <= hit.index < len(texts)
                else None,
            )
            for hit in result.results
        ]
        meta, usage = billed(f.usage)
        return _encode(RerankAnswer(id=self.r.id, model=self.r.model, results=ranked, meta=meta, usage=usage))

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


def _row(path: str, documents_by_default: bool, summary: str) -> ClientApi:
    return ClientApi(
        "rerank",
        path,
        parser(documents_by_default),
        RerankRenderer,
        openai_shapes.error,
        bearer,
        RerankBody,
        RerankAnswer,
        summary,
        streams=False,
    )


APIS: tuple[ClientApi, ...] = (
    _row("/v1/rerank", True, "Rerank (Jina's and Cohere's v1 shape)"),
    _row("/v2/rerank", False, "Rerank (Cohere's v2 shape)"),
)
