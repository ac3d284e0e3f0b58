"""OpenAI's images API: ``POST /v1/images/generations`` (JSON) and
``POST /v1/images/edits`` (multipart: the images and the mask stored by
the door as they streamed in), whatever provider serves the model.

Both become one ``ImageRequest`` (``Envelope.task``); the answer's images
come back as ``BlobRef``s, which the ingress turns into base64 or a URL it
serves (``ingress.image_content.inline``) before ``ImagesRenderer`` writes
OpenAI's ImagesResponse. Every caller-supplied field is checked here, in
the door's parse, against what OpenAI's API reference allows: a request
that could never be served is a 400 before anything is published.
"""

from __future__ import annotations

import re

import msgspec

from schemas.errors import InvalidRequest
from schemas.replies import Failure, Final
from schemas.reservation import RateState
from schemas.tasks import BlobRef, ImageFormat, ImageRequest, ImagesResult
from services.apis import images_shapes as shapes
from services.apis import openai_shapes, rate_headers
from services.apis.base import ClientApi, Form, Headers, Parsed, RequestView, WholeAnswers, bearer, decode_json

# OpenAI's limits (its API reference, CreateImageRequest / CreateImageEditRequest).
MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 10
MAX_EDIT_INPUTS = 16
MAX_USER_CHARS = 256
# What OpenAI defaults to when the model is left out.
DEFAULT_MODEL = "dall-e-2"
DEFAULT_EDIT_MODEL = "gpt-image-1.5"

QUALITIES = frozenset({"standard", "hd", "low", "medium", "high", "auto"})
BACKGROUNDS = frozenset({"transparent", "opaque", "auto"})
OUTPUT_FORMATS = frozenset({"png", "jpeg", "webp"})
STYLES = frozenset({"vivid", "natural"})
MODERATIONS = frozenset({"low", "auto"})
# "auto", or WIDTHxHEIGHT (gpt-image-2 takes any multiple of 16 up to 3840x2160).
_SIZE = re.compile(r"[1-9][0-9]{1,3}x[1-9][0-9]{1,3}")

# The edit form's fields that name files, and its text fields (each given once).
IMAGE_FIELDS = ("image", "image[]")
MASK_FIELD = "mask"
TEXT_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "response_format",
        "background",
        "output_format",
        "output_compression",
        "user",
        "moderation",
        "stream",
        # OpenAI's, with no place in ImageRequest: left out (``Parsed.dropped``).
        "input_fidelity",
        "partial_images",
    }
)


class GenerationBody(msgspec.Struct, omit_defaults=True):
    """``POST /v1/images/generations`` as the client sends it. Its own Struct,
    not ``ImageRequest``: a client names no stored images (``images``,
    ``mask``), only the door does."""

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    response_format: ImageFormat | None = None
    style: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    user: str | None = None
    stream: bool | None = None
    partial_images: int | None = None


class EditForm(msgspec.Struct, omit_defaults=True):
    """``POST /v1/images/edits``'s form (multipart/form-data), for the
    OpenAPI document: ``image`` (or several ``image[]``) and ``mask`` are files."""

    image: list[bytes]
    prompt: str
    mask: bytes | None = None
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    response_format: ImageFormat | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    user: str | None = None


_decode_body = msgspec.json.Decoder(GenerationBody).decode


def parse(raw: bytes) -> Parsed:
    body = decode_json(_decode_body, raw)
    if body.stream:
        raise InvalidRequest("Streamed image generation ('stream': true) is not served by this gateway.")
    for name, value in (("n", body.n), ("output_compression", body.output_compression)):
        # Bounded before ImageRequest sees it (it refuses what is past 64 bits with a bare ValueError).
        if value is not None and not 0 <= value <= 100:
            raise InvalidRequest(f"'{name}' is out of range: {value}.")
    request = ImageRequest(
        model=_model(body.model, DEFAULT_MODEL),
        prompt=body.prompt,
        n=body.n,
        size=body.size,
        quality=body.quality,
        response_format=body.response_format,
        style=body.style,
        background=body.background,
        output_format=body.output_format,
        output_compression=body.output_compression,
        moderation=body.moderation,
        user=body.user,
    )
    dropped = ["partial_images"] if body.partial_images is not None else []
    return Parsed(model=request.model, task=checked(request), dropped=dropped)


