"""Policy's checks of an image, audio, moderation or rerank request
(``Envelope.task``). The ingress's doors check what they parse, but a
service publishing on the bus sends the task as it likes: every count, size,
length and name is bounded here, where both kinds of caller pass.

Bytes ride as ``BlobRef`` names the provider reads from the object store:
a ref must name one of the caller's own tenant's uploads, so no request
can make the gateway send another tenant's bytes, or a stored file, upstream.
"""

from __future__ import annotations

import math
import re

from schemas.control import NO_TENANT
from schemas.envelope import Api
from schemas.errors import InvalidRequest, PermissionDenied
from schemas.tasks import (
    BlobRef,
    ImageRequest,
    ModerationPart,
    ModerationRequest,
    NativeBatchRequest,
    RerankRequest,
    SpeechRequest,
    TaskRequest,
    TranscriptionRequest,
)
from services import batches, native_batch, task_usage
from services.bus.blobs import bucket_of

# OpenAI's own limits where it states them: n 1-10 images, 16 images to
# edit (gpt-image-1), a prompt of 32,000 characters (gpt-image-1; dall-e-3
# takes 4,000), 4,096 characters to speak.
MAX_IMAGES = 10
MAX_IMAGE_INPUTS = 16
MAX_IMAGE_PROMPT_CHARS = 32_000
MAX_SPEECH_CHARS = 4_096
# Not stated upstream, bounded here: speech instructions and a
# transcription's prompt (whisper reads 224 tokens of it).
MAX_INSTRUCTIONS_CHARS = 4_096
MAX_TRANSCRIPTION_PROMPT_CHARS = 4_096
# Cohere advises at most 1,000 documents a request; the texts of a rerank
# or a moderation request together stay well under a bus message (8 MB).
# OpenAI states no bound on a moderation's inputs: 1,000 here, at the HTTP
# door too (``apis.moderations``); a longer list is a batch's job.
MAX_DOCUMENTS = 1_000
MAX_MODERATION_INPUTS = 1_000
MAX_TEXT_CHARS = 4_000_000
# Short options (size, quality, voice, language, formats): a word, not a text.
MAX_OPTION_CHARS = 64
MAX_USER_CHARS = 256
MAX_MODEL_CHARS = 256
MAX_FILENAME_CHARS = 255
MAX_TOKENS_PER_DOC = 32_768
# A file name and content type go into the upstream's multipart headers:
# no quote, backslash or control character may break out of them.
_HEADER_SAFE = re.compile(r"[^\x00-\x1f\x7f\"\\]*")

# The client APIs a task comes in on (``api_of``).
TASK_APIS: frozenset[str] = frozenset(
    ("images", "image_edits", "transcriptions", "translations", "speech", "moderations", "rerank")
)


def api_of(task: TaskRequest) -> Api:
    """The client API a task is, by what it asks (its row's ``api``)."""
    match task:
        case ImageRequest():
            return "image_edits" if task.edit else "images"
        case TranscriptionRequest():
            return "translations" if task.translate else "transcriptions"
        case SpeechRequest():
            return "speech"
        case ModerationRequest():
            return "moderations"
        case NativeBatchRequest():
            return "native_batch"
    return "rerank"


def check(task: TaskRequest, api: str) -> None:
    """The task's own shape: every count, size and length within bounds,
    and the API it came in on the one it is."""
    if api != api_of(task):
        raise InvalidRequest(f"This request is one of api {api_of(task)!r}, not of {api!r}.")
    if not task.model or len(task.model) > MAX_MODEL_CHARS:
        raise InvalidRequest(f"'model' is required, at most {MAX_MODEL_CHARS} characters.")
    match task:
        case ImageRequest():
            _check_image(task)
        case TranscriptionRequest():
            _check_transcription(task)
        case SpeechRequest():
            _check_speech(task)
        case ModerationRequest():
            _check_moderation(task)
        case RerankRequest():
            _check_rerank(task)
        case NativeBatchRequest():
            _check_native_batch(task)


def refs(task: TaskRequest) -> list[BlobRef]:
    """The stored bytes a task sends upstream."""
    if isinstance(task, ImageRequest):
        return [*task.images, *([task.mask] if task.mask is not None else [])]
    if isinstance(task, TranscriptionRequest):
        return [task.audio]
    if isinstance(task, NativeBatchRequest) and task.lines is not None:
        return [task.lines]
    return []


def check_refs(task: TaskRequest, tenant_id: str) -> None:
    """Every ref names an upload of the caller's own tenant ("<tenant>/upload/<id>")."""
    own = f"{tenant_id or NO_TENANT}/upload/"
    for ref in refs(task):
        bucket_of(ref.name)  # the gateway's own form, else InvalidRequest
        if not ref.name.startswith(own):
            # Whose it is, or that it is a stored file, is not said: only that it is not the caller's.
            raise PermissionDenied("A request may only send the caller's own uploads upstream.", code="blob_not_yours")
        if ref.size < 0:
            raise InvalidRequest("An upload's size is not negative.")
        for name, value in (("filename", ref.filename), ("content_type", ref.content_type)):
            _header_safe(name, value)


