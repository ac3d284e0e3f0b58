"""Flow control of a REST answer's body between the provider that reads it
from the service and the requester that writes it on to its client.

Core NATS has no backpressure: a provider that sends as fast as the
service answers makes whoever reads slower hold the difference (a 50 MB
download to a client at full speed grew the ingress by 40 MB). So the
requester that asks for it (``Envelope.flow_window``) is sent at most a
window ahead of what it has taken, like TCP's receive window:

* the provider (``SendWindow``) counts the body's bytes it sent and waits,
  before it reads the next slice from the service, while that is a window
  past the latest credit; the service's connection then fills and TCP
  pauses the service too. A window that stays shut longer than the
  service's read timeout ends the call (the client stopped reading);
* the requester (``Grants``) counts what it wrote on and grants a credit
  (``schemas.replies.Credit``: the bytes taken so far) each ``step`` of it.

A credit is cumulative, so one lost on the bus costs nothing once the next
arrives, and the requester sends its latest again while it waits in silence
(``ingress.session``). The step is a quarter of the window: the provider
has three quarters left to send while a credit is on its way.
"""

from __future__ import annotations

import asyncio

# What the gateway's ingress asks for: ~16 slices of 64 KB. Enough to keep
# a download at full speed while a credit crosses the bus (well under a
# millisecond on one host), and within what the provider's reply log keeps
# for a replay (``services.reply_log.MAX_BYTES``), so a reply lost inside
# the window can always be sent again.
WINDOW = 1024 * 1024
# A window smaller than one read of the service would mean a credit per
# slice: a requester asking less gets this much.
MIN_WINDOW = 64 * 1024


class SendWindow:
    """The provider's side: the body's bytes sent, and how far it may go."""

    __slots__ = ("_moved", "granted", "sent", "size")

    def __init__(self, size: int) -> None:
        self.size = max(size, MIN_WINDOW)
        self.sent = 0
        # What the requester says it has taken (``Credit.through``).
        self.granted = 0
        self._moved = asyncio.Event()

    @property
    def open(self) -> bool:
        return self.sent < self.granted + self.size

    def spent(self, n: int) -> None:
        self.sent += n

    def grant(self, through: int) -> None:
        """A credit heard: older or repeated ones change nothing, and none
        counts bytes that were never sent (a requester cannot widen its
        window by claiming more)."""
        through = min(through, self.sent)
        if through > self.granted:
            self.granted = through
            self._moved.set()

    async def room(self, timeout_s: float) -> bool:
        """Wait until the window is open; False if it stayed shut ``timeout_s``.
        Open already (a client that keeps up): no wait, no timer."""
        if self.open:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                while not self.open:
                    self._moved.clear()
                    await self._moved.wait()
        except TimeoutError:
            return False
        return True


class Grants:
    """The requester's side: the body's bytes it wrote on, and the credit it
    granted last."""

    __slots__ = ("granted", "step", "window", "written")

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.step = max(1, window // 4)
        self.written = 0
        self.granted = 0

    def wrote(self, n: int) -> int | None:
        """``n`` more bytes written on; the credit to grant now, if one is due."""
        self.written += n
        if self.written - self.granted < self.step:
            return None
        self.granted = self.written
        return self.granted
