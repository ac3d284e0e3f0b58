"""Anthropic Messages API as an upstream: unified request -> Anthropic's,
Anthropic's answer and stream events -> unified."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.chat import ChatBody, Delta, FilePart, ImagePart, Message, ToolCall, Usage, content_text
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InvalidRequest, UpstreamError
from services.providers import content as c
from services.providers.anthropic.types import (
    FINISH_FROM_STOP,
    AError,
    AEventKind,
    AMessage,
    AMetadata,
    ARequest,
    AResponse,
    AStreamEvent,
    ATool,
    AUsage,
    ContentBlockDelta,
    ContentBlockStart,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
    TextDelta,
    TextStart,
    ToolUseStart,
)
from services.providers.base import ChatResult, StreamEvent, UpstreamRequest
from services.providers.errors import classify

API_VERSION = "2023-06-01"
# The caller's ``anthropic-beta`` header: beta names ([A-Za-z0-9._-]) separated
# by commas (and spaces around them), bounded; sent on as the caller wrote it.
BETA_MAX_CHARS = 1024
_BETAS = re.compile(r"[A-Za-z0-9._-]+(?:[ \t]*,[ \t]*[A-Za-z0-9._-]+)*")
# Anthropic requires max_tokens; OpenAI-shaped callers often leave it out.
DEFAULT_MAX_TOKENS = 4096

_encode = msgspec.json.Encoder().encode
_decode_response = msgspec.json.Decoder(AResponse).decode
_decode_event = msgspec.json.Decoder(AStreamEvent).decode
_decode_kind = msgspec.json.Decoder(AEventKind).decode
_READ_KINDS = frozenset(kind.__struct_config__.tag for kind in AStreamEvent.__args__)
# Events the union reads whose block or delta may be of a type it does not.
_SKIPPABLE = frozenset({"content_block_start", "content_block_delta"})
_decode_error = msgspec.json.Decoder(AError).decode


def usage_of(u: AUsage) -> Usage:
    # Anthropic's input_tokens excludes the cached and cache-written ones.
    read = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    return Usage(
        prompt_tokens=u.input_tokens + read + written,
        completion_tokens=u.output_tokens,
        cached_tokens=read,
        cache_write_tokens=written,
        source="reported",
    )


def _blocks(m: Message) -> list[dict[str, Any]]:
    """One unified message's content as Anthropic content blocks."""
    if m.role == "tool":
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": content_text(m.content)}]
    blocks: list[dict[str, Any]] = []
    if isinstance(m.content, str):
        if m.content:
            blocks.append({"type": "text", "text": m.content})
    else:
        for part in m.content or ():
            text = c.part_text(part)
            if text is not None:
                blocks.append({"type": "text", "text": text})
            elif isinstance(part, FilePart):
                mime, data = c.inline_file(part)
                blocks.append({"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}})
            elif isinstance(part, ImagePart):
                url = part.image_url.url
                inline = c.data_url(url)
                source = (
                    {"type": "base64", "media_type": inline[0], "data": inline[1]}
                    if inline
                    else {"type": "url", "url": url}
                )
                blocks.append({"type": "image", "source": source})
            else:
                kind = type(part).__struct_config__.tag
                raise InvalidRequest(f"Content part type {kind!r} cannot be sent to an Anthropic model.")
    blocks += [tool_use_block(call) for call in c.function_calls(m, "an Anthropic")]
    return blocks


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    """An OpenAI-shaped tool call as an Anthropic ``tool_use`` block."""
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": c.arguments_object(call.function.arguments),
    }


def to_messages(messages: list[Message]) -> list[AMessage]:
    """Unified messages -> Anthropic turns. Tool results become user turns, and
    consecutive turns of one role merge, as the API wants them alternating."""
    out: list[AMessage] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if out and out[-1].role == role:
            out[-1].content.extend(blocks)  # type: ignore[union-attr]
        else:
            out.append(AMessage(role=role, content=blocks))
    return out


def _tool_choice(body: ChatBody) -> dict[str, Any] | None:
    choice = body.tool_choice
    name = c.forced_tool(choice)
    if name:
        out: dict[str, Any] = {"type": "tool", "name": name}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "auto" or body.parallel_tool_calls is False:
        out = {"type": "auto"}
    else:
        return None
    if body.parallel_tool_calls is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _max_tokens(body: ChatBody) -> int:
    """The caller's limit (0 too: Anthropic then only fills its prompt cache), else a default."""
    limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    return DEFAULT_MAX_TOKENS if limit is None else limit  # type: ignore[return-value]


def to_request(body: ChatBody, model: str, *, stream: bool) -> ARequest:
    c.one_choice(body, "Anthropic")
    system, rest = c.split_system(body.messages)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    tools = [
        ATool(name=fn.name, description=fn.description, input_schema=fn.parameters or {"type": "object"})
        for fn in c.function_tools(body.tools)
    ]
    return ARequest(
        model=model,
        max_tokens=_max_tokens(body),
        messages=to_messages(rest),
        system=system,
        stop_sequences=stop or None,
        stream=stream,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=tools or None,
        tool_choice=_tool_choice(body) if tools else None,
        metadata=AMetadata(user_id=body.user) if body.user else None,
    )


def from_blocks(blocks: list[dict[str, Any]]) -> Message:
    """Anthropic content blocks -> one unified assistant message (thinking is not shown)."""
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [
        c.tool_call(b.get("id", ""), b.get("name", ""), c.arguments_json(b.get("input")))
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    return Message(role="assistant", content=text if text or not calls else None, tool_calls=calls or None)


class AnthropicStream:
    """Anthropic spreads a delta over several events: the tool a JSON fragment
    belongs to is named in its block's start, and input tokens come in
    ``message_start`` while output tokens come in ``message_delta``."""

    def __init__(self) -> None:
        self.model = ""
        self.usage = AUsage()
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, data: str) -> StreamEvent | None:
        try:
            event = _decode_event(data)
        except msgspec.ValidationError as exc:
            # A type the union does not read: ping, content_block_stop, a
            # thinking block or delta, one Anthropic added later. Not shown.
            if _decode_kind(data).type in _READ_KINDS - _SKIPPABLE:
                raise UpstreamError(f"Upstream sent an unreadable stream event: {exc}") from exc
            return StreamEvent(model=self.model)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream event: {exc}") from exc
        match event:
            case ContentBlockDelta(delta=TextDelta(text=text)):
                return StreamEvent(delta=Delta(content=text), model=self.model)
            case ContentBlockDelta(index=index, delta=InputJsonDelta(partial_json=part)) if index in self.tool_index:
                call = c.tool_call_more(self.tool_index[index], part)
                return StreamEvent(delta=Delta(tool_calls=[call]), model=self.model)
            case ContentBlockStart(index=index, content_block=ToolUseStart(id=call_id, name=name)):
                position = self.tool_index[index] = len(self.tool_index)
                start = c.tool_call_start(position, call_id, name)
                return StreamEvent(delta=Delta(tool_calls=[start]), model=self.model)
            case ContentBlockStart(content_block=TextStart(text=text)) if text:
                return StreamEvent(delta=Delta(content=text), model=self.model)
            case MessageStart(message=message):
                self.model, self.usage = message.model, message.usage
                # The input is reported now, the output at the end: a stream cut
                # short (the client gone) still bills the input Anthropic counted.
                return StreamEvent(delta=Delta(role="assistant"), usage=usage_of(self.usage), model=self.model)
            case MessageDelta(delta=delta, usage=u):
                if u is not None:
                    # output_tokens is cumulative; the input counts may be repeated here.
                    self.usage.output_tokens = u.output_tokens
                    if u.input_tokens:
                        self.usage.input_tokens = u.input_tokens
                    if u.cache_read_input_tokens is not None:
                        self.usage.cache_read_input_tokens = u.cache_read_input_tokens
                    if u.cache_creation_input_tokens is not None:
                        self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens
                stop = delta.stop_reason
                finish = Delta(finish_reason=FINISH_FROM_STOP.get(stop, "stop")) if stop else None
                return StreamEvent(delta=finish, usage=usage_of(self.usage), model=self.model)
            case MessageStop():
                return None
            case StreamError(error=detail):
                status = 529 if detail.type == "overloaded_error" else 500
                raise classify(status, detail.message or "stream error", code=detail.type)
        return StreamEvent(model=self.model)


def valid_betas(value: str) -> bool:
    return len(value) <= BETA_MAX_CHARS and _BETAS.fullmatch(value) is not None


def beta_headers(betas: str) -> dict[str, str]:
    """The caller's ``anthropic-beta`` header for an Anthropic upstream, as it
    came; none if it is not a list of beta names (a bus caller's: the ingress
    refuses such a header itself)."""
    return {"anthropic-beta": betas} if betas and valid_betas(betas) else {}


class AnthropicChat:
    def endpoint(self, deployment: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return f"{deployment.base_url}/v1/messages", headers

    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest:
        url, headers = self.endpoint(deployment, api_key)
        request = to_request(body, deployment.upstream_model, stream=stream)
        return UpstreamRequest(url=url, headers=headers, content=_encode(request))

    def parse_response(self, data: bytes) -> ChatResult:
        try:
            response = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable message: {exc}") from exc
        return ChatResult(
            message=from_blocks(response.content),
            finish_reason=FINISH_FROM_STOP.get(response.stop_reason or "", "stop"),
            usage=usage_of(response.usage),
            model=response.model,
        )

    def stream_parser(self) -> AnthropicStream:
        return AnthropicStream()

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        try:
            detail = _decode_error(body).error
            message, code = detail.message, detail.type
        except msgspec.DecodeError:
            message, code = body[:500].decode(errors="replace"), None
        return classify(status, message, code=code, headers=headers)
