"""OpenAI's chat-completions response shapes, rendered from bus replies."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.chat import Delta, Message, Usage

_json = msgspec.json.Encoder()


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(msgspec.Struct):
    index: int
    message: Message
    finish_reason: str | None
    logprobs: None = None


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
    tool_calls: list[dict[str, Any]] | None = None


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
    usage: CompletionUsage | None = None
    object: str = "chat.completion.chunk"


def usage(u: Usage) -> CompletionUsage:
    return CompletionUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens)


def completion(
    request_id: str, created: int, model: str, message: Message, finish_reason: str | None, u: Usage
) -> bytes:
    return _json.encode(
        ChatCompletion(
            id=f"chatcmpl-{request_id}",
            created=created,
            model=model,
            choices=[Choice(index=0, message=message, finish_reason=finish_reason)],
            usage=usage(u),
        )
    )


def sse_chunk(request_id: str, created: int, model: str, delta: Delta) -> bytes:
    chunk = ChatCompletionChunk(
        id=f"chatcmpl-{request_id}",
        created=created,
        model=model,
        choices=[
            ChunkChoice(
                index=0,
                delta=ChunkDelta(role=delta.role, content=delta.content, tool_calls=delta.tool_calls),
                finish_reason=delta.finish_reason,
            )
        ],
    )
    return b"data: " + _json.encode(chunk) + b"\n\n"


def sse_usage(request_id: str, created: int, model: str, u: Usage) -> bytes:
    chunk = ChatCompletionChunk(id=f"chatcmpl-{request_id}", created=created, model=model, choices=[], usage=usage(u))
    return b"data: " + _json.encode(chunk) + b"\n\n"


def sse_error(type_: str, code: str, message: str) -> bytes:
    # The openai SDK raises APIError for a stream event that carries "error".
    return b"data: " + _json.encode({"error": {"message": message, "type": type_, "code": code}}) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"
