"""Anthropic's Messages shapes for the Anthropic-compatible front door: an Anthropic
Messages request -> the unified request, and unified replies -> Anthropic's
response and stream events, whatever provider served them."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import (
    ChatBody,
    ContentPart,
    Delta,
    FunctionDelta,
    ImagePart,
    ImageUrl,
    Message,
    TextPart,
    Usage,
    content_text,
)
from schemas.errors import ErrorType, InvalidRequest
from services.providers.anthropic.chat import from_blocks, tool_use_block
from services.providers.anthropic.types import STOP_FROM_FINISH, ARequest, AResponse, AUsage
from services.providers.content import function_calls

_json = msgspec.json.Encoder()

# Our error types -> Anthropic's (its SDK picks exception classes by status, the body says what happened).
ERROR_TYPES = {
    ErrorType.INVALID_REQUEST: "invalid_request_error",
    ErrorType.AUTHENTICATION: "authentication_error",
    ErrorType.PERMISSION: "permission_error",
    ErrorType.NOT_FOUND: "not_found_error",
    ErrorType.REQUEST_TOO_LARGE: "request_too_large",
    ErrorType.RATE_LIMIT: "rate_limit_error",
    # A spent budget is a 429 too; Anthropic has no type of its own for it.
    ErrorType.INSUFFICIENT_QUOTA: "rate_limit_error",
    ErrorType.TIMEOUT: "timeout_error",
}


def error_type(our_type: str, code: str) -> str:
    if code == "upstream_overloaded":
        return "overloaded_error"
    return ERROR_TYPES.get(our_type, "api_error")  # type: ignore[call-overload]


def error_body(our_type: str, code: str, message: str) -> bytes:
    return _json.encode({"type": "error", "error": {"type": error_type(our_type, code), "message": message}})


def _text_of_blocks(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    return "".join(b.get("text", "") for b in content if b.get("type") == "text")


def _part(block: dict[str, Any]) -> ContentPart:
    kind = block.get("type")
    if kind == "text":
        return TextPart(text=str(block.get("text", "")))
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
        elif source.get("type") == "url":
            url = str(source.get("url", ""))
        else:
            raise InvalidRequest(f"Image source type {source.get('type')!r} is not supported.")
        return ImagePart(image_url=ImageUrl(url=url))
    raise InvalidRequest(f"Content block type {kind!r} is not supported here.")


def _user_turn(content: str | list[dict[str, Any]]) -> list[Message]:
    if isinstance(content, str):
        return [Message(role="user", content=content)]
    # Tool results become tool messages, ahead of the turn's other content:
    # OpenAI wants them right after the assistant's tool calls.
    out = [
        Message(role="tool", tool_call_id=b.get("tool_use_id", ""), content=_text_of_blocks(b.get("content")))
        for b in content
        if b.get("type") == "tool_result"
    ]
    parts = [_part(b) for b in content if b.get("type") != "tool_result"]
    if parts:
        only_text = all(isinstance(p, TextPart) for p in parts)
        out.append(Message(role="user", content=content_text(parts) if only_text else parts))
    return out


def _tool_choice(choice: dict[str, Any] | None) -> tuple[str | dict[str, Any] | None, bool | None]:
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind or "", "auto"), parallel


def to_chat_body(req: ARequest) -> ChatBody:
    messages: list[Message] = []
    if req.system:
        messages.append(Message(role="system", content=_text_of_blocks(req.system)))
    for m in req.messages:
        if m.role == "assistant":
            # The same blocks an Anthropic upstream answers with (thinking is dropped).
            messages.append(
                Message(role="assistant", content=m.content) if isinstance(m.content, str) else from_blocks(m.content)
            )
        else:
            messages += _user_turn(m.content)
    tool_choice, parallel = _tool_choice(req.tool_choice)
    tools = [
        {
            "type": "function",
            "function": {"name": t.name, "parameters": t.input_schema}
            | ({"description": t.description} if t.description else {}),
        }
        for t in req.tools or ()
    ]
    return ChatBody(
        model=req.model,
        messages=messages,
        stream=req.stream,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop_sequences or None,
        user=req.metadata.user_id if req.metadata else None,
        tools=tools or None,
        tool_choice=tool_choice if tools else None,
        parallel_tool_calls=parallel if tools else None,
    )


def usage(u: Usage) -> AUsage:
    return AUsage(
        input_tokens=max(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens),
        output_tokens=u.completion_tokens,
        cache_creation_input_tokens=u.cache_write_tokens,
        cache_read_input_tokens=u.cached_tokens,
    )


def stop_reason(finish_reason: str | None) -> str:
    return STOP_FROM_FINISH.get(finish_reason or "stop", "end_turn")


def response(request_id: str, model: str, message: Message, finish_reason: str | None, u: Usage) -> AResponse:
    blocks: list[dict[str, Any]] = []
    text = content_text(message.content)
    if text:
        blocks.append({"type": "text", "text": text})
    blocks += [tool_use_block(call) for call in function_calls(message, "an Anthropic-shaped")]
    return AResponse(
        id=f"msg_{request_id}", model=model, content=blocks, usage=usage(u), stop_reason=stop_reason(finish_reason)
    )


def _event(kind: str, doc: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _json.encode({"type": kind, **doc}) + b"\n\n"


class StreamRenderer:
    """Unified deltas -> Anthropic's event sequence. Anthropic frames content
    in blocks (text, or one tool call each), so the renderer opens and closes
    blocks as the deltas switch between text and tool calls."""

    def __init__(self, request_id: str, model: str) -> None:
        self.request_id = request_id
        self.model = model
        self.started = False
        self.block = -1  # index of the open block, -1 when none
        self.block_kind = ""
        self.tool_blocks: dict[int, int] = {}  # tool call index -> block index

    def _start(self) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message = AResponse(id=f"msg_{self.request_id}", model=self.model, content=[], usage=AUsage())
        return [_event("message_start", {"message": msgspec.to_builtins(message)})]

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.block_kind = kind
        return [*out, _event("content_block_start", {"index": self.block, "content_block": block})]

    def _close(self) -> list[bytes]:
        if not self.block_kind:
            return []
        self.block_kind = ""
        return [_event("content_block_stop", {"index": self.block})]

    def delta(self, d: Delta) -> bytes:
        out = self._start()
        if d.content:
            if self.block_kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out.append(
                _event("content_block_delta", {"index": self.block, "delta": {"type": "text_delta", "text": d.content}})
            )
        for call in d.tool_calls or ():
            index = call.index
            fn = call.function or FunctionDelta()
            if index not in self.tool_blocks:
                block = {"type": "tool_use", "id": call.id or "", "name": fn.name or "", "input": {}}
                out += self._open("tool_use", block)
                self.tool_blocks[index] = self.block
            if fn.arguments and self.tool_blocks[index] == self.block:
                delta = {"type": "input_json_delta", "partial_json": fn.arguments}
                out.append(_event("content_block_delta", {"index": self.block, "delta": delta}))
        return b"".join(out)

    def end(self, finish_reason: str | None, u: Usage) -> bytes:
        out = [*self._start(), *self._close()]
        delta = {"stop_reason": stop_reason(finish_reason), "stop_sequence": None}
        out.append(_event("message_delta", {"delta": delta, "usage": msgspec.to_builtins(usage(u))}))
        out.append(_event("message_stop", {}))
        return b"".join(out)

    def error(self, our_type: str, code: str, message: str) -> bytes:
        doc = {"error": {"type": error_type(our_type, code), "message": message}}
        return _event("error", doc)
