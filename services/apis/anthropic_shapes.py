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
    FilePart,
    FileRef,
    FunctionDef,
    FunctionDelta,
    ImagePart,
    ImageUrl,
    Message,
    NamedTool,
    TextPart,
    ToolChoice,
    ToolChoiceOption,
    ToolDef,
    Usage,
    content_text,
)
from schemas.errors import ErrorType
from services.providers.anthropic.chat import from_blocks, tool_use_block
from services.providers.anthropic.types import STOP_FROM_FINISH, ARequest, AResponse, AUsage
from services.providers.content import forced_tool, function_calls

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


# Anthropic's effort levels -> OpenAI's ``reasoning_effort``: "xhigh" only
# OpenAI's newest models take, "max" none, so both ask for "high".
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
# At most this many names in a request's ``dropped`` (the caller chooses them).
MAX_DROPPED = 32
# The keys of each content block type that the unified request carries.
_BLOCK_KEYS = {
    "text": frozenset({"type", "text"}),
    "image": frozenset({"type", "source"}),
    "tool_use": frozenset({"type", "id", "name", "input"}),
    "tool_result": frozenset({"type", "tool_use_id", "content"}),
}


class Inbound(msgspec.Struct):
    """An Anthropic request read into the unified one."""

    body: ChatBody
    # What ``body`` leaves out, each named once: a field ("top_k",
    # "context_management"), a tool ("tools[3]:web_search_20250305"), a kind
    # of content block ("content:thinking"). Lost on a deployment of another family.
    dropped: list[str]
    # Whether an Anthropic deployment would get less from ``body`` than from
    # the client's own (dropped or moved content, a block's or a tool's fields
    # beyond those ``body`` carries): then the client's body goes up instead.
    lossy: bool


class _Reading:
    def __init__(self) -> None:
        self.dropped: dict[str, None] = {}
        self.lossy = False

    def drop(self, name: str) -> None:
        self.lossy = True
        if len(self.dropped) < MAX_DROPPED:
            self.dropped[name[:80]] = None

    def check(self, blocks: list[dict[str, Any]]) -> None:
        """Blocks with fields the unified request does not carry (``cache_control``, ``citations``, ...)."""
        if not self.lossy:
            self.lossy = any(not _BLOCK_KEYS.get(_kind(b), frozenset()).issuperset(b) for b in blocks)


def _kind(block: dict[str, Any]) -> str:
    kind = block.get("type")
    return kind if isinstance(kind, str) else ""


def _text_of_blocks(content: Any, reading: _Reading) -> str:
    """The text of a ``system`` or a tool result: a string, or its text blocks."""
    if isinstance(content, str) or content is None:
        return content or ""
    if not isinstance(content, list):
        reading.lossy = True
        return ""
    blocks = [b for b in content if isinstance(b, dict)]
    reading.check(blocks)
    for b in blocks:
        if _kind(b) != "text":
            reading.drop(f"content:{_kind(b)}")
    return "".join(str(b.get("text", "")) for b in blocks if _kind(b) == "text")


def _system_text(content: str | list[dict[str, Any]], reading: _Reading) -> str:
    """The text of a ``system`` message: text blocks, and those a
    ``mid_conv_system`` block holds (tool additions and removals are Anthropic's own)."""
    if isinstance(content, str):
        return content
    inner = [b.get("content") if _kind(b) == "mid_conv_system" else [b] for b in content]
    return "".join(_text_of_blocks(blocks, reading) for blocks in inner)


def _part(block: dict[str, Any], reading: _Reading) -> ContentPart | None:
    kind = _kind(block)
    if kind == "text":
        return TextPart(text=str(block.get("text", "")))
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    of = source.get("type")
    default_mime = "image/png" if kind == "image" else "application/pdf"
    inline = f"data:{source.get('media_type', default_mime)};base64,{source.get('data', '')}"
    if kind == "image" and of in ("base64", "url"):
        return ImagePart(image_url=ImageUrl(url=inline if of == "base64" else str(source.get("url", ""))))
    reading.lossy = True  # a document's title, context and citations
    if kind == "document" and of == "base64":
        title = block.get("title")
        return FilePart(file=FileRef(file_data=inline, filename=title if isinstance(title, str) else None))
    if kind == "document" and of == "text":
        return TextPart(text=str(source.get("data", "")))
    # Thinking, server tool results, files by id, and block types to come:
    # an Anthropic deployment gets them in the client's own body.
    reading.drop(f"content:{kind}" if of is None else f"content:{kind}.{of}")
    return None


