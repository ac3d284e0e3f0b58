"""NATS KV buckets: each made where it is missing (``ensure_kv``), and an
in-memory copy of one kept current by a watch (``KvMirror``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE

from schemas.control import ApiKey, decode_key
from schemas.subjects import KV_KEYS
from services.bus import process

T = TypeVar("T")
log = logging.getLogger("sluice.kv")

# NATS KV keys allow only these characters (and no leading or trailing dot);
# model names like "llama3.1:8b" need more, so anything else is written as
# "=XX" per UTF-8 byte, "=" itself included, which makes the mapping reversible.
_KEY_SAFE = frozenset("-/_.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


async def ensure_kv(js: JetStreamContext, *configs: KeyValueConfig) -> None:
    """Each bucket made as configured, unless it is there already (a bucket
    in use keeps its settings: a restart never wipes or resizes it)."""
    for config in configs:
        try:
            await js.key_value(config.bucket)
        except BucketNotFoundError:
            await js.create_key_value(config)


def kv_key(name: str) -> str:
    out = []
    last = len(name) - 1
    for i, ch in enumerate(name):
        if ch in _KEY_SAFE and not (ch == "." and i in (0, last)):
            out.append(ch)
        else:
            out += [f"={b:02X}" for b in ch.encode()]
    return "".join(out)


def kv_name(key: str) -> str:
    if "=" not in key:
        return key
    raw, i = bytearray(), 0
    while i < len(key):
        if key[i] == "=":
            raw.append(int(key[i + 1 : i + 3], 16))
            i += 3
        else:
            raw += key[i].encode()
            i += 1
    return raw.decode()


class KvMirror(Generic[T]):
    """``mirror.items`` is a plain dict, read on the hot path without I/O."""

    def __init__(
        self,
        bucket: str,
        decode: Callable[[bytes], T],
        on_change: Callable[[str, T | None, T | None], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.items: dict[str, T] = {}
        self._decode = decode
        # (name, old, new) after each change: for indexes kept beside ``items``.
        self._on_change = on_change
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # The bucket's last revision when the watch began: caught up once it is seen.
        self._caught_up_at = 0
        self._seen = 0

    async def start(self, js: JetStreamContext, timeout: float = 10.0) -> None:
        kv = await process.jetstream_ready(lambda: js.key_value(self.bucket), f"bucket {self.bucket}")
        # nats-py's "no more initial values" marker can come before them: it
        # is sent when the consumer reports none pending, which it does once
        # the server has sent them, maybe before this process has read them
        # (seen under load: a stage started with an empty mirror). So the
        # mirror is ready only once it has seen the bucket's last revision as
        # of now (each key's last entry comes, the bucket's last among them).
        status = await process.jetstream_ready(kv.status, f"bucket {self.bucket}'s status")
        state = status.stream_info.state
        self._caught_up_at = state.last_seq if state.messages else 0  # all expired: nothing to wait for
        watcher = await process.jetstream_ready(kv.watchall, f"bucket {self.bucket}'s watcher")
        self._task = asyncio.create_task(self._follow(watcher), name=f"kv-{self.bucket}")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _follow(self, watcher) -> None:
        async for entry in watcher:
            if entry is None:  # nats-py's end of the initial values: trusted only once caught up
                if self._seen >= self._caught_up_at:
                    self._ready.set()
                continue
            self._seen = max(self._seen, entry.revision)
            name = kv_name(entry.key)
            old = self.items.get(name)
            if entry.operation in (KV_DEL, KV_PURGE):
                self.items.pop(name, None)
            else:
                try:
                    self.items[name] = self._decode(entry.value)
                except Exception:
                    log.exception("bucket %s: cannot decode key %s; keeping the old value", self.bucket, entry.key)
            if self._on_change is not None:
                self._on_change(name, old, self.items.get(name))
            if entry.delta == 0 and self._seen >= self._caught_up_at:
                self._ready.set()

    def apply(self, name: str, record: T | None) -> None:
        """Take a change this process just wrote, before its watch reports it,
        so a read right after a write sees it (the watch then confirms it)."""
        old = self.items.get(name)
        if record is None:
            self.items.pop(name, None)
        else:
            self.items[name] = record
        if self._on_change is not None:
            self._on_change(name, old, record)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()


async def read_bucket(nc: Client, bucket: str, decode: Any) -> dict[str, Any]:
    """Every current record of a bucket, read from the stream's last message per subject."""
    js = nc.jetstream()
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
    out = {}
    for subject in info.state.subjects or {}:
        try:
            msg = await js.get_last_msg(f"KV_{bucket}", subject)
        except NotFoundError:
            continue
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            continue
        out[kv_name(subject.removeprefix(f"$KV.{bucket}."))] = decode(msg.data)
    return out


class KeyIndex:
    """The API keys bucket (records by public id), indexed by secret digest
    for the hot path's one lookup per request."""

    def __init__(self) -> None:
        self.by_hash: dict[str, ApiKey] = {}
        self.mirror: KvMirror[ApiKey] = KvMirror(KV_KEYS, decode_key, self._changed)

    def _changed(self, _name: str, old: ApiKey | None, new: ApiKey | None) -> None:
        if old is not None:
            for secret in old.secrets:
                if self.by_hash.get(secret.sha256) is old:
                    del self.by_hash[secret.sha256]
        if new is not None:
            for secret in new.secrets:
                self.by_hash[secret.sha256] = new

    async def start(self, js: JetStreamContext) -> None:
        await self.mirror.start(js)

    async def stop(self) -> None:
        await self.mirror.stop()
