"""Waits bounded by a deadline that moves on with each wait, on one timer.

A live stream's reader waits once per chunk, tens of milliseconds apart,
each time for up to a minute; arming and cancelling a timer per wait was
measurable per chunk (an eighth of the ingress's CPU at 300 streams). Here
the timer is armed once; when it fires before the current wait's deadline
(the deadline moved on since), it is armed again for what is left.

Deadlines are kept by ``time.monotonic``, not the loop's clock: uvloop's is
the start of the loop's turn, in whole milliseconds, and lags further under
load, and a wait ending before its deadline by the caller's own clock made
the ingress send a request again (its redaction deadline not yet passed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class WaitTimer:
    __slots__ = ("_at", "_deadline", "_expired", "_handle", "_waiter")

    def __init__(self, expired: Callable[[], BaseException]) -> None:
        self._expired = expired  # the error a wait that ran out ends with
        self._deadline = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self, waiter: asyncio.Future[None], seconds: float) -> None:
        """Await ``waiter``; it fails with ``expired()`` if it is not done
        within ``seconds`` (never sooner)."""
        self._deadline = deadline = time.monotonic() + seconds
        if self._handle is None or self._at > deadline:
            self._arm(deadline)
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        # A millisecond late: uvloop keeps its timers in whole milliseconds.
        self._handle = asyncio.get_running_loop().call_later(when - time.monotonic() + 0.001, self._ring)

    def _ring(self) -> None:
        self._handle = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # no one waiting: the next wait arms its own
        if time.monotonic() >= self._deadline:
            waiter.set_exception(self._expired())
        else:  # armed for an earlier wait, or woken early: this one has time left
            self._arm(self._deadline)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
