"""(issue 28: being built) The gateway's object stores: bytes too large for
a message, streamed in and out a slice at a time, never held whole.

Named "<tenant>/<kind>/<id>" (``schemas.tasks.BlobRef``): kind "file" lives
in ``subjects.OBJ_BLOBS`` until deleted; "upload" and "image" in
``subjects.OBJ_MEDIA``, which ages them out. The stores are JetStream object
stores in NATS's own layout, so ``nats object`` reads them too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js import JetStreamContext

from schemas.tasks import BlobRef


class BlobStore:
    """``services.providers.tasks.BlobAccess`` over NATS."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def start(self) -> None:
        """Make the stores where they are missing."""
        raise NotImplementedError

    async def put_stream(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str = "",
        filename: str = "",
        max_bytes: int | None = None,
    ) -> BlobRef:
        """Keep what ``chunks`` yields as ``name``; its size and sha256 on the
        ref. Past ``max_bytes`` it stops reading, removes what it kept and
        raises ``schemas.errors.RequestTooLarge``."""
        raise NotImplementedError

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        raise NotImplementedError

    def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def delete(self, name: str) -> None:
        """Gone (no error if it was not there)."""
        raise NotImplementedError
