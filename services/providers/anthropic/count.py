"""Anthropic's token count (``POST /v1/messages/count_tokens``) as an
upstream: the exact input tokens of a Messages request, for the model the
deployment names. It bills nothing and generates nothing.

The count must see what the completion would: the client's own body goes up
as written (its ``system``, tools, thinking and betas all count), only its
model changed to the deployment's. Without one (a bus caller's request, or a
tenant whose privacy rules rewrote the prompt) the unified request is
translated, as a completion's would be, less what a count does not take.
"""

from __future__ import annotations

import msgspec

from schemas.chat import ChatBody
from schemas.envelope import Deployment
from schemas.errors import UpstreamError
from services.providers.anthropic.chat import AnthropicChat, beta_headers, to_request
from services.providers.base import UpstreamRequest

PATH = "/v1/messages/count_tokens"
# What a completion's request carries that Anthropic's count refuses.
_NOT_COUNTED = ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata")

_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_encode = msgspec.json.Encoder().encode


class CountAnswer(msgspec.Struct):
    input_tokens: int


_decode_answer = msgspec.json.Decoder(CountAnswer).decode


def body_for(dep: Deployment, body: ChatBody, raw: bytes | None) -> bytes:
    """The count's request body: the client's own with the deployment's
    model, else the unified request translated."""
    if raw:
        doc = _fields(raw)
        doc["model"] = msgspec.Raw(_encode(dep.upstream_model))
        return _encode(doc)
    doc = _fields(_encode(to_request(body, dep.upstream_model, stream=False)))
    for name in _NOT_COUNTED:
        doc.pop(name, None)
    return _encode(doc)


def request(dep: Deployment, body: ChatBody, raw: bytes | None, api_key: str | None, betas: str) -> UpstreamRequest:
    _, headers = AnthropicChat().endpoint(dep, api_key)
    headers.update(beta_headers(betas))
    return UpstreamRequest(url=f"{dep.base_url}{PATH}", headers=headers, content=body_for(dep, body, raw))


def parse(data: bytes) -> int:
    try:
        return _decode_answer(data).input_tokens
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"Upstream sent an unreadable token count: {exc}") from exc
