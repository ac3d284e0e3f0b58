"""(issue 28: being built) A multipart/form-data body read as it streams
in: text fields kept (bounded), each file handed to ``store`` a slice at a
time, so an upload of any size never sits in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from ingress.http import Receive, Scope
from schemas.tasks import BlobRef
from services.apis.base import Form

# (field name, file name, content type, its bytes as they come) -> where it was kept.
StoreFile = Callable[[str, str, str, AsyncIterator[bytes]], Awaitable[BlobRef]]


async def read_form(
    scope: Scope, receive: Receive, store: StoreFile, *, max_field_bytes: int, timeout_s: float
) -> Form:
    """The form; ``InvalidRequest`` (400) for a body that is not
    multipart/form-data or is malformed, 413 for text fields past
    ``max_field_bytes`` in all; ``ClientDisconnected`` when the client left."""
    raise NotImplementedError