def _user_turn(content: str | list[dict[str, Any]], reading: _Reading) -> list[Message]:
    if isinstance(content, str):
        return [Message(role="user", content=content)]
    reading.check(content)
    # Tool results become tool messages, ahead of the turn's other content:
    # OpenAI wants them right after the assistant's tool calls.
    out = [
        Message(
            role="tool", tool_call_id=str(b.get("tool_use_id", "")), content=_text_of_blocks(b.get("content"), reading)
        )
        for b in content
        if _kind(b) == "tool_result"
    ]
    system = [b for b in content if _kind(b) == "mid_conv_system"]
    text = _system_text(system, reading) if system else ""
    if text:
        out.append(Message(role="system", content=text))
    rest = [b for b in content if _kind(b) not in ("tool_result", "mid_conv_system")]
    parts = [p for b in rest if (p := _part(b, reading)) is not None]
    if parts:
        only_text = all(isinstance(p, TextPart) for p in parts)
        out.append(Message(role="user", content=content_text(parts) if only_text else parts))
    return out


def _after_system(messages: list[Message], turn: list[Message]) -> list[Message]:
    """A user turn's tool results go right after the calls they answer (as
    OpenAI wants), ahead of a system message between the two; the rest of it,
    to be added after ``messages``."""
    results = [m for m in turn if m.role == "tool"]
    at = len(messages)
    while at and messages[at - 1].role == "system":
        at -= 1
    if results and at < len(messages) and at and messages[at - 1].role == "assistant":
        messages[at:at] = results
        return turn[len(results) :]
    return turn


def _assistant_turn(content: str | list[dict[str, Any]], reading: _Reading) -> Message:
    """The same blocks an Anthropic upstream answers with: text and tool calls."""
    if isinstance(content, str):
        return Message(role="assistant", content=content)
    reading.check(content)
    for b in content:
        if _kind(b) not in ("text", "tool_use"):
            reading.drop(f"content:{_kind(b)}")
    return from_blocks(content)


# Anthropic's tool_choice types, in OpenAI's words (a "tool" one names its tool).
_CHOICES: dict[str, ToolChoiceOption] = {"auto": "auto", "any": "required", "none": "none"}


def _tool_choice(choice: dict[str, Any] | None) -> tuple[ToolChoiceOption | None, bool | None]:
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        return ToolChoice(type="function", function=NamedTool(name=str(choice.get("name", "")))), parallel
    return _CHOICES.get(kind, "auto") if isinstance(kind, str) else "auto", parallel


def _reasoning_effort(req: ARequest, reading: _Reading) -> str | None:
    """How hard to think, in OpenAI's words: the effort the client set, else
    one read from a thinking budget (at the thresholds LiteLLM's low, medium
    and high budgets of 1,024, 2,048 and 4,096 tokens meet). Adaptive thinking
    leaves it to the model, and so does the unified request."""
    config, thinking = req.output_config, req.thinking
    if config is not None and config.format is not None:
        reading.drop("output_config.format")
    if config is not None and config.effort is not None:
        if config.effort not in EFFORTS:
            reading.drop("output_config.effort")
        return EFFORTS.get(config.effort)
    if thinking is None or thinking.type in ("disabled", "adaptive"):
        return None
    if thinking.type != "enabled" or thinking.budget_tokens is None:
        reading.drop("thinking")
        return None
    budget = thinking.budget_tokens
    return "low" if budget < 2048 else "medium" if budget < 4096 else "high"


def to_chat_body(req: ARequest) -> Inbound:
    """The unified request, and what it leaves out of the fields ``ARequest``
    reads. A ``system`` message keeps its place as a unified system message:
    OpenAI's family takes those anywhere, and the families with a single
    system instruction (Gemini's, Anthropic's) append it to theirs
    (``content.split_system``). A user turn marked as the system's would keep
    the order too, but give the instruction no more than a user's authority."""
    reading = _Reading()
    messages: list[Message] = []
    if req.system:
        messages.append(Message(role="system", content=_text_of_blocks(req.system, reading)))
    for m in req.messages:
        if m.role == "assistant":
            messages.append(_assistant_turn(m.content, reading))
        elif m.role == "system":
            reading.lossy = True  # an Anthropic upstream would get it moved into ``system``
            text = _system_text(m.content, reading)
            messages += [Message(role="system", content=text)] if text else []
        else:
            messages += _after_system(messages, _user_turn(m.content, reading))
    tools = []
    for i, t in enumerate(req.tools or ()):
        if not t.custom:  # Anthropic's own tools (web search, bash, ...): no other family has them
            reading.drop(f"tools[{i}]:{t.type}")
            continue
        fn = FunctionDef(name=t.name, description=t.description or None, parameters=t.input_schema)
        tools.append(ToolDef(type="function", function=fn))
    # A tool's fields beyond these (defer_loading, strict, input_examples, ...)
    # are not seen by the typed decoding: a request with tools keeps its body.
    reading.lossy = reading.lossy or bool(req.tools)
    tool_choice, parallel = _tool_choice(req.tool_choice)
    forced = forced_tool(tool_choice)
    if forced is not None and forced not in {t.function.name for t in tools if t.function is not None}:
        reading.drop("tool_choice")  # it names a tool left out above
        tool_choice = "auto"
    if req.top_k is not None:
        reading.drop("top_k")
    body = ChatBody(
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
        reasoning_effort=_reasoning_effort(req, reading),
    )
    return Inbound(body, list(reading.dropped), reading.lossy)


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
