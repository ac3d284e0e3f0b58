"""The mock's images: OpenAI's ``/images/generations`` (JSON) and
``/images/edits`` (multipart), Azure's under ``/openai/deployments/{d}/``,
and Imagen's ``models/{m}:predict`` (the Gemini API), each answered with
real, small, valid PNGs of the size asked for.

As OpenAI does: dall-e-3 makes one image a request and revises its prompt;
the GPT image models refuse ``response_format`` (they always answer in
base64), report token usage and say which size and quality they made
("auto" resolved); the others answer a URL unless asked for ``b64_json``.
An edit must upload PNGs (the image, and the mask if any). Directives in
the prompt (``[mock:status=500]``, ``latency_ms``, ``hang``) apply; each
answer's image count goes to ``mock.usages`` as ``{"images": n}``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import struct
import time
import zlib
from typing import Any

import msgspec

from loadtest.mock_upstream.faults import Behaviour, apply_directives

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any]).decode
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The largest side the mock draws (gpt-image-2's largest size is 3840x2160).
MAX_SIDE = 3840
# Imagen's aspect ratios and the size it makes for each.
IMAGEN_SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
# What a GPT image model's "auto" resolves to here.
AUTO_SIZE, AUTO_QUALITY = "1024x1024", "high"
# Output tokens a GPT image model reports per image (OpenAI's table for 1024x1024 by quality).
IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
INPUT_IMAGE_TOKENS = 323


class BadRequest(Exception):
    """What OpenAI would refuse with a 400."""


def handles(path: str) -> bool:
    return path.endswith(("/images/generations", "/images/edits")) or path.endswith(":predict")


async def handle(mock: Any, behaviour: Behaviour, path: str, scope: dict, raw: bytes, send: Any) -> None:
    imagen = path.endswith(":predict")
    try:
        if imagen:
            req = _decode(raw)
            prompt = str((req.get("instances") or [{}])[0].get("prompt", ""))
        elif path.endswith("/images/edits"):
            req, files = read_form(_content_type(scope), raw)
            prompt = str(req.get("prompt", ""))
        else:
            req, files = _decode(raw), {}
            prompt = str(req.get("prompt", ""))
    except (msgspec.DecodeError, BadRequest, AttributeError, IndexError, TypeError):
        return await mock._send(send, 400, _json.encode(_error(400, imagen, "could not read the request")))
    b = apply_directives(behaviour, prompt)
    if b.hang:
        await asyncio.Event().wait()
    if b.latency_ms:
        await asyncio.sleep(b.latency_ms / 1000)
    if b.status != 200:
        headers = [(b"content-type", b"application/json")] + ([(b"retry-after", b"2")] if b.status == 429 else [])
        return await mock._send(send, b.status, _json.encode(_error(b.status, imagen, "mock error")), headers)
    try:
        answer = imagen_answer(req) if imagen else openai_answer(req, files, _model(path, req))
    except (BadRequest, KeyError, TypeError, ValueError) as exc:
        return await mock._send(send, 400, _json.encode(_error(400, imagen, str(exc))))
    made = len(answer["predictions"] if imagen else answer["data"])
    mock.usages.append(_json.encode({"images": made}))
    await mock._send(send, 200, _json.encode(answer))
    mock.stats.completed_requests += 1


def _model(path: str, req: dict[str, Any]) -> str:
    """The model: the body's, else Azure's deployment in the path."""
    if req.get("model"):
        return str(req["model"])
    parts = path.split("/")
    return parts[parts.index("deployments") + 1] if "deployments" in parts else "dall-e-2"


def _content_type(scope: dict) -> str:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.decode("latin-1")
    return ""


def _error(status: int, imagen: bool, message: str) -> dict[str, Any]:
    if imagen:
        return {"error": {"code": status, "message": f"mock error {status}: {message}", "status": "INVALID_ARGUMENT"}}
    return {"error": {"message": f"mock error {status}: {message}", "type": "mock_error", "code": f"mock_{status}"}}


@functools.lru_cache(maxsize=16)
def png(width: int, height: int) -> bytes:
    """A valid PNG of one colour: signature, IHDR, IDAT, IEND."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x20\x80\xc0" * width  # filter byte "none", then RGB pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height, 6)) + chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its IHDR."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise BadRequest("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _dimensions(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise BadRequest(f"size {size!r} is not supported")
    return w, h


