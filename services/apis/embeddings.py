"""OpenAI's embeddings (``POST /v1/embeddings``), whatever provider serves the model."""

from __future__ import annotations

import msgspec

from schemas.chat import EmbeddingsBody
from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final
from schemas.reservation import RateState
from services.apis import openai_shapes as shapes
from services.apis import rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, WholeAnswers, bearer, decode_json

_decode_body = msgspec.json.Decoder(EmbeddingsBody).decode


def parse(raw: bytes) -> Parsed:
    body = decode_json(_decode_body, raw)
    value = body.input
    if not value or (isinstance(value, list) and any(item == "" or item == [] for item in value)):
        raise InvalidRequest("'input' must be a non-empty string, or a non-empty list of non-empty inputs.")
    if isinstance(value, list) and len({type(item) for item in value}) > 1:
        raise InvalidRequest("'input' must be texts, a token array, or token arrays, not a mix.")
    return Parsed(model=body.model, embeddings=body)


class EmbeddingsRenderer(WholeAnswers):
    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return shapes.error(f)

    def final(self, f: Final) -> bytes:
        body = self.r.parsed.embeddings
        base64_floats = body is not None and body.encoding_format == "base64"
        return shapes.embeddings(self.r.model, f.embeddings or [], f.usage, base64_floats)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


API = ClientApi(
    "embeddings",
    "/v1/embeddings",
    parse,
    EmbeddingsRenderer,
    shapes.error,
    bearer,
    EmbeddingsBody,
    shapes.EmbeddingList,
    "OpenAI embeddings",
    streams=False,
)
