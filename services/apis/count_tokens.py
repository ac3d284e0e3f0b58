"""Anthropic's token count (``POST /v1/messages/count_tokens``): the input
tokens a Messages request would use, ``{"input_tokens": N}``, for any model
of the gateway. Claude Code asks before it sends a large tool result.

A count is a request like any other (the key, the model's access, the
request limits, a row with ``api`` "count_tokens"), but it uses no tokens and
costs nothing: the provider stage asks an Anthropic deployment's own count
endpoint (exact), and counts with the gateway's tokenizer for the model
otherwise. ``x-sluice-token-count`` says which: ``upstream`` or ``gateway``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final
from schemas.reservation import RateState
from services.apis import anthropic_shapes as shapes
from services.apis import messages, rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, WholeAnswers, decode_json
from services.providers import passthrough
from services.providers.anthropic.types import AMessage, AOutputConfig, ARequest, AThinking, ATool


class CountRequest(msgspec.Struct, omit_defaults=True):
    """A Messages request without what only a completion takes (``max_tokens``,
    sampling, ``stream``). Other fields (``mcp_servers``,
    ``context_management``, ...) reach an Anthropic deployment's count as written."""

    model: str
    messages: list[AMessage]
    system: str | list[dict[str, Any]] | None = None
    tools: list[ATool] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: AThinking | None = None
    output_config: AOutputConfig | None = None


class CountAnswer(msgspec.Struct):
    input_tokens: int


_decode_request = msgspec.json.Decoder(CountRequest).decode
_encode = msgspec.json.Encoder().encode


def parse(raw: bytes) -> Parsed:
    """Read as a Messages request would be; the client's own body always
    rides along, for an Anthropic deployment's exact count."""
    request = decode_json(_decode_request, raw)
    if not request.messages:
        raise InvalidRequest("messages: at least one message is required.")
    fields = {name: getattr(request, name) for name in CountRequest.__struct_fields__}
    inbound = shapes.to_chat_body(ARequest(max_tokens=0, **fields))
    unread = [name for name in passthrough.uncarried("messages", raw) if name not in ARequest.__struct_fields__]
    dropped = (unread + inbound.dropped)[: shapes.MAX_DROPPED]
    return Parsed(model=request.model, body=inbound.body, raw=raw, dropped=dropped)


class CountRenderer(WholeAnswers):
    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return messages.error_body(f)

    def final(self, f: Final) -> bytes:
        assert f.count is not None, "a token count's answer carries its count"
        return _encode(CountAnswer(f.count.input_tokens))

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.anthropic(rate)


API = ClientApi(
    "count_tokens",
    "/v1/messages/count_tokens",
    parse,
    CountRenderer,
    messages.error_body,
    messages.api_key,
    CountRequest,
    CountAnswer,
    "Anthropic's token count of a Messages request, for any model of the gateway (no tokens used, no cost)",
    anthropic_beta=messages.anthropic_beta,
    streams=False,
)
