"""OpenAI chat completions and embeddings, and every API that copies them.

One class serves OpenAI and the OpenAI-compatible family; Azure and Mistral
subclass it for their URL, auth and parameter differences.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from schemas.chat import ChatBody, Choice, Delta, EmbeddingsBody, Message, StreamOptions, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from services.providers.base import ChatResult, EmbeddingsResult, StreamEvent, UpstreamRequest
from services.providers.openai import errors
from services.providers.openai.types import OAChunk, OACompletion, OAEmbeddings, OAUsage

_encode = msgspec.json.Encoder().encode
_decode_completion = msgspec.json.Decoder(OACompletion).decode
_decode_chunk = msgspec.json.Decoder(OAChunk).decode
_decode_embeddings = msgspec.json.Decoder(OAEmbeddings).decode
JSON = "application/json"


def usage_of(u: OAUsage | None) -> Usage | None:
    if u is None:
        return None
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else u.prompt_cache_hit_tokens
    reasoning = u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else 0
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        source="reported",
    )


class OpenAIStream:
    def feed(self, data: str) -> StreamEvent | None:
        if data == "[DONE]":
            return None
        try:
            chunk = _decode_chunk(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable stream chunk: {exc}") from exc
        deltas = []
        for c in chunk.choices:
            d = c.delta
            content = d.content if d.refusal is None else (d.content or "") + d.refusal
            deltas.append(
                Delta(
                    index=c.index, role=d.role, content=content, tool_calls=d.tool_calls, finish_reason=c.finish_reason
                )
            )
        reported = chunk.usage or (chunk.x_groq.usage if chunk.x_groq else None)
        first = deltas[0] if deltas else None
        return StreamEvent(delta=first, usage=usage_of(reported), model=chunk.model, extra=deltas[1:])


class OpenAIChat:
    """``stream_usage``: whether the server understands
    ``stream_options.include_usage`` (some compatible servers reject it)."""

    def __init__(self, *, stream_usage: bool = True) -> None:
        self.stream_usage = stream_usage

    # -- what subclasses change --------------------------------------------
    def url(self, deployment: Deployment, path: str) -> str:
        return f"{deployment.base_url}{path}"

    def headers(self, api_key: str | None) -> dict[str, str]:
        headers = {"content-type": JSON}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    def encode_body(self, body: ChatBody) -> bytes:
        return _encode(body)

    # -- chat ---------------------------------------------------------------
    def endpoint(self, deployment: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]:
        return self.url(deployment, "/chat/completions"), self.headers(api_key)

    def build_request(
        self, deployment: Deployment, body: ChatBody, api_key: str | None, *, stream: bool
    ) -> UpstreamRequest:
        upstream = msgspec.structs.replace(body, model=deployment.upstream_model, stream=stream)
        # Always ask for usage when streaming: accounting needs it even when the
        # client did not ask; the ingress decides whether the client sees it.
        upstream.stream_options = StreamOptions(include_usage=True) if stream and self.stream_usage else None
        return UpstreamRequest(
            url=self.url(deployment, "/chat/completions"),
            headers=self.headers(api_key),
            content=self.encode_body(upstream),
        )

    def parse_response(self, data: bytes) -> ChatResult:
        try:
            completion = _decode_completion(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable completion: {exc}") from exc
        if not completion.choices:
            raise UpstreamError("Upstream completion has no choices.")
        choices = []
        for choice in sorted(completion.choices, key=lambda c: c.index):
            m = choice.message
            content = m.content if m.refusal is None else m.refusal
            message = Message(role=m.role, content=content, tool_calls=m.tool_calls)
            choices.append(Choice(index=choice.index, message=message, finish_reason=choice.finish_reason))
        return ChatResult(
            message=choices[0].message,
            finish_reason=choices[0].finish_reason,
            usage=usage_of(completion.usage),
            model=completion.model,
            other_choices=choices[1:],
        )

    def stream_parser(self) -> OpenAIStream:
        return OpenAIStream()

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.map_error(status, body, headers)

    # -- embeddings ---------------------------------------------------------
    def build_embeddings_request(
        self, deployment: Deployment, body: EmbeddingsBody, api_key: str | None
    ) -> UpstreamRequest:
        # Floats from the upstream whatever the client asked: the ingress
        # renders base64 itself, so every family answers the same way.
        upstream = msgspec.structs.replace(body, model=deployment.upstream_model, encoding_format="float")
        return UpstreamRequest(
            url=self.url(deployment, "/embeddings"), headers=self.headers(api_key), content=_encode(upstream)
        )

    def parse_embeddings(self, data: bytes) -> EmbeddingsResult:
        try:
            doc = _decode_embeddings(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent unreadable embeddings: {exc}") from exc
        vectors = [e.embedding for e in sorted(doc.data, key=lambda e: e.index)]
        u = doc.usage
        usage = Usage(prompt_tokens=u.prompt_tokens, source="reported") if u is not None else None
        return EmbeddingsResult(vectors=vectors, usage=usage, model=doc.model)
