"""The login limiter on the shared counters: failed sign-ins per account
and client together, per client and per account, counted across every
ingress replica (``services.people.login_limits`` has the arithmetic and why).

Why the rate counters and not a KV record per address: a counter's add is
one publish whose answer is the exact total, with no read-modify-write to
retry under contention, and its subjects age out with the stream
(``RATES_MAX_AGE_S``), so an attack leaves nothing behind to clean up.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from schemas import subjects
from schemas.errors import QuotaUnavailable, RateLimitExceeded
from services.bus.quota_ledger import Counters
from services.people import login_limits
from services.people.login_limits import Counter
from services.people.settings import PortalConfig


class LoginLocked(RateLimitExceeded):
    code = "login_locked"


@dataclass(slots=True)
class Attempt:
    """A sign-in attempt's reserved failure on each counter, and the
    failures each had with it."""

    counters: tuple[Counter, ...]
    counts: tuple[list[int], ...]

    def locks_now(self) -> bool:
        """Whether this attempt's failure is the one that reached a limit."""
        return any(sum(n) == c.limit for c, n in zip(self.counters, self.counts, strict=True))


class LoginGuard:
    def __init__(self, counters: Counters, js: JetStreamContext, config: PortalConfig) -> None:
        self.counters = counters
        self.js = js
        self.config = config

    async def _count(self, counter: Counter) -> list[int]:
        """The failures in each bucket, the current one's with this attempt's."""
        current = await self.counters.add(counter.current, 1)
        earlier = await asyncio.gather(*(self._value(s) for s in counter.earlier))
        return [*earlier, int(current or 0)]

    async def _value(self, subject: str) -> int:
        try:
            msg = await self.js.get_last_msg(subjects.RATES_STREAM, subject, direct=True)
        except NotFoundError:
            return 0
        return int(msgspec.json.decode(msg.data)["val"])

    async def attempt(self, email: str, address: str) -> Attempt:
        """Reserve a failure for an attempt at ``email`` from ``address``;
        refused (429, with Retry-After) while the two together, the client or
        the account has had its fill."""
        now = int(time.time() * 1000)
        cfg = self.config
        counters = login_limits.counters(
            email,
            address,
            cfg.login_failures,
            cfg.login_failures_per_address,
            cfg.login_failures_per_account,
            cfg.login_window_s,
            now,
        )
        try:
            counts = await asyncio.gather(*(self._count(c) for c in counters))
        except (TimeoutError, nats.errors.Error, APIError):
            # Unable to count is unable to limit: no sign-in rather than an unlimited one.
            raise QuotaUnavailable("Signing in is unavailable for a moment; try again.", retry_after_s=5) from None
        attempt = Attempt(counters, tuple(counts))
        locked = [(c, n) for c, n in zip(counters, counts, strict=True) if login_limits.over(n, c.limit)]
        if locked:
            self.give_back(attempt)
            wait = max(
                login_limits.retry_after_s([*n[:-1], n[-1] - 1], c.limit, cfg.login_window_s, now) for c, n in locked
            )
            raise LoginLocked(f"Too many failed sign-ins; try again in {wait} seconds.", retry_after_s=wait)
        return attempt

    def give_back(self, attempt: Attempt) -> None:
        """The attempt succeeded (or was refused): its failure is not one."""
        for counter in attempt.counters:
            self.counters.add_soon(counter.current, -1)
