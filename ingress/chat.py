"""POST /v1/chat/completions: OpenAI's chat API."""

from __future__ import annotations

import msgspec

from ingress import endpoint, rate_headers
from ingress import openai_format as fmt
from ingress.call import Call
from ingress.gateway import Gateway
from ingress.http import Receive, Scope, Send, header
from schemas.chat import ChatBody
from schemas.errors import InvalidRequest
from schemas.quota import RateState
from schemas.replies import Chunk, Failure, Final
from services.providers import passthrough

_decode_body = msgspec.json.Decoder(ChatBody).decode


def parse_body(raw: bytes) -> endpoint.Parsed:
    body = endpoint.decode_json(_decode_body, raw)
    if not body.messages:
        raise InvalidRequest("'messages' must contain at least one message.")
    raw = raw if passthrough.worth_keeping("chat", raw) else b""
    return endpoint.Parsed(model=body.model, stream=bool(body.stream), body=body, raw=raw)


class ChatFormat:
    def __init__(self, call: Call) -> None:
        self.call = call
        options = call.body.stream_options if call.body else None
        self.include_usage = bool(options and options.include_usage)

    def error(self, f: Failure) -> bytes:
        return fmt.error(f)

    def final(self, f: Final) -> bytes:
        c = self.call
        assert f.message is not None
        return fmt.completion(c.id, c.created, c.model, f.message, f.finish_reason, f.usage, f.other_choices)

    def chunk(self, chunk: Chunk) -> bytes:
        return fmt.sse_chunk(self.call.id, self.call.created, self.call.model, chunk.delta)

    def end(self, f: Final) -> bytes:
        usage = fmt.sse_usage(self.call.id, self.call.created, self.call.model, f.usage) if self.include_usage else b""
        return usage + fmt.SSE_DONE

    def stream_error(self, f: Failure) -> bytes:
        return fmt.sse_error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> list[tuple[bytes, bytes]]:
        return rate_headers.openai(rate)


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await endpoint.serve(
        gw,
        scope,
        receive,
        send,
        api="chat",
        parse=parse_body,
        make_format=ChatFormat,
        error_body=fmt.error,
        api_key_header=header(scope, b"authorization"),
    )
