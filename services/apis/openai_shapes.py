"""OpenAI's response shapes (chat completions, streamed chunks, embeddings,
errors), rendered from bus replies."""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence

import msgspec

from schemas.chat import Choice as UnifiedChoice
from schemas.chat import CustomToolCall, Delta, Message, ToolCall, ToolCallDelta, Usage, content_text
from schemas.replies import Failure

_json = msgspec.json.Encoder()


def error_body(type_: str, code: str, message: str) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class PromptDetails(msgspec.Struct):
    cached_tokens: int


class CompletionDetails(msgspec.Struct):
    reasoning_tokens: int


class CompletionUsage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptDetails | None = None
    completion_tokens_details: CompletionDetails | None = None


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    """OpenAI's ChatCompletionResponseMessage: ``role``, ``content`` and
    ``refusal`` are required (both may be null); ``tool_calls`` only when there are some."""

    role: str
    content: str | None
    refusal: str | None
    tool_calls: list[ToolCall | CustomToolCall] | None = None


class Choice(msgspec.Struct):
    index: int
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


def response_message(m: Message) -> ResponseMessage:
    content = m.content
    if isinstance(content, list):  # parts: an answer is text, so its text parts
        content = content_text(content)
    # Sluice's adapters fold a refusal into the content (with finish_reason content_filter).
    return ResponseMessage(role=m.role or "assistant", content=content, refusal=None, tool_calls=m.tool_calls)


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    object: str = "chat.completion"


class ChunkDelta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: ChunkDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, omit_defaults=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    # Required by OpenAI's schema; no default, so omit_defaults keeps it.
    object: str
    usage: CompletionUsage | None = None


CHUNK = "chat.completion.chunk"


def usage(u: Usage) -> CompletionUsage:
    return CompletionUsage(
        u.prompt_tokens,
        u.completion_tokens,
        u.total_tokens,
        PromptDetails(u.cached_tokens) if u.cached_tokens else None,
        CompletionDetails(u.reasoning_tokens) if u.reasoning_tokens else None,
    )


def completion(
    request_id: str,
    created: int,
    model: str,
    message: Message,
    finish_reason: str | None,
    u: Usage,
    others: Sequence[UnifiedChoice] = (),
) -> bytes:
    """``others``: choices 1, 2, ... of a request with ``n`` > 1."""
    choices = [Choice(index=0, message=response_message(message), finish_reason=finish_reason)]
    choices += [
        Choice(index=c.index, message=response_message(c.message), finish_reason=c.finish_reason) for c in others
    ]
    return _json.encode(
        ChatCompletion(id=f"chatcmpl-{request_id}", created=created, model=model, choices=choices, usage=usage(u))
    )


def sse_chunk(request_id: str, created: int, model: str, delta: Delta) -> bytes:
    chunk = ChatCompletionChunk(
        id=f"chatcmpl-{request_id}",
        created=created,
        model=model,
        choices=[
            ChunkChoice(
                index=delta.index,
                delta=ChunkDelta(role=delta.role, content=delta.content, tool_calls=delta.tool_calls),
                finish_reason=delta.finish_reason,
            )
        ],
        object=CHUNK,
    )
    return b"data: " + _json.encode(chunk) + b"\n\n"


def sse_usage(request_id: str, created: int, model: str, u: Usage) -> bytes:
    chunk = ChatCompletionChunk(
        id=f"chatcmpl-{request_id}", created=created, model=model, choices=[], object=CHUNK, usage=usage(u)
    )
    return b"data: " + _json.encode(chunk) + b"\n\n"


def sse_error(type_: str, code: str, message: str) -> bytes:
    # The openai SDK raises APIError for a stream event that carries "error".
    return b"data: " + _json.encode(error_body(type_, code, message)) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def error(f: Failure) -> bytes:
    return _json.encode(error_body(f.type, f.code, f.message))


class EmbeddingItem(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct):
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


def embeddings(model: str, vectors: list[list[float]], u: Usage, base64_floats: bool) -> bytes:
    """OpenAI's embeddings response; ``base64_floats``: each vector as base64 of
    little-endian float32s, as OpenAI sends for ``encoding_format=base64``
    (the openai SDK's default)."""
    items = [EmbeddingItem(index=i, embedding=_base64_f32(v) if base64_floats else v) for i, v in enumerate(vectors)]
    return _json.encode(EmbeddingList(data=items, model=model, usage=EmbeddingUsage(u.prompt_tokens, u.prompt_tokens)))


def _base64_f32(vector: list[float]) -> str:
    floats = array("f", vector)
    if sys.byteorder != "little":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()
