"""A circuit breaker per deployment, without I/O.

Closed: calls go through; it opens after ``failures_to_open`` failures in a
row, or when the error rate over ``window_s`` passes ``error_rate`` (with at
least ``min_calls`` calls in the window). Open: no calls, until ``cooldown_s``
has passed. Half-open: at most ``probes`` calls at once; a success closes it,
a failure opens it again for another cool-down.

Every process that routes must see the same state: each routing replica
keeps one ``Breaker`` per deployment, fed by the outcome of every try of
every provider replica (``services.health``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[gateway.breaker]`` table of the config file."""

    failures_to_open: int = 5
    error_rate: float = 0.5
    window_s: float = 30.0
    min_calls: int = 10
    cooldown_s: float = 15.0
    probes: int = 2


@dataclass(slots=True)
class Breaker:
    config: BreakerConfig = field(default_factory=BreakerConfig)
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = 0.0
    half_open_at: float = 0.0
    failures_in_a_row: int = 0
    probes_out: int = 0
    # [second, calls, failures] per second of the window, oldest first, and
    # their sums: at a thousand calls a second, counting a 30 s window call
    # by call would cost more than the call's routing.
    buckets: deque[list[int]] = field(default_factory=deque)
    calls: int = 0
    failures: int = 0

    def available(self, now: float) -> bool:
        """Whether a call could go through now, without taking a probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now - self.opened_at >= self.config.cooldown_s
        return self.probes_out < self.config.probes or self._probes_lost(now)

    def allows(self, now: float) -> bool:
        """Whether a call may go to this deployment now (a half-open breaker
        counts the probe it lets through)."""
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.config.cooldown_s:
                return False
            self.state, self.probes_out, self.half_open_at = BreakerState.HALF_OPEN, 0, now
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_lost(now):
                self.probes_out, self.half_open_at = 0, now
            if self.probes_out >= self.config.probes:
                return False
            self.probes_out += 1
        return True

    def _probes_lost(self, now: float) -> bool:
        # A probe whose outcome never came (its replica died) must not keep
        # the breaker half-open for ever: after a cool-down, probe again.
        return now - self.half_open_at >= self.config.cooldown_s

    def record(self, ok: bool, now: float) -> BreakerState | None:
        """Take one call's outcome; the new state when it changed, else None."""
        before = self.state
        if self.state is BreakerState.HALF_OPEN:
            self.probes_out = max(0, self.probes_out - 1)
            if ok:
                self._reset(BreakerState.CLOSED)
            else:
                self._open(now)
            return self.state if self.state is not before else None
        if self.state is BreakerState.OPEN:
            return None  # a call that started before it opened
        self._count(ok, now)
        self.failures_in_a_row = 0 if ok else self.failures_in_a_row + 1
        if self.failures_in_a_row >= self.config.failures_to_open or self._rate_too_high():
            self._open(now)
        return self.state if self.state is not before else None

    def _count(self, ok: bool, now: float) -> None:
        second = int(now)
        if self.buckets and self.buckets[-1][0] == second:
            bucket = self.buckets[-1]
        else:
            bucket = [second, 0, 0]
            self.buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += not ok
        self.calls += 1
        self.failures += not ok
        oldest = now - self.config.window_s
        while self.buckets and self.buckets[0][0] + 1 <= oldest:
            _, calls, failures = self.buckets.popleft()
            self.calls -= calls
            self.failures -= failures

    def _rate_too_high(self) -> bool:
        if self.calls < self.config.min_calls:
            return False
        return self.failures / self.calls > self.config.error_rate

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self.probes_out = BreakerState.OPEN, now, 0

    def force(self, state: BreakerState, since: float) -> None:
        """Take a state another replica saw first (or that it had when this one started)."""
        if state is BreakerState.OPEN:
            self._open(since)
        elif state is BreakerState.HALF_OPEN:
            self.state, self.probes_out, self.half_open_at = state, 0, since
        else:
            self._reset(state)

    def _reset(self, state: BreakerState) -> None:
        self.state, self.failures_in_a_row, self.probes_out = state, 0, 0
        self.buckets.clear()
        self.calls = self.failures = 0
