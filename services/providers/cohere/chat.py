"""Cohere v2 (``/v2/chat``, ``/v2/embed``) as an upstream.

v2 messages are close to OpenAI's (roles system/user/assistant/tool, function
tools, ``tool_calls``), but parameters are renamed, the answer's content is
a list of blocks, finish reasons are upper case, and the stream is a
sequence of typed events ending with ``message-end``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.chat import ChatBody, Delta, EmbeddingsBody, ImagePart, Message, ToolCall, Usage, content_text
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest, UpstreamError
from services.providers import content as c
from services.providers.base import ChatResult, EmbeddingsResult, StreamEvent, UpstreamRequest, embedding_inputs
from services.providers.openai.errors import map_error

_encode = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder(dict[str, Any]).decode

FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "stop",
    "TIMEOUT": "stop",
}


class CUnits(msgspec.Struct):
    input_tokens: float = 0
    output_tokens: float = 0


class CUsage(msgspec.Struct):
    billed_units: CUnits | None = None
    tokens: CUnits | None = None


class CMessage(msgspec.Struct):
    role: str = "assistant"
    content: list[dict[str, Any]] = []
    # Cohere v2 writes tool calls in OpenAI's shape.
    tool_calls: list[ToolCall] | None = None
    tool_plan: str | None = None


class CResponse(msgspec.Struct):
    message: CMessage
    finish_reason: str | None = None
    usage: CUsage | None = None
    id: str = ""


class CEmbedMeta(msgspec.Struct):
    billed_units: CUnits | None = None


class CEmbeddings(msgspec.Struct):
    embeddings: dict[str, list[list[float]]]
    meta: CEmbedMeta | None = None


_decode_response = msgspec.json.Decoder(CResponse).decode
_decode_embeddings = msgspec.json.Decoder(CEmbeddings).decode


def usage_of(u: CUsage | None) -> Usage | None:
    # billed_units is what Cohere charges for; tokens counts the template too.
    units = (u.billed_units or u.tokens) if u is not None else None
    if units is None:
        return None
    return Usage(prompt_tokens=int(units.input_tokens), completion_tokens=int(units.output_tokens), source="reported")


def _message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": content_text(m.content)}
    role = "system" if m.role == "developer" else m.role
    out: dict[str, Any] = {"role": role}
    if isinstance(m.content, list):
        parts = []
        for part in m.content:
            text = c.part_text(part)
            if text is not None:
                parts.append({"type": "text", "text": text})
            elif isinstance(part, ImagePart) and role == "user":
                parts.append({"type": "image_url", "image_url": {"url": part.image_url.url}})
            else:
                kind = type(part).__struct_config__.tag
                raise InvalidRequest(f"Content part type {kind!r} cannot be sent to a Cohere model.")
        out["content"] = parts
    elif m.content is not None:
        out["content"] = m.content
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": call.id, "type": "function", "function": msgspec.to_builtins(call.function)}
            for call in c.function_calls(m, "a Cohere")
        ]
    return out


def to_request(body: ChatBody, model: str, *, stream: bool) -> dict[str, Any]:
    c.one_choice(body, "Cohere")
    request: dict[str, Any] = {"model": model, "messages": [_message(m) for m in body.messages], "stream": stream}
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    for key, value in (
        ("max_tokens", body.max_completion_tokens or body.max_tokens),
        ("temperature", body.temperature),
        ("p", body.top_p),
        ("stop_sequences", stop),
        ("seed", body.seed),
        ("frequency_penalty", body.frequency_penalty),
        ("presence_penalty", body.presence_penalty),
    ):
        if value is not None:
            request[key] = value
    if body.tools:
        request["tools"] = [{"type": "function", "function": fn} for fn in c.function_tools(body.tools)]
        if body.tool_choice in ("required", "none"):
            request["tool_choice"] = body.tool_choice.upper()  # type: ignore[union-attr]
        elif c.forced_tool(body.tool_choice):
            raise InvalidRequest("Cohere cannot be made to call one named tool; use tool_choice 'required'.")
    fmt = body.response_format or {}
    if fmt.get("type") == "json_object":
        request["response_format"] = {"type": "json_object"}
    elif fmt.get("type") == "json_schema":
        request["response_format"] = {
            "type": "json_object",
            "json_schema": (fmt.get("json_schema") or {}).get("schema"),
        }
    return request


class CohereStream:
    def __init__(self) -> None:
        self.calls = 0

    def feed(self, data: str) -> StreamEvent | None:
        if data == "[DONE]":
            return None
        try:
            event = _decode_json(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream event: {exc}") from exc
        kind = event.get("type")
        delta = event.get("delta") or {}
        message = delta.get("message") or {}
        if kind == "content-delta":
            text = (message.get("content") or {}).get("text", "")
            return StreamEvent(delta=Delta(content=text))
        if kind == "message-start":
            return StreamEvent(delta=Delta(role="assistant"))
        if kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            fn = call.get("function") or {}
            self.calls += 1
            start = c.tool_call_start(
                self.calls - 1, str(call.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments", ""))
            )
            return StreamEvent(delta=Delta(tool_calls=[start]))
        if kind == "tool-call-delta":
            fn = (message.get("tool_calls") or {}).get("function") or {}
            more = c.tool_call_more(self.calls - 1, str(fn.get("arguments", "")))
            return StreamEvent(delta=Delta(tool_calls=[more]))
        if kind == "message-end":
            usage = usage_of(msgspec.convert(delta["usage"], CUsage)) if delta.get("usage") else None
            finish = FINISH.get(delta.get("finish_reason") or "", "stop")
            return StreamEvent(delta=Delta(finish_reason=finish), usage=usage)
        return StreamEvent()  # content-start/end, tool-plan-delta, citations


class CohereChat:
    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest:
        request = to_request(body, deployment.upstream_model, stream=stream)
        return UpstreamRequest(
            url=f"{deployment.base_url}/v2/chat", headers=self.headers(api_key), content=_encode(request)
        )

    def parse_response(self, data: bytes) -> ChatResult:
        try:
            response = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable response: {exc}") from exc
        m = response.message
        text = "".join(b.get("text", "") for b in m.content if b.get("type") == "text")
        calls = m.tool_calls or []
        return ChatResult(
            message=Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None),
            finish_reason=FINISH.get(response.finish_reason or "", "stop"),
            usage=usage_of(response.usage),
            model="",
        )

    def stream_parser(self) -> CohereStream:
        return CohereStream()

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return map_error(status, body, headers)  # {"message": ...} at the top level, read leniently

    # -- embeddings ---------------------------------------------------------
    def build_embeddings_request(
        self, deployment: Deployment, body: EmbeddingsBody, api_key: str | None
    ) -> UpstreamRequest:
        inputs = embedding_inputs(body)
        if inputs and not isinstance(inputs[0], str):
            raise InvalidRequest("Cohere embeddings take text input, not token arrays.")
        request: dict[str, Any] = {
            "model": deployment.upstream_model,
            "texts": inputs,
            # OpenAI's API has no notion of query vs. document; documents is the safe default.
            "input_type": "search_document",
            "embedding_types": ["float"],
        }
        if body.dimensions:
            request["output_dimension"] = body.dimensions
        return UpstreamRequest(
            url=f"{deployment.base_url}/v2/embed", headers=self.headers(api_key), content=_encode(request)
        )

    def parse_embeddings(self, data: bytes) -> EmbeddingsResult:
        try:
            doc = _decode_embeddings(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent unreadable embeddings: {exc}") from exc
        units = doc.meta.billed_units if doc.meta else None
        usage = Usage(prompt_tokens=int(units.input_tokens), source="reported") if units else None
        return EmbeddingsResult(vectors=doc.embeddings.get("float", []), usage=usage, model="")
