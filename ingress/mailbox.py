"""Where a request's replies wait for the task relaying them: what
``asyncio.Queue`` plus ``asyncio.timeout`` did, for one reader, with one
timer per wait-deadline rather than one per reply.

A live stream's chunks come one at a time, tens of milliseconds apart, and
each wait used to arm and cancel its own timer (and a Queue's getter
future): at 300 open streams that was an eighth of the ingress's CPU per
chunk. Here the timer is armed once and, when it fires while the reader
still has time left (its deadline moved on with each reply), armed again
for what is left: one timer a minute for a stream, not one a chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

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
        """The next item; TimeoutError if none comes within ``timeout_s``,
        never sooner by the true clock (uvloop's clock is the start of the
        loop's turn, in whole milliseconds: under load it lags by more)."""
        if self._items:
            return self._items.popleft()
        loop = asyncio.get_running_loop()
        self._deadline = deadline = time.monotonic() + timeout_s
        if self._timer is None or self._timer_at > deadline:
            self._arm(loop, deadline)
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        return self._items.popleft()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """A timer for ``when`` (``time.monotonic``), a millisecond late for
        uvloop's whole-millisecond timers."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_later(when - time.monotonic() + 0.001, self._ring)

    def _ring(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no one waiting: the next wait arms its own
        if time.monotonic() >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:  # armed for an earlier wait, or woken early: this one has time left
            self._arm(asyncio.get_running_loop(), self._deadline)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
