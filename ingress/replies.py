"""One wildcard subscription per ingress process; replies are handed to the
waiting request by id (DESIGN.md §2), never a subscription per request."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas.ids import new_id


class Disconnected:
    """Put into a request's queue by the disconnect watcher."""


DISCONNECTED = Disconnected()
Slot = asyncio.Queue[bytes | Disconnected]


class ReplyRouter:
    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self.prefix = f"_INBOX.ingress.{new_id()}."
        self._waiting: dict[str, Slot] = {}

    async def start(self) -> None:
        await self._nc.subscribe(self.prefix + "*", cb=self._on_reply, pending_msgs_limit=1_000_000)

    async def _on_reply(self, msg: Msg) -> None:
        queue = self._waiting.get(msg.subject[len(self.prefix) :])
        if queue is not None:  # else the request already ended (timeout, disconnect)
            queue.put_nowait(msg.data)

    def open(self, request_id: str) -> tuple[str, Slot]:
        queue: Slot = asyncio.Queue()
        self._waiting[request_id] = queue
        return self.prefix + request_id, queue

    def close(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)
