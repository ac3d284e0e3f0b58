"""OpenAI's chat completions (``POST /v1/chat/completions``)."""

from __future__ import annotations

import msgspec

from schemas.chat import ChatBody
from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final
from schemas.reservation import RateState
from services.apis import openai_shapes as shapes
from services.apis import rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, bearer, decode_json
from services.providers import passthrough

_decode_body = msgspec.json.Decoder(ChatBody).decode


def parse(raw: bytes) -> Parsed:
    body = decode_json(_decode_body, raw)
    if not body.messages:
        raise InvalidRequest("'messages' must contain at least one message.")
    raw = raw if passthrough.worth_keeping("chat", raw) else b""
    return Parsed(model=body.model, stream=bool(body.stream), body=body, raw=raw)


class ChatRenderer:
    def __init__(self, request: RequestView) -> None:
        self.r = request
        body = request.parsed.body
        options = body.stream_options if body else None
        self.include_usage = bool(options and options.include_usage)

    def error(self, f: Failure) -> bytes:
        return shapes.error(f)

    def final(self, f: Final) -> bytes:
        r = self.r
        assert f.message is not None
        return shapes.completion(r.id, r.created, r.model, f.message, f.finish_reason, f.usage, f.other_choices)

    def chunk(self, c: Chunk) -> bytes:
        return shapes.sse_chunk(self.r.id, self.r.created, self.r.model, c.delta)

    def end(self, f: Final) -> bytes:
        r = self.r
        usage = shapes.sse_usage(r.id, r.created, r.model, f.usage) if self.include_usage else b""
        return usage + shapes.SSE_DONE

    def stream_error(self, f: Failure) -> bytes:
        return shapes.sse_error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


API = ClientApi(
    "chat",
    "/v1/chat/completions",
    parse,
    ChatRenderer,
    shapes.error,
    bearer,
    ChatBody,
    shapes.ChatCompletion,
    "OpenAI chat completions, to any model of the gateway",
)
