"""One try of an image request (generation or edit) at one deployment.

The adapter of the deployment's family builds the request and reads the
answer (``services.providers.openai.images``: OpenAI, Azure and the
compatible servers; ``services.providers.gemini.images``: Imagen). An
edit's uploads stream from the object store into the upstream's form body.
Each image made is kept in the object store (``blobs.write``) and answered
as its ``BlobRef``: the ingress renders it as base64 or as a URL it serves.

Billed per image made, at the catalog's price for its "<size>/<quality>",
and the tokens the GPT image models report reading at the catalog's token
prices (``usage.image_cost``: OpenAI's per-image prices are only what they
make). Once a 200's answer is read the images are made, and billed: an
answer that cannot be read, or images that cannot be kept, end the walk
(another deployment would make and bill them again) with what was made on
the failure (``progress.reported`` and ``progress.cost``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import httpx

from schemas.chat import Cost, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, InternalError, InvalidRequest, UpstreamError, UpstreamInvalidRequest
from schemas.tasks import ImageOut, ImageRequest, ImagesResult
from services import pricing
from services import usage as usage_svc
from services.bus.blobs import new_name
from services.providers.call import CallFailed, CallOutcome, CallProgress, _failed
from services.providers.gemini.chat import GeminiChat
from services.providers.gemini.images import ImagenImages
from services.providers.http import Body, Upstream
from services.providers.openai.images import OpenAIImages
from services.providers.registry import provider
from services.providers.tasks import BlobAccess, task_outcome
from services.providers.tasks.image_types import EditRequest, ImageAdapter, ImageAnswer
from services.providers.upload_body import FilePart, MultipartBody

# How long an image made stays in the store: OpenAI's URLs last 60 minutes.
# (The media store ages everything out sooner when its own age is shorter.)
IMAGE_TTL_S = 3600.0
# The largest answer read from an upstream: ten large images in base64.
MAX_ANSWER_BYTES = 128 * 1024 * 1024
# What OpenAI makes when the request leaves them out: the price's variant.
DEFAULT_SIZE = "1024x1024"
DEFAULT_QUALITY = "standard"


def adapter_for(dep: Deployment) -> ImageAdapter:
    """The family's image adapter; ``InvalidRequest`` for a family without one."""
    known = provider(dep.provider)
    if known.family in ("openai", "azure", "openai_compatible"):
        return OpenAIImages(known.chat)  # type: ignore[arg-type]  # the family's chat adapters have url/headers
    if known.family == "gemini" and isinstance(known.chat, GeminiChat):
        return ImagenImages(known.chat)
    raise InvalidRequest(f"Model deployment {dep.name!r} ({dep.provider}) serves no images.")


def price_variant(task: ImageRequest, answer: ImageAnswer) -> str:
    """The catalog's "<size>/<quality>" of what was made: the upstream's
    word when it gave one (the GPT image models resolve "auto"), else the request's, else OpenAI's defaults."""
    size = answer.size or task.size or DEFAULT_SIZE
    quality = answer.quality or task.quality or DEFAULT_QUALITY
    return f"{size}/{quality}"


