"""OpenAI's ImagesResponse, rendered from an ``ImagesResult`` whose images
the ingress already filled in (``ImageOut.b64_json`` or ``url``)."""

from __future__ import annotations

import msgspec

from schemas.chat import Usage
from schemas.tasks import ImagesResult

_json = msgspec.json.Encoder()


class Image(msgspec.Struct, omit_defaults=True):
    b64_json: str = ""
    url: str = ""
    revised_prompt: str | None = None


class InputTokensDetails(msgspec.Struct):
    text_tokens: int
    image_tokens: int


class ImagesUsage(msgspec.Struct):
    """What the GPT image models report (tokens); the gateway bills their images."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails


class ImagesResponse(msgspec.Struct, omit_defaults=True):
    created: int
    data: list[Image]
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    usage: ImagesUsage | None = None


def images_usage(result: ImagesResult, u: Usage) -> ImagesUsage | None:
    """The token usage, when the upstream reported tokens (the GPT image models)."""
    if not (u.prompt_tokens or u.completion_tokens):
        return None
    image_tokens = min(result.input_image_tokens, u.prompt_tokens)
    details = InputTokensDetails(text_tokens=u.prompt_tokens - image_tokens, image_tokens=image_tokens)
    return ImagesUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens, details)


def images_response(created: int, result: ImagesResult, u: Usage) -> bytes:
    data = [Image(b64_json=i.b64_json, url=i.url, revised_prompt=i.revised_prompt) for i in result.images]
    return _json.encode(
        ImagesResponse(
            created=created,
            data=data,
            background=result.background,
            output_format=result.output_format,
            quality=result.quality,
            size=result.size,
            usage=images_usage(result, u),
        )
    )
