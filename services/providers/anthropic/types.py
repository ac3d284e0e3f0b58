"""Anthropic Messages API wire types, as its API reference publishes them.

Used both ways: to call Anthropic upstream, and for the Anthropic-compatible
``POST /v1/messages`` ingress.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from schemas.chat import Integral, integral


class AUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AMessage(msgspec.Struct, omit_defaults=True):
    # "system": instructions from this point of the conversation on (a
    # request's, never an answer's).
    role: Literal["user", "assistant", "system"]
    # A string or a list of content blocks (text, image, tool_use, tool_result, ...).
    content: str | list[dict[str, Any]]


class ATool(msgspec.Struct, omit_defaults=True):
    """A tool: the caller's own (``type`` absent or "custom", with an input
    schema), or one Anthropic defines and may run itself (``web_search_20250305``,
    ``bash_20250124``, ...; some, like an MCP toolset, have no name)."""

    name: str = ""
    input_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})
    description: str | None = None
    type: str | None = None

    @property
    def custom(self) -> bool:
        return self.type in (None, "custom")


class AMetadata(msgspec.Struct, omit_defaults=True):
    user_id: str | None = None


class AThinking(msgspec.Struct, omit_defaults=True):
    """Extended thinking: "enabled" (with a budget), "adaptive" (the model
    decides), "disabled"; ``display`` "summarized" or "omitted"."""

    type: str
    budget_tokens: Integral | None = None
    display: str | None = None

    def __post_init__(self) -> None:
        self.budget_tokens = integral("budget_tokens", self.budget_tokens)


class AOutputConfig(msgspec.Struct, omit_defaults=True):
    # "low", "medium", "high", "xhigh", "max".
    effort: str | None = None
    # Structured output: {"type": "json_schema", "schema": {...}}.
    format: dict[str, Any] | None = None


class ARequest(msgspec.Struct, omit_defaults=True):
    """The fields Sluice reads. Any other field (``context_management``,
    ``container``, ``service_tier``, ...) is ignored here, and reaches an
    Anthropic deployment in the client's own body (``passthrough``)."""

    model: str
    max_tokens: Integral
    messages: list[AMessage]
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: Integral | None = None
    tools: list[ATool] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: AMetadata | None = None
    thinking: AThinking | None = None
    output_config: AOutputConfig | None = None

    def __post_init__(self) -> None:
        self.max_tokens = integral("max_tokens", self.max_tokens)  # type: ignore[assignment]
        self.top_k = integral("top_k", self.top_k)


class AResponse(msgspec.Struct):
    id: str
    model: str
    content: list[dict[str, Any]]
    usage: AUsage
    stop_reason: str | None = None
    stop_sequence: str | None = None
    role: str = "assistant"
    type: str = "message"


class AErrorDetail(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class AError(msgspec.Struct):
    error: AErrorDetail
    type: str = "error"


# -- streamed events: one tagged union (``type``), read by ``AnthropicStream``.
# A block or delta type not listed here (Anthropic adds them) is not shown.
class _AStartBlock(msgspec.Struct, tag_field="type"):
    pass


class TextStart(_AStartBlock, tag="text"):
    text: str = ""


class ToolUseStart(_AStartBlock, tag="tool_use"):
    id: str = ""
    name: str = ""


class _ABlockDelta(msgspec.Struct, tag_field="type"):
    pass


class TextDelta(_ABlockDelta, tag="text_delta"):
    text: str = ""


class InputJsonDelta(_ABlockDelta, tag="input_json_delta"):
    partial_json: str = ""


class AMessageDelta(msgspec.Struct):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class _AEvent(msgspec.Struct, tag_field="type"):
    pass


class MessageStart(_AEvent, tag="message_start"):
    message: AResponse


class ContentBlockStart(_AEvent, tag="content_block_start"):
    index: int
    content_block: TextStart | ToolUseStart


class ContentBlockDelta(_AEvent, tag="content_block_delta"):
    index: int
    delta: TextDelta | InputJsonDelta


class MessageDelta(_AEvent, tag="message_delta"):
    delta: AMessageDelta = msgspec.field(default_factory=AMessageDelta)
    usage: AUsage | None = None


class MessageStop(_AEvent, tag="message_stop"):
    pass


class StreamError(_AEvent, tag="error"):
    error: AErrorDetail = msgspec.field(default_factory=AErrorDetail)


AStreamEvent = MessageStart | ContentBlockStart | ContentBlockDelta | MessageDelta | MessageStop | StreamError


class AEventKind(msgspec.Struct):
    """Only an event's type: what an event the union does not read is."""

    type: str = ""


# Anthropic's stop_reason <-> OpenAI's finish_reason.
FINISH_FROM_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
STOP_FROM_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
