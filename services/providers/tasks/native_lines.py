"""A native batch's lines as its deployment's family sends them: read from
the blob the driver wrote (``schemas.native_batch.NativeLines``), and each
translated by the family's own chat or embeddings adapter, exactly as the
line sent alone would be (``call.call_chat``'s translation).

The blob is read once into one buffer and its lines decoded one at a time
from it (``msgspec.Raw`` views), so only the buffer and the line at hand
are held, never 50,000 decoded bodies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from schemas.envelope import Deployment
from schemas.errors import InternalError, InvalidRequest
from schemas.native_batch import NativeLine
from schemas.tasks import BlobRef
from services import native_batch
from services.providers.call import _for_model as for_model
from services.providers.call import _translated as translated
from services.providers.openai.batch import LineKind
from services.providers.registry import provider
from services.providers.tasks import BlobAccess


class _RawLines(msgspec.Struct):
    lines: list[msgspec.Raw]


_decode_raw_lines = msgspec.msgpack.Decoder(_RawLines).decode
_decode_line = msgspec.msgpack.Decoder(NativeLine).decode


def kind_of(endpoint: str) -> LineKind:
    """What a batch's lines are, by its endpoint (chat completions and messages are both chat)."""
    return "embeddings" if endpoint == "/v1/embeddings" else "chat"


async def translated_lines(
    blobs: BlobAccess, ref: BlobRef, dep: Deployment, kind: LineKind, api_key: str | None
) -> AsyncIterator[tuple[str, bytes]]:
    """Each line's custom_id and the body its family's adapter builds for it."""
    data = bytearray()
    async for piece in blobs.read(ref):
        data += piece
        if len(data) > ref.size:
            raise InternalError(f"The batch's lines ({ref.name}) are longer than their {ref.size} bytes.")
    try:
        raws = _decode_raw_lines(data).lines
    except msgspec.DecodeError as exc:
        raise InternalError(f"The batch's lines cannot be read: {exc}") from exc
    for raw in raws:
        try:
            line = _decode_line(raw)
        except msgspec.DecodeError as exc:
            raise InternalError(f"A line of the batch cannot be read: {exc}") from exc
        yield line.custom_id, body_of(dep, kind, line, api_key)


def body_of(dep: Deployment, kind: LineKind, line: NativeLine, api_key: str | None) -> bytes:
    """The body ``dep``'s family sends for ``line`` (``InvalidRequest`` naming the line if none)."""
    known = provider(dep.provider)
    try:
        if kind == "chat" and line.chat is not None:
            body = for_model(line.chat, dep)
            return translated(known.chat.build_request, dep, body, api_key, stream=False).content
        if kind == "embeddings" and line.embeddings is not None and known.embeddings is not None:
            return translated(known.embeddings.build_embeddings_request, dep, line.embeddings, api_key).content
    except InvalidRequest as exc:
        raise InvalidRequest(f"Batch line {line.custom_id!r}: {exc.message}", code=native_batch.LINE_UNFIT) from exc
    raise InvalidRequest(
        f"Batch line {line.custom_id!r} is not a {kind} request that {dep.provider}'s batch API runs.",
        code=native_batch.LINE_UNFIT,
    )
