"""Each upstream try's outcome, told to every routing replica
(``HEALTH_ATTEMPT``): a failed try at once, since a breaker opens on it;
successful ones gathered for at most ``GATHER_S`` and sent together
(``TryOutcomes``). One message per request was a publish in the provider
and a delivery and decode in every routing replica, on every request
(issue 29's profile); a breaker's half-open probe that succeeded is heard
at most ``GATHER_S`` later."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from schemas import bus, subjects
from schemas.health import TryOutcome, TryOutcomes

GATHER_S = 0.02
MOST = 256


class HealthOutbox:
    def __init__(self, nc: Client, gather_s: float = GATHER_S, most: int = MOST) -> None:
        self._nc, self._gather_s, self._most = nc, gather_s, most
        self._gathered: list[TryOutcome] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def tell(self, outcome: TryOutcome) -> None:
        self._gathered.append(outcome)
        if not outcome.ok or len(self._gathered) >= self._most:
            await self._send()  # those gathered before it go first: routing hears the tries in order
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._gather_s, self._send_soon)

    def _send_soon(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tries, self._gathered = self._gathered, []
        if tries:
            message = tries[0] if len(tries) == 1 else TryOutcomes(tries=tries)
            await self._nc.publish(subjects.HEALTH_ATTEMPT, bus.encode(message))

    async def close(self) -> None:
        await self._send()
        if self._sending:
            await asyncio.wait(self._sending, timeout=1.0)
