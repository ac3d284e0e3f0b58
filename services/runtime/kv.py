"""An in-memory copy of a NATS KV bucket, kept current by a watch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE

T = TypeVar("T")
log = logging.getLogger("sluice.kv")


class KvMirror(Generic[T]):
    """``mirror.items`` is a plain dict, read on the hot path without I/O."""

    def __init__(self, bucket: str, decode: Callable[[bytes], T]) -> None:
        self.bucket = bucket
        self.items: dict[str, T] = {}
        self._decode = decode
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, js: JetStreamContext, timeout: float = 10.0) -> None:
        kv = await js.key_value(self.bucket)
        watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(watcher), name=f"kv-{self.bucket}")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def _follow(self, watcher) -> None:
        async for entry in watcher:
            if entry is None:  # end of the initial values
                self._ready.set()
                continue
            if entry.operation in (KV_DEL, KV_PURGE):
                self.items.pop(entry.key, None)
            else:
                try:
                    self.items[entry.key] = self._decode(entry.value)
                except Exception:
                    log.exception("bucket %s: cannot decode key %s; keeping the old value", self.bucket, entry.key)
            if entry.delta == 0:
                self._ready.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