def _gpt_image(model: str) -> bool:
    return model.startswith(("gpt-image", "chatgpt-image"))


def openai_answer(req: dict[str, Any], files: dict[str, list[bytes]], model: str) -> dict[str, Any]:
    prompt = req.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("'prompt' is required")
    n = int(req.get("n") or 1)
    if not 1 <= n <= 10 or (model == "dall-e-3" and n != 1):
        raise BadRequest(f"'n' of {n} is not supported for {model}")
    gpt = _gpt_image(model)
    if gpt and "response_format" in req:
        raise BadRequest("Unknown parameter: 'response_format'.")
    images = files.get("image", []) + files.get("image[]", [])
    if files and not images:
        raise BadRequest("'image' is required")
    for data in [*images, *files.get("mask", [])]:
        png_size(data)  # an upload that is no PNG is refused
    size = str(req.get("size") or (AUTO_SIZE if gpt else "1024x1024"))
    size = AUTO_SIZE if size == "auto" else size
    picture = base64.b64encode(png(*_dimensions(size))).decode()
    as_url = not gpt and req.get("response_format", "url") == "url"
    data: list[dict[str, Any]] = []
    for i in range(n):
        item: dict[str, Any] = {"url": f"https://mock-upstream.invalid/images/{i}.png"} if as_url else {}
        if not as_url:
            item["b64_json"] = picture
        if model == "dall-e-3":
            item["revised_prompt"] = f"A carefully drawn picture of: {prompt}"
        data.append(item)
    answer: dict[str, Any] = {"created": int(time.time()), "data": data}
    if gpt:
        quality = str(req.get("quality") or "auto")
        quality = AUTO_QUALITY if quality == "auto" else quality
        text_tokens = len(prompt.split())
        image_tokens = INPUT_IMAGE_TOKENS * len(images)
        output_tokens = IMAGE_TOKENS.get(quality, IMAGE_TOKENS["high"]) * n
        answer |= {
            "background": "opaque" if req.get("background") in (None, "auto") else req["background"],
            "output_format": req.get("output_format") or "png",
            "quality": quality,
            "size": size,
            "usage": {
                "input_tokens": text_tokens + image_tokens,
                "output_tokens": output_tokens,
                "total_tokens": text_tokens + image_tokens + output_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            },
        }
    return answer


def imagen_answer(req: dict[str, Any]) -> dict[str, Any]:
    parameters = req.get("parameters") or {}
    count = int(parameters.get("sampleCount") or 1)
    if not 1 <= count <= 4:
        raise BadRequest("sampleCount must be between 1 and 4")
    ratio = parameters.get("aspectRatio") or "1:1"
    if ratio not in IMAGEN_SIZES:
        raise BadRequest(f"aspectRatio {ratio!r} is not supported")
    picture = base64.b64encode(png(*IMAGEN_SIZES[ratio])).decode()
    return {"predictions": [{"bytesBase64Encoded": picture, "mimeType": "image/png"} for _ in range(count)]}


def read_form(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """A whole multipart/form-data body: its text fields, and its files by field name."""
    kind, _, params = content_type.partition(";")
    boundary = ""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise BadRequest("not multipart/form-data")
    fields: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    delimiter = b"--" + boundary.encode()
    for part in raw.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise BadRequest("a part has no head")
        body = body.removesuffix(b"\r\n")
        disposition = next(
            (line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition")),
            "",
        )
        name = _param(disposition, "name")
        if _param(disposition, "filename") is not None:
            files.setdefault(name or "", []).append(body)
        elif name is not None:
            fields[name] = body.decode()
    return fields, files


def _param(disposition: str, key: str) -> str | None:
    for item in disposition.split(";")[1:]:
        name, _, value = item.strip().partition("=")
        if name == key:
            return value.strip('"')
    return None