async def call(
    client: Upstream,
    dep: Deployment,
    task: ImageRequest,
    progress: CallProgress,
    blobs: BlobAccess,
    tenant_id: str,
) -> CallOutcome:
    start_ns = time.time_ns()
    first_byte_ns = 0
    try:
        adapter = adapter_for(dep)
        key = os.environ.get(dep.api_key_env) if dep.api_key_env else None
        content: Body
        if task.edit:
            edit = adapter.edit_request(dep, task, key)
            form = _form(edit, blobs)
            url, headers, content = edit.url, {**edit.headers, **form.headers()}, form.stream()
        else:
            req = adapter.generation_request(dep, task, key)
            url, headers, content = req.url, req.headers, req.content
        progress.sent = True
        resp = await client.post(url, headers, content, dep.timeout_s)
        first_byte_ns = time.time_ns()
        try:
            if resp.status_code >= 400:
                raise adapter.map_error(resp.status_code, await _read_capped(resp.aiter_bytes()), resp.headers)
            # A 200: the upstream made (and billed) the images, whether or not its answer reaches us whole.
            progress.first_byte_ns = first_byte_ns
            answer = adapter.parse_images(await _read_capped(resp.aiter_bytes()))
        finally:
            await resp.aclose()
    except (GatewayError, httpx.TransportError) as exc:
        failed = _failed(exc, start_ns, first_byte_ns)
        if progress.first_byte_ns:
            _made_but_not_read(failed, progress)
        raise failed from exc
    usage, cost = billed(task, answer, dep)
    progress.reported, progress.cost = usage, cost
    if not answer.images:
        # Nothing made: another deployment may make them (this one's tokens, if it said, bill if none does).
        raise CallFailed(UpstreamError("The upstream answered with no image."), start_ns, first_byte_ns)
    images = await _kept(answer, blobs, tenant_id, start_ns, first_byte_ns)
    result = ImagesResult(
        images=images,
        size=answer.size,
        quality=answer.quality,
        background=answer.background,
        output_format=answer.output_format,
        input_image_tokens=answer.input_image_tokens,
    )
    return task_outcome(dep.upstream_model, usage, cost, result, start_ns, first_byte_ns)


def billed(task: ImageRequest, answer: ImageAnswer, dep: Deployment) -> tuple[Usage, Cost]:
    """What an answer's images bill: each at its "<size>/<quality>"'s
    price, and the tokens read (``usage.image_cost``); a size the catalog
    has no price for, the tokens alone at its token prices."""
    reported = answer.usage or Usage(source="reported")
    usage = Usage(
        prompt_tokens=reported.prompt_tokens,
        completion_tokens=reported.completion_tokens,
        source="reported",
        units=len(answer.images),
        unit="image",
    )
    per_image = pricing.unit_price(dep.catalog_model or "", "image", price_variant(task, answer))
    if per_image is None:
        return usage, usage_svc.cost_of(usage, dep.catalog_model)
    return usage, usage_svc.image_cost(usage, per_image, dep.catalog_model, answer.input_image_tokens)


def _made_but_not_read(failed: CallFailed, progress: CallProgress) -> None:
    """A 200 whose answer could not be read (cut, too large, not JSON, an
    image not base64): made, so billed as asked (``usage.task_cut_short``)
    and not made again elsewhere. But a refusal in a 200 (Imagen's safety
    filters withheld every image) made nothing, and bills nothing."""
    if isinstance(failed.error, UpstreamInvalidRequest):
        progress.reported, progress.cost = Usage(units=0, unit="image"), Cost()
    else:
        failed.repeatable = False


def _form(edit: EditRequest, blobs: BlobAccess) -> MultipartBody:
    """The edit's form, each file read from the store as the body goes out."""
    files = [FilePart(f.field, f.filename, f.content_type, f.ref.size, blobs.read(f.ref)) for f in edit.files]
    return MultipartBody(edit.fields, files)


async def _read_capped(chunks: AsyncIterator[bytes]) -> bytes:
    data = bytearray()
    async for piece in chunks:
        data += piece
        if len(data) > MAX_ANSWER_BYTES:
            raise UpstreamError(f"The upstream's images answer is larger than {MAX_ANSWER_BYTES} bytes.")
    return bytes(data)


async def _kept(
    answer: ImageAnswer, blobs: BlobAccess, tenant_id: str, start_ns: int, first_byte_ns: int
) -> list[ImageOut]:
    """Each image in the object store. The upstream made (and billed) them
    already: a store that fails here must not send the request to another
    deployment to be made and billed again (the failure bills them:
    ``progress.cost``)."""
    kept = []
    try:
        for image in answer.images:
            ref = await blobs.write(new_name(tenant_id, "image"), image.data, image.content_type, IMAGE_TTL_S)
            kept.append(ImageOut(blob=ref, revised_prompt=image.revised_prompt))
    except Exception as exc:
        error = InternalError(f"The images were made but could not be kept: {type(exc).__name__}.")
        raise CallFailed(error, start_ns, first_byte_ns, repeatable=False) from exc
    return kept
