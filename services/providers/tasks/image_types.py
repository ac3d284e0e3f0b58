"""What an image adapter reads an upstream's answer into, whatever its
family: the images' bytes (decoded, not yet stored) and what the answer
said of them. Pure data; the call (``tasks.images``) stores and prices it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Protocol

import msgspec

from schemas.chat import Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, UpstreamError
from schemas.tasks import BlobRef, ImageRequest
from services.providers.base import UpstreamRequest

_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


class MadeImage(msgspec.Struct):
    data: bytes
    content_type: str
    revised_prompt: str | None = None


class ImageAnswer(msgspec.Struct):
    images: list[MadeImage]
    # Tokens, when the upstream reported them (the GPT image models).
    usage: Usage | None = None
    input_image_tokens: int = 0
    # What the upstream says it made (OpenAI's GPT image models say so).
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None


class EditFile(msgspec.Struct):
    field: str
    ref: BlobRef
    filename: str
    content_type: str


class EditRequest(msgspec.Struct):
    """An edit's upstream request: a form (``providers.upload_body``) whose
    files the call streams from the object store."""

    url: str
    headers: dict[str, str]
    fields: list[tuple[str, str]]
    files: list[EditFile]


class ImageAdapter(Protocol):
    def generation_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> UpstreamRequest: ...

    def edit_request(self, dep: Deployment, task: ImageRequest, api_key: str | None) -> EditRequest:
        """Raises ``InvalidRequest`` where the family edits no images."""
        ...

    def parse_images(self, data: bytes) -> ImageAnswer: ...

    def map_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...


def sniffed_type(data: bytes, declared: str | None) -> str:
    """An image's content type from its own first bytes, else from what the
    upstream declared ("png" or "image/png"), else PNG."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    declared = (declared or "").lower()
    return _CONTENT_TYPES.get(declared.removeprefix("image/"), "image/png")


def decoded(b64: str) -> bytes:
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamError(f"The upstream sent an image that is not valid base64: {exc}.") from exc
    if not data:
        raise UpstreamError("The upstream sent an empty image.")
    return data
