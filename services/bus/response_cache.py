"""The shared response cache in NATS: a KV-shaped JetStream stream (one entry
per key, read with a direct get from any replica) whose entries each expire
on their own (``Nats-TTL``), so every replica sees the same answers. What a
replica keeps itself (which keys exist, the answers it fetched last) only
saves round trips: an entry, once written, is the answer until it expires."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.cached_answer import CachedAnswer, decode_answer
from services.bus import process

log = logging.getLogger("sluice.cache")
STREAM = f"KV_{subjects.KV_CACHE}"
# No entry outlives this, whatever TTL it asked for; and the cache takes no
# more disk than this (the oldest entries go first).
MAX_AGE_S = 24 * 3600
MAX_BYTES = 1024**3
# Keys a replica follows to answer misses without asking (about 200 bytes each).
INDEX_MAX_KEYS = 500_000
# Answers a replica keeps after fetching them, for the next hit.
RECENT_MAX_BYTES = 32 * 1024**2
_encode = msgspec.msgpack.Encoder().encode


def _subject(key: str) -> str:
    return f"$KV.{subjects.KV_CACHE}.{key}"


async def ensure_stream(nc: Client, replicas: int = 1) -> None:
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
        num_replicas=replicas,
    )
    try:
        await js.stream_info(STREAM)
    except NotFoundError:
        await js.add_stream(config)


class ResponseCache:
    """Lookups cost a round trip to the server only when one can pay off:
    an index of which keys the stream holds (and until when), followed from
    the stream's headers alone, answers most misses here; and the answers
    this replica fetched last are kept, bounded, for the next hit."""

    def __init__(self, js: JetStreamContext, index_max_keys: int = INDEX_MAX_KEYS) -> None:
        self.js = js
        # key -> when its entry expires (ms); while ``indexed`` is False (too
        # many keys to follow) every lookup asks the server.
        self.expires: dict[str, int] = {}
        self.indexed = True
        self.index_max_keys = index_max_keys
        self.recent: OrderedDict[str, tuple[CachedAnswer, int]] = OrderedDict()
        self.recent_bytes = 0
        self._sub = None

    async def start(self) -> None:
        self._sub = await process.jetstream_ready(
            lambda: self.js.subscribe(
                _subject(">"),
                stream=STREAM,
                cb=self._seen,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                headers_only=True,
            ),
            "the response cache's index",
        )

    async def _seen(self, msg: Msg) -> None:
        key = msg.subject.rsplit(".", 1)[-1]
        ttl = _ttl_s((msg.headers or {}).get("Nats-TTL", ""))
        stamp = msg.metadata.timestamp  # when the server stored it
        stored_ms = int(stamp.timestamp() * 1000) if stamp else int(time.time() * 1000)
        self.expires[key] = stored_ms + min(ttl or MAX_AGE_S, MAX_AGE_S) * 1000
        if len(self.expires) > self.index_max_keys:
            now_ms = int(time.time() * 1000)
            self.expires = {k: t for k, t in self.expires.items() if t > now_ms}
            if len(self.expires) > self.index_max_keys:
                log.warning("the cache holds over %d live keys: lookups now ask the server", self.index_max_keys)
                self.indexed, self.expires = False, {}
                await self.stop()

    def absent(self, key: str, now_ms: int) -> bool:
        """Known not to be there (or expired): no need to ask."""
        return self.indexed and self.expires.get(key, 0) <= now_ms

    async def get(self, key: str, now_ms: int, max_age_s: int) -> CachedAnswer | None:
        """The answer kept under ``key`` if it is younger than ``max_age_s``."""
        if self.absent(key, now_ms):
            return None
        kept = self.recent.get(key)
        if kept is not None:
            answer = kept[0]
            self.recent.move_to_end(key)
        else:
            try:
                msg = await self.js.get_last_msg(STREAM, _subject(key), direct=True)
            except NotFoundError:
                return None
            try:
                answer = decode_answer(msg.data)
            except msgspec.DecodeError:
                log.warning("cache entry %s does not decode; treated as a miss", key)
                return None
            self._remember(key, answer, len(msg.data))
        if now_ms >= answer.expires_at_ms or now_ms - answer.stored_at_ms > max_age_s * 1000:
            return None
        return answer

    def _remember(self, key: str, answer: CachedAnswer, size: int) -> None:
        old = self.recent.pop(key, None)
        if old is not None:
            self.recent_bytes -= old[1]
        self.recent[key] = (answer, size)
        self.recent_bytes += size
        while self.recent_bytes > RECENT_MAX_BYTES and self.recent:
            _, (_, dropped) = self.recent.popitem(last=False)
            self.recent_bytes -= dropped

    async def put(self, key: str, ttl_s: int, answer: CachedAnswer) -> None:
        await self.js.publish(_subject(key), _encode(answer), headers={"Nats-TTL": f"{ttl_s}s"})

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()


def _ttl_s(value: str) -> int:
    """A ``Nats-TTL`` as written here ("300s"); 0 when it is anything else."""
    digits = value.removesuffix("s")
    return int(digits) if digits.isdigit() else 0
