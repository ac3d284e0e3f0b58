"""When each key was last used, written to KV a few times a minute: the admin
API shows it, and a write per request would cost the hot path a round trip."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import subjects
from services.bus.kv import kv_key

log = logging.getLogger("sluice.key_usage")
FLUSH_S = 2.0


class LastUsed:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def saw(self, key_id: str, now_ms: int) -> None:
        self._seen[key_id] = now_ms

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="key-usage")

    async def _run(self) -> None:
        kv = await self.js.key_value(subjects.KV_KEY_USAGE)
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush(kv)

    async def flush(self, kv) -> None:
        seen, self._seen = self._seen, {}
        for key_id, at_ms in seen.items():
            try:
                await kv.put(kv_key(key_id), str(at_ms).encode())
            except (TimeoutError, nats.errors.Error, APIError) as exc:
                log.warning("last use of key %s not written: %r", key_id, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._seen:
            with contextlib.suppress(TimeoutError, nats.errors.Error, APIError):
                await self.flush(await self.js.key_value(subjects.KV_KEY_USAGE))