def _header_safe(name: str, value: str) -> None:
    if len(value) > MAX_FILENAME_CHARS or not _HEADER_SAFE.fullmatch(value):
        raise InvalidRequest(
            f"An upload's {name} is at most {MAX_FILENAME_CHARS} characters, without quotes, backslashes or "
            "control characters."
        )


def _text(name: str, value: str | None, most: int, *, required: bool = False) -> None:
    if required and not value:
        raise InvalidRequest(f"'{name}' is required.")
    if value is not None and len(value) > most:
        raise InvalidRequest(f"'{name}' is at most {most} characters ({len(value)} given).")


def _options(**values: str | None) -> None:
    for name, value in values.items():
        _text(name, value, MAX_OPTION_CHARS)


def _between(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise InvalidRequest(f"'{name}' must be between {low:g} and {high:g}.")


def _check_image(task: ImageRequest) -> None:
    _text("prompt", task.prompt, MAX_IMAGE_PROMPT_CHARS, required=True)
    _between("n", task.n, 1, MAX_IMAGES)
    _between("output_compression", task.output_compression, 0, 100)
    _text("user", task.user, MAX_USER_CHARS)
    _options(
        size=task.size,
        quality=task.quality,
        style=task.style,
        background=task.background,
        output_format=task.output_format,
        moderation=task.moderation,
    )
    if task.edit and not task.images:
        raise InvalidRequest("An image edit needs at least one 'image'.")
    if not task.edit and (task.images or task.mask is not None):
        raise InvalidRequest("Images to edit and a mask go to /v1/images/edits.")
    if len(task.images) > MAX_IMAGE_INPUTS:
        raise InvalidRequest(f"At most {MAX_IMAGE_INPUTS} images may be edited at once.")


def _check_transcription(task: TranscriptionRequest) -> None:
    _text("prompt", task.prompt, MAX_TRANSCRIPTION_PROMPT_CHARS)
    _options(language=task.language)
    _between("temperature", task.temperature, 0, 1)
    if task.timestamp_granularities is not None and len(task.timestamp_granularities) > 2:
        raise InvalidRequest("'timestamp_granularities' names each of 'word' and 'segment' at most once.")
    if task.duration_ms < 0:
        raise InvalidRequest("The audio's duration is not negative.")


def _check_speech(task: SpeechRequest) -> None:
    _text("input", task.input, MAX_SPEECH_CHARS, required=True)
    _text("voice", task.voice, MAX_OPTION_CHARS, required=True)
    _text("instructions", task.instructions, MAX_INSTRUCTIONS_CHARS)
    _between("speed", task.speed, 0.25, 4.0)


def _check_moderation(task: ModerationRequest) -> None:
    items = [task.input] if isinstance(task.input, str) else task.input
    if not items or len(items) > MAX_MODERATION_INPUTS:
        raise InvalidRequest(f"'input' holds 1 to {MAX_MODERATION_INPUTS} items.")
    total = 0
    for item in items:
        if isinstance(item, ModerationPart):
            if (item.type == "text") != (item.text is not None) or (item.type == "image_url") != (
                item.image_url is not None
            ):
                raise InvalidRequest("A 'text' part carries 'text'; an 'image_url' part carries 'image_url'.")
            total += len(item.text or "") + (len(item.image_url.url) if item.image_url is not None else 0)
        else:
            total += len(item)
    if total > MAX_TEXT_CHARS:
        raise InvalidRequest(f"'input' holds at most {MAX_TEXT_CHARS} characters in all.")


def _check_rerank(task: RerankRequest) -> None:
    _text("query", task.query, MAX_TEXT_CHARS, required=True)
    if not task.documents or len(task.documents) > MAX_DOCUMENTS:
        raise InvalidRequest(f"'documents' holds 1 to {MAX_DOCUMENTS} documents ({len(task.documents)} given).")
    _between("top_n", task.top_n, 1, MAX_DOCUMENTS)
    _between("max_tokens_per_doc", task.max_tokens_per_doc, 1, MAX_TOKENS_PER_DOC)
    total = len(task.query) + sum(len(text) for text in task_usage.document_texts(task))
    if total > MAX_TEXT_CHARS:
        raise InvalidRequest(f"The query and documents hold at most {MAX_TEXT_CHARS} characters in all.")


def _check_native_batch(task: NativeBatchRequest) -> None:
    """Only the ingress sends these (policy refuses them from anyone else);
    bounded all the same."""
    named = (("batch_id", task.batch_id), ("upstream_id", task.upstream_id), ("deployment", task.deployment))
    for name, value in named:
        if len(value) > MAX_MODEL_CHARS:
            raise InvalidRequest(f"'{name}' is at most {MAX_MODEL_CHARS} characters.")
    if task.op == "submit":
        if task.endpoint not in native_batch.ENDPOINTS["openai"] | native_batch.ENDPOINTS["anthropic"]:
            raise InvalidRequest(f"A native batch's endpoint is not {task.endpoint!r}.")
        if task.lines is None or not 0 < task.line_count <= batches.MAX_LINES or task.cost_pico_usd < 0:
            raise InvalidRequest("A native batch's submit names its lines, 1 to 50,000, and their cost.")
    elif not task.upstream_id or not task.deployment:
        raise InvalidRequest("A native batch's step names its upstream batch and deployment.")
