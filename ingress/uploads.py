"""The files of a multipart request (an image edit, an audio upload), kept
in the object store as they stream in, under names the door makes: the
tenant of the key that sent them, kind "upload" (``services.bus.blobs``).

Only this door makes upload refs. A request read from JSON, at any door
(the bus's and the WebSocket's too), may carry none (``refuse_refs``): a
caller who could name a blob could have the gateway read someone else's
upload, or delete it when the request ends. The refs a form's task carries
must be those this door kept for it (``Uploads.check``), and those are the
only blobs it deletes, when the request ends; an upload left behind by a
process that died ages out of ``subjects.OBJ_MEDIA``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from schemas.errors import InternalError, InvalidRequest, RequestTooLarge
from schemas.tasks import BlobRef, ImageRequest, TaskRequest, TranscriptionRequest
from services.bus import blobs

log = logging.getLogger("sluice.ingress.uploads")

# What the upstream is told of an upload (the multipart part's file name and
# type): a caller's, so bounded and without the characters a header breaks on.
MAX_NAME_CHARS = 255


class Keeper(Protocol):
    """The part of ``services.bus.blobs.BlobStore`` the door uses."""

    async def put_stream(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = "",
        filename: str = "",
        max_bytes: int | None = None,
    ) -> BlobRef: ...

    async def delete(self, name: str) -> None: ...


def refs_of(task: TaskRequest | None) -> list[BlobRef]:
    """Every blob a request's task names."""
    if isinstance(task, ImageRequest):
        return [*task.images, *([task.mask] if task.mask is not None else [])]
    if isinstance(task, TranscriptionRequest):
        return [task.audio]
    return []


def refuse_refs(task: TaskRequest | None) -> None:
    """A request read from JSON names no blob: files come as a multipart upload."""
    if refs_of(task):
        raise InvalidRequest("Files are sent as a multipart/form-data upload, over HTTP.", code="upload_required")


def clean(value: str) -> str:
    """A caller's file name or content type, as far as it is safe to pass on."""
    return "".join(c for c in value if c.isprintable() and c not in '"\\')[:MAX_NAME_CHARS]


class Uploads:
    """One request's uploads: kept as they stream in, within ``max_bytes``
    in all, deleted by ``discard`` when the request ends."""

    def __init__(self, keeper: Keeper, max_bytes: int) -> None:
        self.keeper = keeper
        self.max_bytes = max_bytes
        # Whose uploads these are ("" for a key of no tenant): set by the door
        # once it checked the caller's key; nothing is kept before.
        self.tenant_id: str | None = None
        self.kept: list[BlobRef] = []

    @property
    def used(self) -> int:
        return sum(ref.size for ref in self.kept)

    def _too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"The uploaded files are larger than the limit of {self.max_bytes} bytes in all "
            "(the gateway's max_upload_bytes)."
        )

    async def store(self, field: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> BlobRef:
        """``ingress.multipart.StoreFile``: one file, read a slice at a time."""
        if self.tenant_id is None:
            raise InternalError("An upload was read before its caller's key was checked.")
        left = self.max_bytes - self.used
        if left <= 0:
            raise self._too_large()
        try:
            ref = await self.keeper.put_stream(
                blobs.new_name(self.tenant_id, "upload"),
                chunks,
                content_type=clean(content_type),
                filename=clean(filename),
                max_bytes=left,
            )
        except RequestTooLarge:
            raise self._too_large() from None
        self.kept.append(ref)
        return ref

    def check(self, task: TaskRequest | None) -> None:
        """The form's task names only what this request uploaded (a row's
        ``parse_form`` takes refs from the form alone; this says so)."""
        ours = {ref.name for ref in self.kept}
        if any(ref.name not in ours for ref in refs_of(task)):
            raise InternalError("The request named a file it did not upload.")

    async def discard(self) -> None:
        """Delete every upload of the request. One that cannot be deleted
        now (NATS away) ages out of the store."""
        kept, self.kept = self.kept, []
        for ref in kept:
            try:
                await self.keeper.delete(ref.name)
            except Exception as exc:  # the request's answer is not the store's to spoil
                log.warning("upload %s was not deleted: %r", ref.name, exc)
