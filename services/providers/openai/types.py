"""OpenAI chat-completions and embeddings wire types, as the API reference
publishes them (only the fields the gateway reads)."""

from __future__ import annotations

import msgspec

from schemas.chat import CustomToolCall, ToolCall, ToolCallDelta


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class OAUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    # DeepSeek reports its cache hits here instead of prompt_tokens_details.
    prompt_cache_hit_tokens: int = 0


class OAMessage(msgspec.Struct, omit_defaults=True):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall | CustomToolCall] | None = None
    refusal: str | None = None


class OAChoice(msgspec.Struct):
    index: int = 0
    message: OAMessage = msgspec.field(default_factory=OAMessage)
    finish_reason: str | None = None


class OACompletion(msgspec.Struct):
    choices: list[OAChoice]
    model: str = ""
    usage: OAUsage | None = None


class OADelta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    refusal: str | None = None


class OAStreamChoice(msgspec.Struct):
    index: int = 0
    delta: OADelta = msgspec.field(default_factory=OADelta)
    finish_reason: str | None = None


class GroqExtra(msgspec.Struct):
    usage: OAUsage | None = None


class OAChunk(msgspec.Struct):
    choices: list[OAStreamChoice] = []
    model: str = ""
    usage: OAUsage | None = None
    # Groq puts the stream's usage here.
    x_groq: GroqExtra | None = None


class OAEmbedding(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class OAEmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class OAEmbeddings(msgspec.Struct):
    data: list[OAEmbedding]
    model: str = ""
    usage: OAEmbeddingUsage | None = None
