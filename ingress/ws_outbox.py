"""What one WebSocket connection has yet to send, bounded in bytes.

Every request on the connection puts its messages here without waiting, so
its bus replies are taken as they come; one writer sends them in order at
the pace the client reads. When more than ``limit`` bytes wait (a slow
reader), the oldest request in flight is ended with a clear error and its
waiting messages are dropped, rather than the gateway buffering without
bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

SendText = Callable[[bytes], Awaitable[None]]


class Outbox:
    def __init__(self, send: SendText, limit: int, on_overflow: Callable[[], tuple[str, bytes] | None]) -> None:
        self._send = send
        self.limit = limit
        # Called when the bytes waiting pass the limit: ends the oldest
        # request and gives its id and closing message (the error), or None
        # when no request is left to end.
        self._on_overflow = on_overflow
        self._items: deque[tuple[str, bytes]] = deque()
        self.waiting_bytes = 0
        self._ready = asyncio.Event()
        self._dropped: set[str] = set()
        self.closed = False

    def put(self, request_id: str, data: bytes) -> None:
        if self.closed or request_id in self._dropped:
            return
        self._items.append((request_id, data))
        self.waiting_bytes += len(data)
        self._ready.set()
        while self.waiting_bytes > self.limit:
            ended = self._on_overflow()
            if ended is None:
                return
            self.end(*ended)

    def end(self, request_id: str, closing: bytes) -> None:
        """End a request's messages: what waits for it is dropped, and
        anything it puts later, and ``closing`` is the last one sent."""
        self._dropped.add(request_id)
        kept = deque(item for item in self._items if item[0] != request_id)
        kept.append((request_id, closing))
        self.waiting_bytes = sum(len(data) for _, data in kept)
        self._items = kept
        self._ready.set()

    def forget(self, request_id: str) -> None:
        """A new request may reuse the id of one that ended."""
        self._dropped.discard(request_id)

    async def run(self) -> None:
        """Send until closed; the transport's own backpressure sets the pace."""
        while True:
            await self._ready.wait()
            while self._items:
                _, data = self._items.popleft()
                self.waiting_bytes -= len(data)
                await self._send(data)
            if self.closed:
                return
            self._ready.clear()

    def close(self) -> None:
        self.closed = True
        self._ready.set()
