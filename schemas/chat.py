"""The unified chat format: OpenAI's chat-completions shape, as the gateway
carries it between stages. Provider adapters translate to and from it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

UsageSource = Literal["reported", "counted"]


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    # A string, or OpenAI content parts (text, image_url, ...) kept as given.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


class ChatBody(msgspec.Struct, omit_defaults=True):
    """A chat-completions request body. Unknown JSON fields are ignored."""

    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # "reported" when the upstream said so, "counted" when we tokenized.
    source: UsageSource = "reported"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Delta(msgspec.Struct, omit_defaults=True):
    """One streamed increment of the answer."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
