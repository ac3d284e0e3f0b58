"""What the shared response cache keeps, and the message that asks it to."""

from __future__ import annotations

import msgspec

from schemas.base import BusMessage
from schemas.chat import Message, Usage


class CachedAnswer(msgspec.Struct, omit_defaults=True):
    """A whole answer as the upstream gave it (a stream joined into one
    message), with what it cost then: a hit saves that much."""

    model: str
    usage: Usage
    cost_pico_usd: int
    stored_at_ms: int
    # The reader checks this too: an entry is never served past it, whatever
    # the store did with its TTL.
    expires_at_ms: int
    message: Message | None = None
    embeddings: list[list[float]] | None = None
    finish_reason: str | None = None
    deployment: str = ""
    provider: str = ""


class CacheStore(BusMessage, tag="cache.store"):
    key: str
    ttl_s: int
    answer: CachedAnswer


decode_answer = msgspec.msgpack.Decoder(CachedAnswer).decode
decode_store = msgspec.msgpack.Decoder(CacheStore).decode
