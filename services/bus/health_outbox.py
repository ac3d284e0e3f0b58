"""Each upstream try's outcome, told to every routing replica
(``HEALTH_ATTEMPT``): a failed try at once, since a breaker opens on it;
successful ones gathered for at most ``GATHER_S`` and sent together
(``TryOutcomes``). One message per request was a publish in the provider
and a delivery and decode in every routing replica, on every request
(issue 29's profile).

A try that is its deployment's first in ``QUIET_S`` also goes at once:
while a breaker is open no call reaches its deployment, so the probe that
closes it is such a try, and the requests right after it must find the
breaker closed."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client

from schemas import bus, subjects
from schemas.health import TryOutcome, TryOutcomes

GATHER_S = 0.02
QUIET_S = 1.0
MOST = 256


class HealthOutbox:
    def __init__(self, nc: Client, gather_s: float = GATHER_S, most: int = MOST, quiet_s: float = QUIET_S) -> None:
        self._nc, self._gather_s, self._most, self._quiet_s = nc, gather_s, most, quiet_s
        self._gathered: list[TryOutcome] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        # deployment -> when its last try was told (as many as deployments a process calls)
        self._told_at: dict[str, float] = {}

    async def tell(self, outcome: TryOutcome) -> None:
        self._gathered.append(outcome)
        now = time.monotonic()
        last = self._told_at.get(outcome.deployment)
        self._told_at[outcome.deployment] = now
        quiet = last is None or now - last >= self._quiet_s
        if not outcome.ok or quiet or len(self._gathered) >= self._most:
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
