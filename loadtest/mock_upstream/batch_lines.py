"""One line of a provider batch, answered as the mock answers that request
posted alone (``POST /v1/chat/completions``, ``/v1/embeddings``,
``/v1/responses``, ``/v1/messages``): the same shape functions, directives
and usage, never streamed. A line's ``[mock:status=NNN]`` fails that line
alone, with the status and error body a direct request would get; timing
directives (``latency_ms``, ``hang``, ``chunk_ms``, ``cut_after``) mean nothing
in a batch and are ignored."""

from __future__ import annotations

from typing import Any

import msgspec

from loadtest.mock_upstream import anthropic_shape, openai_shape, responses_shape
from loadtest.mock_upstream.answer import Answer, plan
from loadtest.mock_upstream.faults import Behaviour, apply_directives, holds_tool_result

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_json = msgspec.json.Encoder()

# The endpoints whose lines the mock answers (OpenAI's and Azure's batches; Azure's
# "/chat/completions" is read as "/v1/chat/completions").
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
OPENAI_ENDPOINTS = (CHAT, EMBEDDINGS, RESPONSES)


class LineAnswer(msgspec.Struct):
    """What one line got: the HTTP status a direct request would have had, its
    body, and the tokens it billed (``prompt_tokens``, and ``completion_tokens``
    but for embeddings) as GET /mock/batches reports them; None: billed nothing
    (an error), or answered without usage (``[mock:no_usage]``)."""

    status: int
    body: dict[str, Any]
    usage: dict[str, int] | None


def _refused(status: int, body: dict[str, Any]) -> LineAnswer:
    return LineAnswer(status, body, None)


def _counted(b: Behaviour, a: Answer) -> dict[str, int] | None:
    return None if b.no_usage else {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens}


def _structured(req: dict[str, Any]) -> tuple[dict | None, bool]:
    # The chat route's own reading of a request's schema: imported here, as the app imports this module.
    from loadtest.mock_upstream.app import _structured as structured

    return structured(req)


def _body(raw: bytes) -> dict[str, Any] | None:
    try:
        return _decode(raw)
    except msgspec.DecodeError:
        return None


def answer_openai(endpoint: str, raw: bytes, base: Behaviour) -> LineAnswer:
    """A line of an OpenAI (or Azure) batch to ``endpoint`` (one of OPENAI_ENDPOINTS)."""
    req = _body(raw)
    if req is None:
        return _refused(400, openai_shape.error(400))
    if endpoint == EMBEDDINGS:
        return _embeddings(req, base)
    if endpoint == RESPONSES:
        return _responses(raw, req, base)
    try:
        prompt, last, count, tools = openai_shape.read(req)
    except (KeyError, TypeError, AttributeError):
        return _refused(400, openai_shape.error(400))
    b = _directed(base, prompt, raw)
    if b.status != 200:
        return _refused(b.status, openai_shape.error(b.status))
    answer = plan(prompt, last, count, tools, b, *_structured(req))
    if isinstance(req.get("n"), int) and 1 < req["n"] <= 8:
        answer.choices = req["n"]
        answer.completion_tokens *= req["n"]
    return LineAnswer(200, openai_shape.complete(answer, str(req.get("model", "mock"))), _counted(b, answer))


def _embeddings(req: dict[str, Any], base: Behaviour) -> LineAnswer:
    b = apply_directives(base, _json.encode(req).decode())
    if b.status != 200:
        return _refused(b.status, openai_shape.error(b.status))
    try:
        body = openai_shape.embeddings(req)
    except (KeyError, TypeError, AttributeError, ValueError):
        return _refused(400, openai_shape.error(400))
    return LineAnswer(200, body, {"prompt_tokens": body["usage"]["prompt_tokens"]})


def _responses(raw: bytes, req: dict[str, Any], base: Behaviour) -> LineAnswer:
    refused = responses_shape.refuse(req)
    if refused is not None:
        return _refused(400, refused)
    try:
        prompt, last, count, tools = responses_shape.read(req)
    except (KeyError, TypeError, AttributeError):
        return _refused(400, responses_shape.error(400))
    b = _directed(base, prompt, raw)
    if b.status != 200:
        return _refused(b.status, responses_shape.error(b.status))
    planned = plan(prompt, last, count, tools, b, *responses_shape.structured(req))
    answer = responses_shape.with_arguments(planned, tools, last)
    prompt_tokens, completion_tokens = responses_shape.counted(answer, req)
    usage = None if b.no_usage else {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    return LineAnswer(200, responses_shape.complete(answer, req), usage)


def answer_anthropic(raw: bytes, base: Behaviour) -> LineAnswer:
    """A request of an Anthropic Message Batch (its ``params``)."""
    req = _body(raw)
    if req is None:
        return _refused(400, anthropic_shape.error(400))
    if req.get("stream"):  # Message Batches refuse a streamed request, as the API reference says
        return _refused(400, anthropic_shape.error(400))
    try:
        prompt, last, count, tools = anthropic_shape.read(req)
    except (KeyError, TypeError, AttributeError):
        return _refused(400, anthropic_shape.error(400))
    b = _directed(base, prompt, raw)
    if b.status != 200:
        return _refused(b.status, anthropic_shape.error(b.status))
    answer = plan(prompt, last, count, tools, b)
    return LineAnswer(200, anthropic_shape.complete(answer, str(req.get("model", "mock"))), _counted(b, answer))


def _directed(base: Behaviour, prompt: str, raw: bytes) -> Behaviour:
    b = apply_directives(base, prompt)
    if b.tool_once:
        b.tool = not holds_tool_result(raw)
    return b
