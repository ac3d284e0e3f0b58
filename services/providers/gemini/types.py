"""Gemini API (generativelanguage v1beta) wire types: the fields the gateway reads."""

from __future__ import annotations

from typing import Any

import msgspec


class GUsage(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    total_token_count: int = 0
    cached_content_token_count: int = 0
    # Thinking tokens: billed as output, but not inside candidates_token_count.
    thoughts_token_count: int = 0


class GContent(msgspec.Struct):
    parts: list[dict[str, Any]] = []
    role: str = "model"


class GCandidate(msgspec.Struct, rename="camel"):
    content: GContent = msgspec.field(default_factory=GContent)
    finish_reason: str | None = None
    index: int = 0


class GPromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class GResponse(msgspec.Struct, rename="camel"):
    candidates: list[GCandidate] = []
    prompt_feedback: GPromptFeedback | None = None
    usage_metadata: GUsage | None = None
    model_version: str = ""


class GErrorDetail(msgspec.Struct):
    code: int = 0
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = []


class GError(msgspec.Struct):
    error: GErrorDetail


class GEmbedding(msgspec.Struct):
    values: list[float]


class GEmbeddings(msgspec.Struct):
    embeddings: list[GEmbedding]


# Gemini's finishReason -> OpenAI's finish_reason.
FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
