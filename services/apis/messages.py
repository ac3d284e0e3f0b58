"""Anthropic's Messages API (``POST /v1/messages``), whatever provider serves
the model, so the official ``anthropic`` SDK works against Sluice unchanged.
The shapes themselves (request -> unified, unified -> events) are in
``anthropic_shapes``."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from schemas.errors import InvalidRequest
from schemas.replies import Chunk, Failure, Final
from schemas.reservation import RateState
from services.apis import anthropic_shapes as shapes
from services.apis import rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, decode_json
from services.providers import passthrough
from services.providers.anthropic.chat import BETA_MAX_CHARS, valid_betas
from services.providers.anthropic.types import ARequest, AResponse

_decode_request = msgspec.json.Decoder(ARequest).decode
_encode = msgspec.json.Encoder().encode


def parse(raw: bytes) -> Parsed:
    """Whatever Anthropic's API takes: fields and content Sluice does not read
    go to an Anthropic deployment in the client's own body, and are named in
    ``dropped`` (for a deployment of another family)."""
    request = decode_json(_decode_request, raw)
    if not request.messages:
        raise InvalidRequest("messages: at least one message is required.")
    if request.max_tokens < 0:  # 0 only fills Anthropic's prompt cache
        raise InvalidRequest("max_tokens: must be at least 0.")
    inbound = shapes.to_chat_body(request)
    body = inbound.body
    unread = [name for name in passthrough.uncarried("messages", raw) if name not in ARequest.__struct_fields__]
    keep = inbound.lossy or passthrough.worth_keeping("messages", raw)
    return Parsed(
        model=body.model,
        stream=bool(body.stream),
        body=body,
        raw=raw if keep else b"",
        dropped=(unread + inbound.dropped)[: shapes.MAX_DROPPED],
    )


def error_body(f: Failure) -> bytes:
    return shapes.error_body(f.type, f.code, f.message)


class MessagesRenderer:
    def __init__(self, request: RequestView) -> None:
        self.r = request
        self.events = shapes.StreamRenderer(request.id, request.model)

    def error(self, f: Failure) -> bytes:
        return error_body(f)

    def final(self, f: Final) -> bytes:
        assert f.message is not None
        return _encode(shapes.response(self.r.id, self.r.model, f.message, f.finish_reason, f.usage))

    def chunk(self, c: Chunk) -> bytes:
        return self.events.delta(c.delta)

    def end(self, f: Final) -> bytes:
        return self.events.end(f.finish_reason, f.usage)

    def stream_error(self, f: Failure) -> bytes:
        return self.events.error(f.type, f.code, f.message)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.anthropic(rate)


def api_key(header: Callable[[bytes], str | None]) -> str | None:
    """The anthropic SDK sends ``x-api-key``; ``Authorization: Bearer`` works too."""
    key = header(b"x-api-key")
    return f"Bearer {key}" if key else header(b"authorization")


def anthropic_beta(header: Callable[[bytes], str | None]) -> str:
    """The betas the caller asks for (Claude Code sends seven), as written:
    a header that is not a list of beta names is the caller's 400, as on Anthropic's API."""
    value = (header(b"anthropic-beta") or "").strip()
    if value and not valid_betas(value):
        raise InvalidRequest(
            f"anthropic-beta: expected beta names ([A-Za-z0-9._-]) separated by commas, "
            f"at most {BETA_MAX_CHARS} characters."
        )
    return value


API = ClientApi(
    "messages",
    "/v1/messages",
    parse,
    MessagesRenderer,
    error_body,
    api_key,
    ARequest,
    AResponse,
    "Anthropic Messages, to any model of the gateway",
    anthropic_beta=anthropic_beta,
)
