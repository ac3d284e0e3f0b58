"""Imagen through the Gemini API as an upstream: ``POST
/v1beta/models/{model}:predict`` with ``{instances: [{prompt}], parameters:
{sampleCount, aspectRatio, ...}}``, answered with ``predictions[]`` each
holding ``bytesBase64Encoded`` and ``mimeType`` (or ``raiFilteredReason``
for an image its safety filter withheld).

Imagen takes an aspect ratio, not a size: an OpenAI size is mapped to the
nearest ratio Imagen offers. The Gemini API has no image edits (Vertex AI's
Imagen has, behind another API): an edit is refused as the caller's 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from schemas.envelope import Deployment
from schemas.errors import ContentFiltered, GatewayError, InvalidRequest, UpstreamError
from schemas.tasks import ImageRequest
from services.providers.base import UpstreamRequest
from services.providers.gemini.chat import GeminiChat
from services.providers.tasks.image_types import EditRequest, ImageAnswer, MadeImage, decoded, sniffed_type

_encode = msgspec.json.Encoder().encode
# Imagen's aspect ratios, as width / height.
ASPECT_RATIOS = {"1:1": 1.0, "3:4": 3 / 4, "4:3": 4 / 3, "9:16": 9 / 16, "16:9": 16 / 9}
# At most this many images per request (the Gemini API's sampleCount bound).
MAX_SAMPLES = 4
_OUTPUT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


class Prediction(msgspec.Struct, rename="camel"):
    bytes_base64_encoded: str | None = None
    mime_type: str | None = None
    rai_filtered_reason: str | None = None


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction] = []


_decode_response = msgspec.json.Decoder(PredictResponse).decode


def aspect_ratio(size: str | None) -> str | None:
    """The Imagen ratio nearest an OpenAI size ("1792x1024" -> "16:9");
    None for none or "auto" (Imagen's default, 1:1)."""
    if size is None or size == "auto":
        return None
    width, _, height = size.partition("x")
    ratio = int(width) / int(height)
    return min(ASPECT_RATIOS, key=lambda name: abs(ASPECT_RATIOS[name] - ratio))


class ImagenImages:
    def __init__(self, chat: GeminiChat) -> None:
        # The key's header and the error bodies are Gemini's, as for chat.
        self.chat = chat

    def generation_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> UpstreamRequest:
        n = task.n or 1
        if n > MAX_SAMPLES:
            raise InvalidRequest(f"Imagen makes at most {MAX_SAMPLES} images per request; 'n' is {n}.")
        parameters: dict[str, Any] = {"sampleCount": n}
        ratio = aspect_ratio(task.size)
        if ratio is not None:
            parameters["aspectRatio"] = ratio
        if task.output_format is not None:
            if task.output_format not in _OUTPUT_TYPES:
                raise InvalidRequest(f"Imagen makes png or jpeg images, not {task.output_format!r}.")
            parameters["outputOptions"] = {"mimeType": _OUTPUT_TYPES[task.output_format]}
            if task.output_compression is not None and task.output_format == "jpeg":
                parameters["outputOptions"]["compressionQuality"] = task.output_compression
        url = f"{dep.base_url}/v1beta/models/{dep.upstream_model}:predict"
        body = {"instances": [{"prompt": task.prompt}], "parameters": parameters}
        return UpstreamRequest(url=url, headers=self.chat.headers(api_key), content=_encode(body))

    def edit_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> EditRequest:
        raise InvalidRequest(f"Model deployment {dep.name!r} (Imagen on the Gemini API) cannot edit images.")

    def parse_images(self, data: bytes) -> ImageAnswer:
        try:
            doc = _decode_response(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable Imagen answer: {exc}") from exc
        images = []
        withheld = []
        for p in doc.predictions:
            if not p.bytes_base64_encoded:
                withheld.append(p.rai_filtered_reason or "no reason given")
                continue
            raw = decoded(p.bytes_base64_encoded)
            images.append(MadeImage(raw, sniffed_type(raw, p.mime_type)))
        if not images:
            # Imagen leaves out what its filters withheld: nothing at all is every image withheld.
            reason = withheld[0][:500] if withheld else "no reason given"
            raise ContentFiltered(f"Imagen made no image; its safety filters withheld them ({reason}).")
        return ImageAnswer(images=images)

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return self.chat.map_error(status, body, headers)
