"""What a door does to a task's answer before its API renders it: an
image made is kept in the object store (``ImageOut.blob``), and becomes
the ``b64_json`` or the URL the caller asked for only here, at the door
that answers (``ingress.image_content``), so the bytes never ride the bus
and a URL names the address this caller reached the gateway at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from ingress import image_content
from ingress.gateway import Gateway
from schemas.replies import Final
from schemas.tasks import ImageRequest, ImagesResult, TaskRequest

# Completes a whole answer before it is rendered (``http_relay.complete``).
Finish = Callable[[Final], Awaitable[None]]


def finisher(gw: Gateway, task: TaskRequest | None, public_base: Callable[[], str] | None) -> Finish | None:
    """What completes this request's answer, if anything does (an image
    request's). ``public_base`` is asked only when an answer needs a URL;
    None: the door has no address to give (the bus, without ``[portal]
    base_url``), so an image not asked for as a URL comes as ``b64_json``
    (one asked for so was refused before it was published)."""
    if not isinstance(task, ImageRequest):
        return None
    request = task
    if public_base is None and request.response_format is None:
        request = msgspec.structs.replace(request, response_format="b64_json")

    async def finish(final: Final) -> None:
        if isinstance(final.task_result, ImagesResult):
            await image_content.inline(gw, final, request, public_base() if public_base is not None else "")

    return finish
