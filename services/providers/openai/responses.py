"""OpenAI's Responses API as an upstream, for native pass-through: a
``/v1/responses`` request to an OpenAI (or Azure) deployment goes up as the
client wrote it, and its answer, a ``Response`` or its stream of events, is
read here into the unified result, so usage and cost are recorded as for
every other call.

Only what the unified result holds is read: the output's text (and
refusals), function calls, reasoning summaries, usage, and how the answer
ended. Items of OpenAI's own tools (``web_search_call``, ...) are skipped.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from schemas.chat import Delta, FunctionDelta, Message, ToolCallDelta, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from services.providers.base import ChatResult, StreamEvent
from services.providers.content import tool_call, tool_call_start
from services.providers.errors import classify

JSON = "application/json"
_encode = msgspec.json.Encoder().encode
T = TypeVar("T")
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


# -- what is read of OpenAI's answer (leniently: every field has a default) ----------
class _Part(msgspec.Struct):
    type: str = ""
    text: str = ""
    refusal: str = ""


class _Message(msgspec.Struct):
    content: list[_Part] = []


class _Reasoning(msgspec.Struct):
    summary: list[_Part] = []


class _FunctionCall(msgspec.Struct):
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class _InputDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _Incomplete(msgspec.Struct):
    reason: str | None = None


class _Error(msgspec.Struct):
    code: str | None = None
    message: str = ""


class _Response(msgspec.Struct):
    model: str = ""
    status: str | None = None
    # Items as dicts, each read by its type (``item``): items of other types
    # (OpenAI's tools', ones added later) may hold anything.
    output: list[dict[str, Any]] = []
    usage: _Usage | None = None
    incomplete_details: _Incomplete | None = None
    error: _Error | None = None


class _Event(msgspec.Struct):
    """Any stream event: the fields of those read (the others ignore them)."""

    type: str = ""
    output_index: int = 0
    summary_index: int = 0
    delta: Any = None
    arguments: Any = None
    item: dict[str, Any] | None = None
    response: _Response | None = None
    # Of an ``error`` event (other events' fields of these names are not read).
    code: Any = None
    message: Any = ""


_decode_response = msgspec.json.Decoder(_Response).decode
_decode_event = msgspec.json.Decoder(_Event).decode


def usage_of(u: _Usage | None) -> Usage | None:
    """OpenAI's usage; its ``input_tokens`` include the cached ones and
    ``output_tokens`` the reasoning ones, as the unified usage counts them."""
    if u is None:
        return None
    inputs = u.input_tokens_details or _InputDetails()
    return Usage(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        cached_tokens=inputs.cached_tokens,
        cache_write_tokens=inputs.cache_write_tokens,
        reasoning_tokens=(u.output_tokens_details or _OutputDetails()).reasoning_tokens,
        source="reported",
    )


def finish_reason(r: _Response, called: bool) -> str:
    """How the answer ended, in chat's words: ``length`` or ``content_filter``
    when OpenAI calls it incomplete, ``tool_calls`` when it calls functions."""
    if r.status == "incomplete":
        reason = r.incomplete_details.reason if r.incomplete_details else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called else "stop"


def failure(code: str | None, message: str) -> GatewayError:
    """A failed response's (or an ``error`` event's) error, as the status OpenAI would have answered with."""
    if code == "rate_limit_exceeded":
        status = 429
    elif code in (None, "", "server_error") or "timeout" in code:
        status = 500
    else:  # invalid_prompt, the image errors, ...: the request's
        status = 400
    return classify(status, message or "the response failed", code=code or None)


def _read(doc: dict[str, Any], kind: type[T]) -> T:
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        raise UpstreamError(f"Upstream sent an unreadable {doc.get('type')} item: {exc}") from exc


def _texts(parts: list[_Part]) -> list[str]:
    return [p.refusal if p.type == "refusal" else p.text for p in parts]


def parse_response(data: bytes) -> ChatResult:
    """A non-streamed ``Response`` -> the unified result."""
    try:
        r = _decode_response(data)
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"Upstream sent an unreadable response: {exc}") from exc
    if r.status == "failed" or r.error is not None:
        error = r.error or _Error()
        raise failure(error.code, error.message)
    text: list[str] = []
    summaries: list[str] = []
    calls = []
    for doc in r.output:
        kind = doc.get("type")
        if kind == "message":
            # A refusal is folded into the text, as the chat adapter does.
            text += _texts(_read(doc, _Message).content)
        elif kind == "reasoning":
            summaries += [p.text for p in _read(doc, _Reasoning).summary if p.type == "summary_text"]
        elif kind == "function_call":
            call = _read(doc, _FunctionCall)
            calls.append(tool_call(call.call_id, call.name, call.arguments))
    message = Message(
        role="assistant",
        content="".join(text) if text or not calls else None,
        tool_calls=calls or None,
        reasoning="\n\n".join(summaries) or None,
    )
    return ChatResult(
        message=message, finish_reason=finish_reason(r, bool(calls)), usage=usage_of(r.usage), model=r.model
    )


class ResponsesStreamParser:
    """A Responses stream's events -> unified deltas. A function call is
    numbered (``ToolCallDelta.index``) in the order its item was added; one
    reasoning summary part is set apart from the one before by a blank line."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}  # output index -> tool call index
        # Output index -> whether its arguments came as deltas (else the ``done`` event carries them).
        self.streamed: dict[int, bool] = {}
        self.reasoned = False
        self.model = ""

    def feed(self, data: str) -> StreamEvent | None:
        if data == "[DONE]":
            return None
        try:
            event = _decode_event(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream event: {exc}") from exc
        delta = event.delta if isinstance(event.delta, str) else ""
        match event.type:
            case "response.created":
                self.model = event.response.model if event.response else ""
                return StreamEvent(delta=Delta(role="assistant"), model=self.model)
            case "response.output_text.delta" | "response.refusal.delta":
                return StreamEvent(delta=Delta(content=delta), model=self.model)
            case "response.reasoning_summary_part.added":
                if self.reasoned:
                    return StreamEvent(delta=Delta(reasoning="\n\n"), model=self.model)
            case "response.reasoning_summary_text.delta":
                self.reasoned = True
                return StreamEvent(delta=Delta(reasoning=delta), model=self.model)
            case "response.output_item.added" if event.item is not None and event.item.get("type") == "function_call":
                call = _read(event.item, _FunctionCall)
                index = self.calls[event.output_index] = len(self.calls)
                self.streamed[event.output_index] = bool(call.arguments)
                start = tool_call_start(index, call.call_id, call.name, call.arguments)
                return StreamEvent(delta=Delta(tool_calls=[start]), model=self.model)
            case "response.function_call_arguments.delta" if event.output_index in self.calls:
                self.streamed[event.output_index] = True
                return self._arguments(event.output_index, delta)
            case "response.function_call_arguments.done" if event.output_index in self.calls:
                if not self.streamed[event.output_index] and isinstance(event.arguments, str):
                    self.streamed[event.output_index] = True
                    return self._arguments(event.output_index, event.arguments)
            case "response.completed" | "response.incomplete" if event.response is not None:
                r = event.response
                finish = finish_reason(r, bool(self.calls))
                return StreamEvent(
                    delta=Delta(finish_reason=finish), usage=usage_of(r.usage), model=r.model or self.model
                )
            case "response.failed":
                error = (event.response.error if event.response else None) or _Error()
                raise failure(error.code, error.message)
            case "error":
                raise failure(str(event.code) if event.code is not None else None, str(event.message))
        return StreamEvent(model=self.model)

    def _arguments(self, output_index: int, arguments: str) -> StreamEvent:
        call = ToolCallDelta(index=self.calls[output_index], function=FunctionDelta(arguments=arguments))
        return StreamEvent(delta=Delta(tool_calls=[call]), model=self.model)


# -- the upstream request ------------------------------------------------------------
def headers(api_key: str | None) -> dict[str, str]:
    found = {"content-type": JSON}
    if api_key:
        found["authorization"] = f"Bearer {api_key}"
    return found


def endpoint(deployment: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]:
    """OpenAI's URL and headers for a Responses call."""
    return f"{deployment.base_url}/responses", headers(api_key)
