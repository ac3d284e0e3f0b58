"""OpenAI's images API as an upstream (``/images/generations``, and
``/images/edits`` as multipart), for OpenAI, Azure OpenAI and the
OpenAI-compatible servers: the URL and the key's header are the chat
adapter's (Azure: ``/openai/deployments/{d}/images/generations?api-version=``).

The upstream is always asked for base64 (``response_format: b64_json``;
the GPT image models answer so unasked, and refuse the parameter): callers
never get an upstream's signed URL, only the gateway's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from schemas.tasks import ImageRequest
from services.providers.base import UpstreamRequest
from services.providers.openai import errors
from services.providers.tasks.image_types import EditFile, EditRequest, ImageAnswer, MadeImage, decoded, sniffed_type

_encode = msgspec.json.Encoder().encode


class Endpoint(Protocol):
    """Where a deployment of the family is called, and how its key goes:
    the family's chat adapter (``OpenAIChat``, ``AzureOpenAIChat``)."""

    def url(self, deployment: Deployment, path: str) -> str: ...

    def headers(self, api_key: str | None) -> dict[str, str]: ...


class OAImageDetails(msgspec.Struct):
    text_tokens: int = 0
    image_tokens: int = 0


class OAImagesUsage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: OAImageDetails | None = None


class OAImage(msgspec.Struct):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class OAImagesResponse(msgspec.Struct):
    data: list[OAImage] = []
    created: int = 0
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    usage: OAImagesUsage | None = None


_decode_response = msgspec.json.Decoder(OAImagesResponse).decode


def gpt_image(model: str) -> bool:
    """The GPT image models: base64 always, and no ``response_format``."""
    return model.startswith(("gpt-image", "chatgpt-image"))


def _options(dep: Deployment, task: ImageRequest) -> dict[str, Any]:
    """The request's options, as OpenAI names them, that the caller set."""
    options: dict[str, Any] = {
        "model": dep.upstream_model,
        "prompt": task.prompt,
        "n": task.n,
        "size": task.size,
        "quality": task.quality,
        "style": task.style,
        "background": task.background,
        "output_format": task.output_format,
        "output_compression": task.output_compression,
        "moderation": task.moderation,
        "user": task.user,
    }
    if not gpt_image(dep.upstream_model):
        options["response_format"] = "b64_json"
    return {k: v for k, v in options.items() if v is not None}


class OpenAIImages:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def generation_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> UpstreamRequest:
        url = self.endpoint.url(dep, "/images/generations")
        return UpstreamRequest(url=url, headers=self.endpoint.headers(api_key), content=_encode(_options(dep, task)))

    def edit_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> EditRequest:
        # One image goes as "image", several as "image[]" (as the openai SDK sends them).
        field = "image" if len(task.images) == 1 else "image[]"
        files = [
            EditFile(field, ref, ref.filename or f"image-{i}.png", ref.content_type or "image/png")
            for i, ref in enumerate(task.images)
        ]
        if task.mask is not None:
            files.append(
                EditFile("mask", task.mask, task.mask.filename or "mask.png", task.mask.content_type or "image/png")
            )
        fields = [(name, str(value)) for name, value in _options(dep, task).items()]
        url = self.endpoint.url(dep, "/images/edits")
        return EditRequest(url=url, headers=self.endpoint.headers(api_key), fields=fields, files=files)

    def parse_images(self, data: bytes) -> ImageAnswer:
        try:
            doc = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable images answer: {exc}") from exc
        images = []
        for item in doc.data:
            if not item.b64_json:
                # A server that ignored response_format: its URL is not ours to hand out.
                raise UpstreamError("The upstream answered with an image URL, not the image's bytes.")
            raw = decoded(item.b64_json)
            images.append(MadeImage(raw, sniffed_type(raw, doc.output_format), item.revised_prompt))
        u = doc.usage
        usage = None
        image_tokens = 0
        if u is not None:
            usage = Usage(prompt_tokens=u.input_tokens, completion_tokens=u.output_tokens, source="reported")
            image_tokens = u.input_tokens_details.image_tokens if u.input_tokens_details else 0
        return ImageAnswer(
            images=images,
            usage=usage,
            input_image_tokens=image_tokens,
            size=doc.size,
            quality=doc.quality,
            background=doc.background,
            output_format=doc.output_format,
        )

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return errors.map_error(status, body, headers)
