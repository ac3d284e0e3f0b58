"""Answers larger than one NATS message travel as several.

nats-server refuses a message over its ``max_payload`` (1 MB by default, 8 MB
in the embedded gateway), and a 700 x 1536 embeddings answer is ~20 MB. A
non-streamed ``Final`` over the limit is sent as chunks that carry pieces of
its content or slices of its vectors, then the ``Final`` with the rest; the
receiver joins them. Streamed answers are already chunks.
"""

from __future__ import annotations

import msgspec

from schemas import bus
from schemas.chat import Delta
from schemas.replies import Chunk, Failure, Final

# Under the 1 MB default of nats-server, so a gateway on any NATS can answer.
MAX_REPLY_BYTES = 900 * 1024


def encode_final(reply: Final | Failure, limit: int = MAX_REPLY_BYTES) -> list[bytes]:
    """The reply as one message, or as chunks then a final, each under ``limit``."""
    payload = bus.encode(reply)
    if len(payload) <= limit or not isinstance(reply, Final):
        return [payload]
    pieces: list[Chunk] = []
    rest = msgspec.structs.replace(reply)
    if reply.embeddings:
        vector_bytes = max(1, len(bus.encode(reply.embeddings[0])))
        per_chunk = max(1, limit // (2 * vector_bytes))
        vectors = reply.embeddings
        pieces += [
            Chunk(id=reply.id, seq=0, delta=Delta(), embeddings=vectors[i : i + per_chunk])
            for i in range(0, len(vectors), per_chunk)
        ]
        rest.embeddings = []
    per_chunk = limit // 8  # characters: at most 4 bytes each in UTF-8, and room to spare
    if reply.message is not None and isinstance(reply.message.content, str):
        text = reply.message.content
        pieces += [
            Chunk(id=reply.id, seq=0, delta=Delta(content=text[i : i + per_chunk]))
            for i in range(0, len(text), per_chunk)
        ]
        rest.message = msgspec.structs.replace(reply.message, content="")
    rest.other_choices = []
    for choice in reply.other_choices:  # n > 1: each choice's text in chunks of its own index
        text = choice.message.content if isinstance(choice.message.content, str) else ""
        pieces += [
            Chunk(id=reply.id, seq=0, delta=Delta(index=choice.index, content=text[i : i + per_chunk]))
            for i in range(0, len(text), per_chunk)
        ]
        emptied = msgspec.structs.replace(choice.message, content="") if text else choice.message
        rest.other_choices.append(msgspec.structs.replace(choice, message=emptied))
    for offset, chunk in enumerate(pieces):
        chunk.seq = reply.seq + offset
    rest.seq = reply.seq + len(pieces)
    return [*(bus.encode(c) for c in pieces), bus.encode(rest)]


class Assembler:
    """Joins the pieces of a non-streamed answer sent by ``encode_final``."""

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._vectors: list[list[float]] = []

    def add(self, chunk: Chunk) -> None:
        if chunk.embeddings:
            self._vectors += chunk.embeddings
        for delta in (chunk.delta, *chunk.more):
            if delta.content:
                self._text.setdefault(delta.index, []).append(delta.content)

    def complete(self, final: Final) -> Final:
        if self._vectors:
            final.embeddings = self._vectors + (final.embeddings or [])
        messages = {0: final.message} | {c.index: c.message for c in final.other_choices}
        for index, parts in self._text.items():
            message = messages.get(index)
            if message is not None:
                tail = message.content if isinstance(message.content, str) else ""
                message.content = "".join(parts) + tail
        return final
