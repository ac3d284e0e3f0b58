"""POST /v1/messages: Anthropic's Messages API, whatever provider serves the
model, so the official ``anthropic`` SDK works against Sluice unchanged."""

from __future__ import annotations

import msgspec

from ingress import endpoint, rate_headers
from ingress.call import Call
from ingress.gateway import Gateway
from ingress.http import Receive, Scope, Send, header
from schemas.errors import InvalidRequest
from schemas.quota import RateState
from schemas.replies import Chunk, Failure, Final
from services.providers import passthrough
from services.providers.anthropic import inbound
from services.providers.anthropic.types import ARequest

_decode_request = msgspec.json.Decoder(ARequest).decode
_encode = msgspec.json.Encoder().encode


def parse_body(raw: bytes) -> endpoint.Parsed:
    request = endpoint.decode_json(_decode_request, raw)
    if not request.messages:
        raise InvalidRequest("messages: at least one message is required.")
    if request.max_tokens < 1:
        raise InvalidRequest("max_tokens: must be at least 1.")
    body = inbound.to_chat_body(request)
    raw = raw if passthrough.worth_keeping("messages", raw) else b""
    return endpoint.Parsed(model=body.model, stream=bool(body.stream), body=body, raw=raw)


def error_body(f: Failure) -> bytes:
    return inbound.error_body(f.type, f.code, f.message)


class MessagesFormat:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.renderer = inbound.StreamRenderer(call.id, call.model)

    def error(self, f: Failure) -> bytes:
        return error_body(f)

    def final(self, f: Final) -> bytes:
        assert f.message is not None
        return _encode(inbound.response(self.call.id, self.call.model, f.message, f.finish_reason, f.usage))

    def chunk(self, c: Chunk) -> bytes:
        return self.renderer.delta(c.delta)

    def end(self, f: Final) -> bytes:
        return self.renderer.end(f.finish_reason, f.usage)

    def stream_error(self, f: Failure) -> bytes:
        return self.renderer.error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> list[tuple[bytes, bytes]]:
        return rate_headers.anthropic(rate)


def api_key(scope: Scope) -> str | None:
    """The anthropic SDK sends ``x-api-key``; ``Authorization: Bearer`` works too."""
    key = header(scope, b"x-api-key")
    return f"Bearer {key}" if key else header(scope, b"authorization")


async def create_message(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await endpoint.serve(
        gw,
        scope,
        receive,
        send,
        api="messages",
        parse=parse_body,
        make_format=MessagesFormat,
        error_body=error_body,
        api_key_header=api_key(scope),
    )
