"""Google Gemini (``generateContent`` / ``streamGenerateContent``) as an upstream.

``base_url`` is the API host (``https://generativelanguage.googleapis.com``);
the key goes in ``x-goog-api-key``. Gemini has no end-of-stream marker: the
last chunk carries ``finishReason`` and the connection closes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.chat import (
    AudioPart,
    ChatBody,
    Choice,
    Delta,
    EmbeddingsBody,
    FilePart,
    FunctionDef,
    ImagePart,
    Message,
    ToolCall,
    Usage,
    content_text,
)
from schemas.envelope import Deployment
from schemas.errors import ContentFiltered, GatewayError, InvalidRequest, UpstreamAuthFailed, UpstreamError
from services.providers import content as c
from services.providers.base import (
    ChatResult,
    EmbeddingsResult,
    StreamEvent,
    UpstreamRequest,
    embedding_inputs,
)
from services.providers.errors import classify
from services.providers.gemini.types import FINISH, GCandidate, GEmbeddings, GError, GResponse, GUsage

_encode = msgspec.json.Encoder().encode
_decode_response = msgspec.json.Decoder(GResponse).decode
_decode_error = msgspec.json.Decoder(GError).decode
_decode_embeddings = msgspec.json.Decoder(GEmbeddings).decode
_decode_json = msgspec.json.Decoder(Any).decode


def usage_of(u: GUsage | None) -> Usage | None:
    if u is None:
        return None
    return Usage(
        prompt_tokens=u.prompt_token_count,
        completion_tokens=u.candidates_token_count + u.thoughts_token_count,
        cached_tokens=u.cached_content_token_count,
        reasoning_tokens=u.thoughts_token_count,
        source="reported",
    )


def _parts(m: Message, tool_names: dict[str, str]) -> list[dict[str, Any]]:
    if m.role == "tool":
        text = content_text(m.content)
        try:
            result = _decode_json(text)
        except msgspec.DecodeError:
            result = None
        response = result if isinstance(result, dict) else {"result": text}
        name = tool_names.get(m.tool_call_id or "", m.name or "")
        return [{"functionResponse": {"name": name, "response": response}}]
    parts: list[dict[str, Any]] = []
    if isinstance(m.content, str):
        if m.content:
            parts.append({"text": m.content})
    else:
        for part in m.content or ():
            text = c.part_text(part)
            if text is not None:
                parts.append({"text": text})
            elif isinstance(part, (FilePart, AudioPart)):
                mime, data = c.inline_file(part) if isinstance(part, FilePart) else c.inline_audio(part)
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            elif isinstance(part, ImagePart):
                url = part.image_url.url
                inline = c.data_url(url)
                if inline:
                    parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
                else:
                    parts.append({"fileData": {"fileUri": url}})
            else:
                kind = type(part).__struct_config__.tag
                raise InvalidRequest(f"Content part type {kind!r} cannot be sent to a Gemini model.")
    for call in c.function_calls(m, "a Gemini"):
        fn = call.function
        parts.append({"functionCall": {"name": fn.name, "args": c.arguments_object(fn.arguments)}})
    return parts


def to_contents(messages: list[Message]) -> list[dict[str, Any]]:
    # A tool result in Gemini names its function, not the call id: find the name.
    tool_names = {call.id: call.function.name for m in messages for call in c.function_calls(m, "a Gemini")}
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "model" if m.role == "assistant" else "user"
        parts = _parts(m, tool_names)
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _generation_config(body: ChatBody) -> dict[str, Any]:
    config: dict[str, Any] = {}
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    for key, value in (
        ("temperature", body.temperature),
        ("topP", body.top_p),
        ("maxOutputTokens", body.max_completion_tokens or body.max_tokens),
        ("stopSequences", stop),
        ("candidateCount", body.n),
        ("seed", body.seed),
        ("presencePenalty", body.presence_penalty),
        ("frequencyPenalty", body.frequency_penalty),
    ):
        if value is not None:
            config[key] = value
    fmt = body.response_format or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    return config


def _declaration(fn: FunctionDef) -> dict[str, Any]:
    """A function tool as Gemini declares one. Its parameters go as ``parametersJsonSchema`` (JSON
    Schema, as clients write it): ``parameters`` takes only an OpenAPI subset, and Gemini answers 400
    "Unknown name additionalProperties" to the schemas of strict tools (Codex's, the Agents SDK's)."""
    declared: dict[str, Any] = {"name": fn.name}
    if fn.description is not None:
        declared["description"] = fn.description
    if fn.parameters:  # none, or {}: a function without parameters
        declared["parametersJsonSchema"] = fn.parameters
    return declared


def _tool_config(body: ChatBody) -> dict[str, Any] | None:
    name = c.forced_tool(body.tool_choice)
    if name:
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    # An allowed_tools choice is not passed on: the model picks among all the tools, as on Anthropic.
    choice = body.tool_choice
    mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(choice) if isinstance(choice, str) else None
    return {"functionCallingConfig": {"mode": mode}} if mode else None


def to_request(body: ChatBody) -> dict[str, Any]:
    system, rest = c.split_system(body.messages)
    request: dict[str, Any] = {"contents": to_contents(rest)}
    if system:
        request["systemInstruction"] = {"parts": [{"text": system}]}
    functions = c.function_tools(body.tools)
    if functions:
        request["tools"] = [{"functionDeclarations": [_declaration(fn) for fn in functions]}]
        tool_config = _tool_config(body)
        if tool_config:
            request["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        request["generationConfig"] = config
    return request


def _finish(reason: str | None, has_calls: bool) -> str | None:
    if reason is None:
        return None
    if has_calls and reason == "STOP":
        return "tool_calls"
    return FINISH.get(reason, "stop")


def _check_blocked(response: GResponse) -> None:
    feedback = response.prompt_feedback
    if not response.candidates and feedback is not None and feedback.block_reason:
        raise ContentFiltered(f"Gemini blocked the prompt: {feedback.block_reason}.")


def _read_parts(parts: list[dict[str, Any]], first_call: int) -> tuple[str, list[ToolCall]]:
    """A candidate's visible text (thoughts left out) and its function calls
    as OpenAI tool calls, numbered from ``first_call`` (ids when Gemini gives none).
    Gemini sends each call whole, also when streaming."""
    text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
    calls = []
    for p in parts:
        if "functionCall" in p:
            fn, n = p["functionCall"], first_call + len(calls)
            args = c.arguments_json(fn.get("args"))
            calls.append(c.tool_call(str(fn.get("id") or f"call_{n}"), str(fn.get("name", "")), args))
    return text, calls


class GeminiStream:
    def __init__(self) -> None:
        # Per candidate (``candidateCount`` > 1): tool calls so far, and
        # whether its first delta (which names the role) went out.
        self.calls: dict[int, int] = {}
        self.started: set[int] = set()

    def feed(self, data: str) -> StreamEvent | None:
        try:
            chunk = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream chunk: {exc}") from exc
        _check_blocked(chunk)
        usage = usage_of(chunk.usage_metadata)  # cumulative: the last one wins
        if not chunk.candidates:
            return StreamEvent(usage=usage, model=chunk.model_version)
        deltas = [self._delta(cand) for cand in chunk.candidates]
        return StreamEvent(delta=deltas[0], usage=usage, model=chunk.model_version, extra=deltas[1:])

    def _delta(self, cand: GCandidate) -> Delta:
        before = self.calls.get(cand.index, 0)
        text, calls = _read_parts(cand.content.parts, before)
        starts = [
            c.tool_call_start(before + i, t.id, t.function.name, t.function.arguments) for i, t in enumerate(calls)
        ]
        self.calls[cand.index] = before + len(calls)
        delta = Delta(
            index=cand.index,
            role=None if cand.index in self.started else "assistant",
            content=text or None,
            tool_calls=starts or None,
            finish_reason=_finish(cand.finish_reason, self.calls[cand.index] > 0),
        )
        self.started.add(cand.index)
        return delta


class GeminiChat:
    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        return headers

    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{deployment.base_url}/v1beta/models/{deployment.upstream_model}:{method}"
        return UpstreamRequest(url=url, headers=self.headers(api_key), content=_encode(to_request(body)))

    def parse_response(self, data: bytes) -> ChatResult:
        try:
            response = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable response: {exc}") from exc
        _check_blocked(response)
        if not response.candidates:
            raise UpstreamError("Upstream response has no candidates.")
        choices = []
        for cand in sorted(response.candidates, key=lambda c: c.index):
            text, calls = _read_parts(cand.content.parts, 0)
            message = Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None)  # type: ignore[arg-type]
            choices.append(Choice(cand.index, message, _finish(cand.finish_reason or "STOP", bool(calls))))
        return ChatResult(
            message=choices[0].message,
            finish_reason=choices[0].finish_reason,
            usage=usage_of(response.usage_metadata),
            model=response.model_version,
            other_choices=choices[1:],
        )

    def stream_parser(self) -> GeminiStream:
        return GeminiStream()

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        try:
            detail = _decode_error(body).error
        except msgspec.DecodeError:
            return classify(status, body[:500].decode(errors="replace"), headers=headers)
        # Gemini answers a bad key with 400 INVALID_ARGUMENT; its reason says what it is.
        if any(d.get("reason") == "API_KEY_INVALID" for d in detail.details):
            return UpstreamAuthFailed(f"Upstream returned {status}: {detail.message}")
        return classify(status, detail.message, code=detail.status or None, headers=headers)

    # -- embeddings ---------------------------------------------------------
    def build_embeddings_request(
        self, deployment: Deployment, body: EmbeddingsBody, api_key: str | None
    ) -> UpstreamRequest:
        inputs = embedding_inputs(body)
        if inputs and not isinstance(inputs[0], str):
            raise InvalidRequest("Gemini embeddings take text input, not token arrays.")
        model = f"models/{deployment.upstream_model}"
        requests = []
        for text in inputs:
            item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
            if body.dimensions:
                item["outputDimensionality"] = body.dimensions
            requests.append(item)
        url = f"{deployment.base_url}/v1beta/{model}:batchEmbedContents"
        return UpstreamRequest(url=url, headers=self.headers(api_key), content=_encode({"requests": requests}))

    def parse_embeddings(self, data: bytes) -> EmbeddingsResult:
        try:
            doc = _decode_embeddings(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent unreadable embeddings: {exc}") from exc
        # batchEmbedContents reports no usage: the gateway estimates it.
        return EmbeddingsResult(vectors=[e.values for e in doc.embeddings], usage=None, model="")
