"""The shared response cache in NATS: a KV-shaped JetStream stream (one entry
per key, read with a direct get from any replica) whose entries each expire
on their own (``Nats-TTL``), so every ingress, cache and provider replica
sees the same answers and none keeps its own."""

from __future__ import annotations

import logging

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.cache import CachedAnswer, decode_answer

log = logging.getLogger("sluice.cache")
STREAM = f"KV_{subjects.KV_CACHE}"
# No entry outlives this, whatever TTL it asked for; and the cache takes no
# more disk than this (the oldest entries go first).
MAX_AGE_S = 24 * 3600
MAX_BYTES = 1024**3
_encode = msgspec.msgpack.Encoder().encode


def _subject(key: str) -> str:
    return f"$KV.{subjects.KV_CACHE}.{key}"


async def ensure_stream(nc: Client) -> None:
    js = nc.jetstream()
    config = StreamConfig(
        name=STREAM,
        subjects=[_subject(">")],
        max_msgs_per_subject=1,
        allow_direct=True,
        allow_msg_ttl=True,
        max_age=MAX_AGE_S,
        max_bytes=MAX_BYTES,
        storage=StorageType.FILE,
    )
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)


class ResponseCache:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def get(self, key: str, now_ms: int, max_age_s: int) -> CachedAnswer | None:
        """The answer kept under ``key`` if it is younger than ``max_age_s``."""
        try:
            msg = await self.js.get_last_msg(STREAM, _subject(key), direct=True)
        except NotFoundError:
            return None
        try:
            answer = decode_answer(msg.data)
        except msgspec.DecodeError:
            log.warning("cache entry %s does not decode; treated as a miss", key)
            return None
        if now_ms >= answer.expires_at_ms or now_ms - answer.stored_at_ms > max_age_s * 1000:
            return None
        return answer

    async def put(self, key: str, ttl_s: int, answer: CachedAnswer) -> None:
        await self.js.publish(_subject(key), _encode(answer), headers={"Nats-TTL": f"{ttl_s}s"})
