"""What a door does to a task's answer before its API renders it: an
image made is kept in the object store (``ImageOut.blob``), and becomes
the ``b64_json`` or the URL the caller asked for only here, at the door
that answers (``ingress.image_content``), so the bytes never ride the bus
and a URL names the address this caller reached the gateway at."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ingress.gateway import Gateway
from schemas.replies import Final
from schemas.tasks import ImageRequest, ImagesResult, TaskRequest

# Completes a whole answer before it is rendered (``http_relay.complete``).
Finish = Callable[[Final], Awaitable[None]]


def finisher(gw: Gateway, task: TaskRequest | None, public_base: Callable[[], str]) -> Finish | None:
    """What completes this request's answer, if anything does (an image
    request's). ``public_base`` is asked only when an answer needs it."""
    if not isinstance(task, ImageRequest):
        return None

    async def finish(final: Final) -> None:
        if isinstance(final.task_result, ImagesResult):
            # Loaded with the first image answer: a gateway serving no images loads none of it.
            try:
                from ingress import image_content
            except ImportError:  # (issue 28) until the images helper's module lands
                return
            await image_content.inline(gw, final, task, public_base())

    return finish
