"""OpenAI chat completions (and every API that copies it)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.chat import ChatBody, Delta, Message, StreamOptions, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from services.providers.base import ChatResult, StreamEvent, UpstreamRequest
from services.providers.openai import errors
from services.providers.openai.types import OAChunk, OACompletion, OAUsage

_encode = msgspec.json.Encoder().encode
_decode_completion = msgspec.json.Decoder(OACompletion).decode
_decode_chunk = msgspec.json.Decoder(OAChunk).decode


def _usage(u: OAUsage | None) -> Usage | None:
    if u is None:
        return None
    return Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, source="reported")


class OpenAIChat:
    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest:
        upstream = msgspec.structs.replace(body, model=deployment.upstream_model, stream=stream)
        # Always ask for usage when streaming: accounting needs it even when the
        # client did not ask; the ingress decides whether the client sees it.
        upstream.stream_options = StreamOptions(include_usage=True) if stream else None
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return UpstreamRequest(
            url=f"{deployment.base_url}/chat/completions", headers=headers, content=_encode(upstream)
        )

    def parse_response(self, data: bytes) -> ChatResult:
        try:
            completion = _decode_completion(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable completion: {exc}") from exc
        if not completion.choices:
            raise UpstreamError("Upstream completion has no choices.")
        choice = completion.choices[0]
        m = choice.message
        return ChatResult(
            message=Message(role=m.role, content=m.content, tool_calls=m.tool_calls),
            finish_reason=choice.finish_reason,
            usage=_usage(completion.usage),
            model=completion.model,
        )

    def parse_stream_data(self, data: str) -> StreamEvent | None:
        if data == "[DONE]":
            return None
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream chunk: {exc}") from exc
        delta = None
        if chunk.choices:
            c = chunk.choices[0]
            d = c.delta
            delta = Delta(role=d.role, content=d.content, tool_calls=d.tool_calls, finish_reason=c.finish_reason)
        return StreamEvent(delta=delta, usage=_usage(chunk.usage), model=chunk.model)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.map_error(status, body, headers)
