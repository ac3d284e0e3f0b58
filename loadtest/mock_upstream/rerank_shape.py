"""The mock's rerank, in the shape of the provider the request is for:

* ``/v2/rerank``: Cohere v2. ``{model, query, documents (strings), top_n,
  max_tokens_per_doc}`` -> ``{id, results: [{index, relevance_score}],
  meta: {api_version, billed_units: {search_units}}}``.
* ``/v1/rerank`` with ``top_k`` or ``truncation`` (fields only Voyage
  defines): Voyage. -> ``{object: "list", data: [{index, relevance_score,
  document?}], model, usage: {total_tokens}}``, documents back (as strings)
  only when ``return_documents`` is true.
* any other ``/v1/rerank``: Jina (and vLLM, Infinity). Documents as strings
  or ``{text}`` -> ``{model, usage: {total_tokens}, results: [{index,
  relevance_score, document?: {text}}]}``, documents back unless
  ``return_documents`` is false.

A field the provider does not define is refused with its 400, so an
adapter that mixes the shapes fails here rather than in production.

Scores are deterministic: the share of the query's words found in the
document (ties keep the documents' order). Usage, recorded in
``/mock/usage`` as the answer says it: Cohere's search units (a query with
up to 100 documents is one; a document past 500 words, query included,
counts once more per 500), ``{"search_units": N}``; the others' tokens, a
word each, as Voyage defines a reranker's (the query's once per document,
plus every document's), ``{"prompt_tokens": N, "completion_tokens": 0}``.
The chat faults apply (``[mock:status=429]``, ``latency_ms``, ``hang``) from
the query.
"""

from __future__ import annotations

import math
import re
import uuid
from types import SimpleNamespace
from typing import Any

import msgspec

from loadtest.mock_upstream.faults import apply_directives

# The providers' own limits on the number of documents.
MAX_DOCUMENTS = {"cohere": 10_000, "jina": 2_048, "voyage": 1_000}
COHERE_FIELDS = frozenset({"model", "query", "documents", "top_n", "max_tokens_per_doc", "priority"})
JINA_FIELDS = frozenset({"model", "query", "documents", "top_n", "return_documents"})
VOYAGE_FIELDS = frozenset({"model", "query", "documents", "top_k", "return_documents", "truncation"})
DOCUMENTS_PER_SEARCH_UNIT = 100
CHUNK_WORDS = 500
COHERE_MAX_TOKENS_PER_DOC = 4096
_WORD = re.compile(r"\w+")
_json = msgspec.json.Encoder()


def handles(path: str) -> bool:
    """Whether this shape answers path."""
    return path.endswith("/rerank")


async def handle(mock: Any, behaviour: Any, path: str, scope: dict, raw: bytes, send: Any) -> None:
    """Answer the request (raw: its whole body) through mock._send."""
    try:
        req = msgspec.json.decode(raw)
        family = _family(path, req)
        texts = _documents(family, req)
        query = req["query"]
        if not isinstance(query, str) or not query:
            raise ValueError("query must be a non-empty string")
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        family = "cohere" if path.endswith("/v2/rerank") else "jina"
        return await mock._send(send, 400, _json.encode(_error(family, f"invalid request: {exc}")))
    b = apply_directives(behaviour, query)
    if await mock._fault(SimpleNamespace(error=lambda status: _error(family, f"mock error {status}")), b, send):
        return
    ranked = sorted(range(len(texts)), key=lambda i: -_score(query, texts[i]))
    top = req.get("top_k" if family == "voyage" else "top_n")
    if isinstance(top, int) and top > 0:
        ranked = ranked[:top]
    answer = _ANSWERS[family](req, query, texts, ranked)
    mock.usages.append(_json.encode(_usage_row(answer)))
    await mock._send(send, 200, _json.encode(answer))
    mock.stats.completed_requests += 1


def _family(path: str, req: Any) -> str:
    if path.endswith("/v2/rerank"):
        family, known = "cohere", COHERE_FIELDS
    elif "top_k" in req or "truncation" in req:
        family, known = "voyage", VOYAGE_FIELDS
    else:
        family, known = "jina", JINA_FIELDS
    unknown = sorted(set(req) - known)
    if unknown:
        raise ValueError(f"unknown field(s) for {family}: {', '.join(unknown)}")
    return family


def _documents(family: str, req: Any) -> list[str]:
    documents = req["documents"]
    if not isinstance(documents, list) or not documents or len(documents) > MAX_DOCUMENTS[family]:
        raise ValueError(f"documents must be a list of 1 to {MAX_DOCUMENTS[family]} documents")
    texts = []
    for doc in documents:
        # Only Jina takes a document as an object; Cohere v2 and Voyage take strings.
        if family == "jina" and isinstance(doc, dict):
            doc = doc["text"]
        if not isinstance(doc, str):
            raise ValueError("a document must be a string")
        texts.append(doc)
    return texts


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _score(query: str, document: str) -> float:
    wanted = set(_words(query))
    return len(wanted & set(_words(document))) / len(wanted) if wanted else 0.0


def _tokens(query: str, texts: list[str]) -> int:
    return len(_words(query)) * len(texts) + sum(len(_words(t)) for t in texts)


def _cohere(req: Any, query: str, texts: list[str], ranked: list[int]) -> dict[str, Any]:
    cap = req.get("max_tokens_per_doc") or COHERE_MAX_TOKENS_PER_DOC
    q = len(_words(query))
    chunks = sum(max(1, math.ceil((q + min(len(_words(t)), cap)) / CHUNK_WORDS)) for t in texts)
    units = math.ceil(chunks / DOCUMENTS_PER_SEARCH_UNIT)
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": i, "relevance_score": _score(query, texts[i])} for i in ranked],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": units}},
    }


def _jina(req: Any, query: str, texts: list[str], ranked: list[int]) -> dict[str, Any]:
    back = req.get("return_documents", True) is not False
    results = []
    for i in ranked:
        hit: dict[str, Any] = {"index": i, "relevance_score": _score(query, texts[i])}
        if back:
            hit["document"] = {"text": texts[i]}
        results.append(hit)
    return {"model": req.get("model", "mock"), "usage": {"total_tokens": _tokens(query, texts)}, "results": results}


def _voyage(req: Any, query: str, texts: list[str], ranked: list[int]) -> dict[str, Any]:
    back = req.get("return_documents") is True
    data = []
    for i in ranked:
        hit: dict[str, Any] = {"relevance_score": _score(query, texts[i]), "index": i}
        if back:
            hit["document"] = texts[i]
        data.append(hit)
    usage = {"total_tokens": _tokens(query, texts)}
    return {"object": "list", "data": data, "model": req.get("model", "mock"), "usage": usage}


_ANSWERS = {"cohere": _cohere, "jina": _jina, "voyage": _voyage}


def _usage_row(answer: dict[str, Any]) -> dict[str, int]:
    if "meta" in answer:
        return {"search_units": answer["meta"]["billed_units"]["search_units"]}
    return {"prompt_tokens": answer["usage"]["total_tokens"], "completion_tokens": 0}


def _error(family: str, message: str) -> dict[str, Any]:
    """Cohere writes ``{id, message}``; Jina and Voyage (FastAPI) ``{detail}``."""
    if family == "cohere":
        return {"id": str(uuid.uuid4()), "message": message}
    return {"detail": message}