def parse_form(form: Form) -> Parsed:
    """An edit: its files already stored by the door (``form.files``)."""
    for name, refs in form.files.items():
        if name not in (*IMAGE_FIELDS, MASK_FIELD):
            raise InvalidRequest(
                f"Unexpected file field {name[:64]!r}: an edit takes 'image' (or 'image[]') and 'mask'."
            )
        if not refs:
            raise InvalidRequest(f"The file field {name[:64]!r} is empty.")
    images: list[BlobRef] = [ref for field in IMAGE_FIELDS for ref in form.files.get(field, ())]
    if not images:
        raise InvalidRequest("'image' is required: the image (or images, as 'image[]') to edit.")
    if len(images) > MAX_EDIT_INPUTS:
        raise InvalidRequest(f"At most {MAX_EDIT_INPUTS} images can be edited at once, got {len(images)}.")
    masks = form.files.get(MASK_FIELD, [])
    if len(masks) > 1:
        raise InvalidRequest("Only one 'mask' can be given.")
    text = _text_fields(form)
    if text.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidRequest("Streamed image edits ('stream': true) are not served by this gateway.")
    response_format = text.get("response_format")
    if response_format is not None and response_format not in ("url", "b64_json"):
        raise InvalidRequest("'response_format' must be 'url' or 'b64_json'.")
    request = ImageRequest(
        model=_model(text.get("model"), DEFAULT_EDIT_MODEL),
        prompt=text.get("prompt", ""),
        edit=True,
        images=images,
        mask=masks[0] if masks else None,
        n=_integer(text, "n"),
        size=text.get("size"),
        quality=text.get("quality"),
        response_format=response_format,  # type: ignore[arg-type]  # checked above
        background=text.get("background"),
        output_format=text.get("output_format"),
        output_compression=_integer(text, "output_compression"),
        moderation=text.get("moderation"),
        user=text.get("user"),
    )
    dropped = [name for name in ("input_fidelity", "partial_images") if name in text]
    return Parsed(model=request.model, task=checked(request), dropped=dropped)


def checked(r: ImageRequest) -> ImageRequest:
    """``r``, or the 400 that says which field OpenAI would refuse."""
    if not r.prompt.strip():
        raise InvalidRequest("'prompt' is required and must not be empty.")
    if len(r.prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters.")
    if r.n is not None and not 1 <= r.n <= MAX_IMAGES:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_IMAGES}, got {r.n}.")
    if r.size is not None and r.size != "auto" and not _SIZE.fullmatch(r.size):
        raise InvalidRequest(f"'size' must be 'auto' or WIDTHxHEIGHT (e.g. '1024x1024'), got {r.size[:32]!r}.")
    _one_of("quality", r.quality, QUALITIES)
    _one_of("background", r.background, BACKGROUNDS)
    _one_of("output_format", r.output_format, OUTPUT_FORMATS)
    _one_of("style", r.style, STYLES)
    _one_of("moderation", r.moderation, MODERATIONS)
    if r.output_compression is not None and not 0 <= r.output_compression <= 100:
        raise InvalidRequest(f"'output_compression' must be between 0 and 100, got {r.output_compression}.")
    if r.user is not None and len(r.user) > MAX_USER_CHARS:
        raise InvalidRequest(f"'user' is longer than {MAX_USER_CHARS} characters.")
    return r


def _model(value: str | None, default: str) -> str:
    if value is not None and not value.strip():
        raise InvalidRequest("'model' must not be empty.")
    return value if value is not None else default


def _one_of(name: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value not in allowed:
        raise InvalidRequest(f"'{name}' must be one of {', '.join(sorted(allowed))}; got {value[:32]!r}.")


def _text_fields(form: Form) -> dict[str, str]:
    """The form's text fields, each given at most once; any other name is ignored, as a JSON body's would be."""
    text: dict[str, str] = {}
    for name, values in form.fields.items():
        if name not in TEXT_FIELDS:
            continue
        if len(values) != 1:
            raise InvalidRequest(f"The form field {name!r} is given {len(values)} times; give it once.")
        text[name] = values[0]
    return text


def _integer(text: dict[str, str], name: str) -> int | None:
    value = text.get(name)
    if value is None:
        return None
    value = value.strip()
    # At most 6 digits: what OpenAI bounds (n, output_compression) is far smaller.
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise InvalidRequest(f"'{name}' must be a whole number, got {value[:32]!r}.")
    return int(value)


class ImagesRenderer(WholeAnswers):
    def __init__(self, request: RequestView) -> None:
        self.r = request

    def error(self, f: Failure) -> bytes:
        return openai_shapes.error(f)

    def final(self, f: Final) -> bytes:
        result = f.task_result
        if not isinstance(result, ImagesResult):
            result = ImagesResult(images=[])
        return shapes.images_response(self.r.created, result, f.usage)

    def rate_headers(self, rate: RateState | None) -> Headers:
        return rate_headers.openai(rate)


GENERATIONS = ClientApi(
    "images",
    "/v1/images/generations",
    parse,
    ImagesRenderer,
    openai_shapes.error,
    bearer,
    GenerationBody,
    shapes.ImagesResponse,
    "OpenAI image generation",
    streams=False,
)


def _no_json_edit(raw: bytes) -> Parsed:
    raise InvalidRequest("An image edit is a multipart/form-data upload: 'image', 'prompt', and optionally 'mask'.")


EDITS = ClientApi(
    "image_edits",
    "/v1/images/edits",
    _no_json_edit,
    ImagesRenderer,
    openai_shapes.error,
    bearer,
    EditForm,
    shapes.ImagesResponse,
    "OpenAI image edits (multipart/form-data)",
    streams=False,
    parse_form=parse_form,
)

APIS: tuple[ClientApi, ...] = (GENERATIONS, EDITS)
