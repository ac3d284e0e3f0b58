"""POST /v1/embeddings: OpenAI's embeddings API, whatever provider serves the model."""

from __future__ import annotations

import msgspec

from ingress import endpoint, rate_headers
from ingress import openai_format as fmt
from ingress.call import Call
from ingress.gateway import Gateway
from ingress.http import Receive, Scope, Send, header
from schemas.chat import EmbeddingsBody
from schemas.errors import InvalidRequest
from schemas.quota import RateState
from schemas.replies import Chunk, Failure, Final

_decode_body = msgspec.json.Decoder(EmbeddingsBody).decode


def parse_body(raw: bytes) -> endpoint.Parsed:
    body = endpoint.decode_json(_decode_body, raw)
    value = body.input
    if not value or (isinstance(value, list) and any(item == "" or item == [] for item in value)):
        raise InvalidRequest("'input' must be a non-empty string, or a non-empty list of non-empty inputs.")
    if isinstance(value, list) and len({type(item) for item in value}) > 1:
        raise InvalidRequest("'input' must be texts, a token array, or token arrays, not a mix.")
    return endpoint.Parsed(model=body.model, embeddings=body)


class EmbeddingsFormat:
    def __init__(self, call: Call) -> None:
        self.call = call

    def error(self, f: Failure) -> bytes:
        return fmt.error(f)

    def final(self, f: Final) -> bytes:
        body = self.call.embeddings
        base64_floats = body is not None and body.encoding_format == "base64"
        return fmt.embeddings(self.call.model, f.embeddings or [], f.usage, base64_floats)

    # Embeddings are never streamed: parse_body never sets ``stream``.
    def chunk(self, c: Chunk) -> bytes:
        raise NotImplementedError("embeddings are not streamed")

    def end(self, f: Final) -> bytes:
        raise NotImplementedError("embeddings are not streamed")

    def stream_error(self, f: Failure) -> bytes:
        raise NotImplementedError("embeddings are not streamed")

    def rate_headers(self, rate: RateState | None) -> list[tuple[bytes, bytes]]:
        return rate_headers.openai(rate)


async def create_embeddings(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    await endpoint.serve(
        gw,
        scope,
        receive,
        send,
        api="embeddings",
        parse=parse_body,
        make_format=EmbeddingsFormat,
        error_body=fmt.error,
        api_key_header=header(scope, b"authorization"),
    )
