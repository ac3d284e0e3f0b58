"""Where a request's replies wait for the task relaying them: what
``asyncio.Queue`` plus ``asyncio.timeout`` did, for one reader, on one
timer for a stream's many waits (``services.wait_timer``) rather than one
per reply."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

from services.wait_timer import WaitTimer

T = TypeVar("T")


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._timer = WaitTimer(TimeoutError)

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> T:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    async def get(self, timeout_s: float) -> T:
        """The next item; TimeoutError if none comes within ``timeout_s``, never sooner."""
        if self._items:
            return self._items.popleft()
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await self._timer.wait(waiter, timeout_s)
        finally:
            self._waiter = None
        return self._items.popleft()

    def close(self) -> None:
        self._timer.cancel()
