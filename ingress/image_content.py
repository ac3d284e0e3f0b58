"""The images an image request made, as the caller gets them: inlined as
base64, or as a URL the gateway serves (``GET /v1/images/content/<token>``),
so a caller never gets an upstream's own signed URL.

The provider stage keeps every image made in the media store
(``subjects.OBJ_MEDIA``, named "<tenant>/image/<random id>"). ``inline``
fills each ``ImageOut`` just before the door renders the answer: its
base64 (the image is then removed from the store: nothing will ask for it
again), or its URL. The token in the URL is the image's name, encoded: as
unguessable as its random id (144 bits), and bound to its tenant and to
that one image. Like OpenAI's URLs it needs no key; a request that carries
another tenant's key is answered 404, as one for an image that does not
exist. The URL serves the image for ``image_url_ttl_s`` from when it was
made (the time on its meta, written by the provider stage: nothing a caller
can change), an hour by default as OpenAI's, and is 404 after; the media
store ages the image out at ``media_ttl_s`` in any case.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from datetime import datetime

from ingress.gateway import Gateway
from ingress.http import Scope, Send, header, send_gateway_error
from schemas.errors import GatewayError, InvalidRequest
from schemas.replies import Final
from schemas.tasks import BlobRef, ImageRequest, ImagesResult
from services import policy
from services.bus.blobs import tenant_of
from services.providers.openai.images import gpt_image

log = logging.getLogger("sluice.ingress")

PREFIX = "/v1/images/content/"
# A token is a name of at most 64 + 7 + 64 characters, in base64.
_MAX_TOKEN = 200
_KIND = "image"
# The browser or client may keep it: the bytes under a token never change.
_CACHE = b"private, max-age=3600, immutable"


def matches(path: str) -> bool:
    return path.startswith(PREFIX)


def token_of(ref: BlobRef) -> str:
    return base64.urlsafe_b64encode(ref.name.encode()).rstrip(b"=").decode()


def name_of(token: str) -> str | None:
    """The image's name in a token, or None for anything that is not a
    token of an image (an upload's or a file's name is never served here)."""
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        return None
    try:
        name = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        tenant_of(name)  # the gateway's own form of name, or InvalidRequest
    except (binascii.Error, ValueError, InvalidRequest):
        return None
    parts = name.split("/")
    return name if parts[1] == _KIND and token_of(BlobRef(name=name, size=0)) == token else None


def wants_url(request: ImageRequest, model: str) -> bool:
    """What the caller asked for; unasked, what OpenAI answers that model
    with: base64 for the GPT image models, a URL for the others."""
    if request.response_format is not None:
        return request.response_format == "url"
    return not gpt_image(model) and not gpt_image(request.model)


async def inline(gw: Gateway, final: Final, request: ImageRequest, public_base: str) -> None:
    """Fill each image of ``final`` with its base64 or its URL."""
    result = final.task_result
    if not isinstance(result, ImagesResult):
        return
    as_url = wants_url(request, final.model)
    for image in result.images:
        if as_url:
            image.url = f"{public_base}{PREFIX}{token_of(image.blob)}"
            continue
        data = bytearray()
        async for piece in gw.blobs.read(image.blob):
            data += piece
        image.b64_json = base64.b64encode(data).decode()
        try:
            await gw.blobs.delete(image.blob.name)
        except GatewayError as exc:  # it ages out of the store anyway
            log.warning("could not remove image %s once inlined: %s", image.blob.name, exc.message)


def expired(made: str | None, ttl_s: float, now_s: float) -> bool:
    """Whether an image made at ``made`` (its meta's ISO 8601 time) is past
    its URL's life; one whose time cannot be read counts as past it."""
    try:
        when = datetime.fromisoformat(made or "")
    except ValueError:
        return True
    if when.tzinfo is None:
        return True
    return now_s - when.timestamp() > ttl_s


def _not_found() -> InvalidRequest:
    return InvalidRequest("No such image: its URL is wrong or has expired.", status=404, code="not_found")


async def serve(gw: Gateway, scope: Scope, send: Send) -> None:
    """``GET`` (or ``HEAD``) ``/v1/images/content/<token>``: the image,
    streamed from the store as it is read."""
    try:
        if scope["method"] not in ("GET", "HEAD"):
            raise InvalidRequest(f"Method {scope['method']} is not allowed on image URLs.", status=405)
        name = name_of(scope["path"][len(PREFIX) :])
        if name is None:
            raise _not_found()
        authorization = header(scope, b"authorization")
        if authorization is not None:
            # A key is not needed; one that is not the image's tenant's finds nothing.
            try:
                key = policy.authenticate(authorization, gw.keys.by_hash, time.time_ns() // 1_000_000)
            except GatewayError:
                raise _not_found() from None
            if key.tenant_id != tenant_of(name):
                raise _not_found()
        info = await gw.blobs.info(name)
        if info is None or expired(info.mtime, gw.settings.image_url_ttl_s, time.time()):
            raise _not_found()
        ref = BlobRef(name=name, size=info.size or 0, content_type=_content_type(info.headers))
    except GatewayError as exc:
        return await send_gateway_error(send, exc)
    headers = [
        (b"content-type", ref.content_type.encode("latin-1")),
        (b"content-length", str(ref.size).encode()),
        (b"cache-control", _CACHE),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["method"] == "HEAD":
        return await send({"type": "http.response.body", "body": b""})
    try:
        async for piece in gw.blobs.read(ref):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    except GatewayError as exc:
        # The head went out: the answer can only be cut short (its length says so).
        log.warning("image %s cut short: %s", name, exc.message)
        return
    await send({"type": "http.response.body", "body": b""})


def _content_type(headers: dict[str, list[str]] | dict[str, str] | None) -> str:
    """The stored image's type: one of the image types the provider stores,
    never another (a page served from the gateway's origin would be its own)."""
    value = (headers or {}).get("Content-Type") or ""
    kind = value[0] if isinstance(value, list) and value else value
    return kind if kind in ("image/png", "image/jpeg", "image/webp") else "application/octet-stream"
