"""OpenAI's moderations (``POST /v1/moderations``), whatever deployment
serves the model: ``{model, input}`` with the input a text, texts, or
parts (``{"type": "text", "text"}`` and ``{"type": "image_url",
"image_url": {"url"}}``, the omni models'), answered ``{id, model,
results: [{flagged, categories, category_scores,
category_applied_input_types}]}``, one result a text (one for all the
parts together).

A moderation is free at OpenAI but counted (its row holds the text's
tokens). A tenant guardrail that moderates chat requests is not this row's.
"""

from __future__ import annotations

import msgspec

from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final
from schemas.reservation import RateState
from schemas.tasks import ModerationPart, ModerationRequest, ModerationResult, ModerationVerdict
from services.apis import openai_shapes, rate_headers
from services.apis.base import ClientApi, Headers, Parsed, RequestView, WholeAnswers, bearer, decode_json
from services.task_policy import MAX_MODERATION_INPUTS

# What OpenAI uses when the request names no model.
DEFAULT_MODEL = "omni-moderation-latest"
# The inputs one request may hold: policy's bound (a bus caller's request
# passes there too), so the door and policy refuse the same lists.
MAX_INPUTS = MAX_MODERATION_INPUTS
# An image is given by URL or as a data URL; a scheme such as file: is no
# image an upstream could fetch.
IMAGE_SCHEMES = ("https://", "http://", "data:image/")


class ModerationBody(msgspec.Struct, omit_defaults=True):
    """A moderation request as the caller writes it."""

    input: str | list[str | ModerationPart]
    model: str = DEFAULT_MODEL


class ModerationAnswer(msgspec.Struct):
    id: str
    model: str
    results: list[ModerationVerdict]


_decode_body = msgspec.json.Decoder(ModerationBody).decode
_encode = msgspec.json.Encoder().encode


def parse(raw: bytes) -> Parsed:
    body = decode_json(_decode_body, raw)
    check(body.input)
    return Parsed(model=body.model, task=ModerationRequest(model=body.model, input=body.input))


def check(value: str | list[str | ModerationPart]) -> None:
    """What OpenAI would refuse, refused before anything is published."""
    if isinstance(value, str):
        return
    if not value:
        raise InvalidRequest("'input' must be a string, or a non-empty list of strings or of parts.")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' holds {len(value)} items; at most {MAX_INPUTS} are moderated at once.")
    texts = sum(isinstance(item, str) for item in value)
    if texts not in (0, len(value)):
        raise InvalidRequest("'input' must be strings, or parts, not a mix.")
    for i, item in enumerate(value):
        if isinstance(item, ModerationPart):
            check_part(i, item)


def check_part(i: int, part: ModerationPart) -> None:
    if part.type == "text" and part.text is None:
        raise InvalidRequest(f"input[{i}]: a text part needs 'text'.")
    if part.type == "image_url" and (part.image_url is None or not part.image_url.url.startswith(IMAGE_SCHEMES)):
        raise InvalidRequest(f"input[{i}]: an image_url part needs 'image_url.url', an http(s) or data:image/ URL.")


class ModerationRenderer(WholeAnswers):
    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def final(self, f: Final) -> bytes:
        result = f.task_result
        assert isinstance(result, ModerationResult), "a moderation answers with verdicts"
        return _encode(ModerationAnswer(id=self.r.id, model=self.r.model, results=result.results))

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


APIS: tuple[ClientApi, ...] = (
    ClientApi(
        "moderations",
        "/v1/moderations",
        parse,
        ModerationRenderer,
        openai_shapes.error,
        bearer,
        ModerationBody,
        ModerationAnswer,
        "OpenAI moderations",
        streams=False,
    ),
)
