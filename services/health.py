"""What a routing replica knows of each deployment, fed by every try's outcome.

Every routing replica hears the outcome of every try of every provider
replica, so each one's board holds the same breakers, latency averages,
load and minute usage, without asking anyone on the hot path. Time is wall
time in seconds, so a breaker state written by one replica (``since``) means
the same to another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.envelope import Deployment
from schemas.health import BreakerRecord, TryOutcome
from services.breaker import Breaker, BreakerConfig, BreakerState
from services.strategies import Option, ewma


@dataclass(slots=True)
class DeploymentHealth:
    breaker: Breaker
    # EWMA of time to first byte, in ms, and when its last sample came;
    # None before the first success.
    latency_ms: float | None = None
    latency_at: float = 0.0
    # Calls in flight, as each provider replica last reported them.
    in_flight: dict[str, int] = field(default_factory=dict)
    # Usage in the current wall-clock minute, for a deployment's own RPM/TPM.
    minute: int = 0
    requests: int = 0
    tokens: int = 0

    def count(self, now: float, tokens: int) -> None:
        minute = int(now // 60)
        if minute != self.minute:
            self.minute, self.requests, self.tokens = minute, 0, 0
        self.requests += 1
        self.tokens += tokens

    def over_limit(self, dep: Deployment, now: float) -> bool:
        if int(now // 60) != self.minute:
            return False
        return (dep.rpm is not None and self.requests >= dep.rpm) or (dep.tpm is not None and self.tokens >= dep.tpm)


class HealthBoard:
    """``latency_window_s``: a latency average with no sample this recent is
    forgotten, so a deployment that was slow once (and then got no traffic
    from the latency strategy) is measured again instead of shunned for ever."""

    def __init__(self, config: BreakerConfig | None = None, latency_window_s: float = 60.0) -> None:
        self.config = config or BreakerConfig()
        self.latency_window_s = latency_window_s
        self.deployments: dict[str, DeploymentHealth] = {}

    def of(self, name: str) -> DeploymentHealth:
        health = self.deployments.get(name)
        if health is None:
            health = self.deployments[name] = DeploymentHealth(Breaker(self.config))
        return health

    def record(self, outcome: TryOutcome, now: float) -> BreakerState | None:
        """One try's outcome; the breaker's new state if it changed."""
        health = self.of(outcome.deployment)
        if outcome.replica:
            health.in_flight[outcome.replica] = max(0, outcome.in_flight)
        health.count(now, max(0, outcome.tokens))
        if outcome.ok and outcome.ttfb_ns > 0:
            previous = health.latency_ms if now - health.latency_at <= self.latency_window_s else None
            health.latency_ms, health.latency_at = ewma(previous, outcome.ttfb_ns / 1e6), now
        return health.breaker.record(outcome.ok, now)

    def take_over(self, record: BreakerRecord) -> None:
        """A state change another replica wrote, unless this one already has it."""
        breaker = self.of(record.deployment).breaker
        state = BreakerState(record.state)
        if breaker.state is not state:
            breaker.force(state, record.since_ms / 1000)

    def options(
        self, deployments: Sequence[Deployment], now: float, strategy: str = "", costs: Sequence[int] = ()
    ) -> list[Option]:
        """The strategies' view of ``deployments``: a deployment is unhealthy
        while its breaker holds calls back or its own minute limit is used up.
        Only what ``strategy`` weighs is filled in (this runs per request)."""
        out = []
        for i, dep in enumerate(deployments):
            health = self.deployments.get(dep.name) or self.of(dep.name)
            breaker = health.breaker
            healthy = breaker.state is BreakerState.CLOSED or breaker.available(now)
            if healthy and (dep.rpm is not None or dep.tpm is not None):
                healthy = not health.over_limit(dep, now)
            option = Option(dep.name, dep.weight, dep.priority, healthy=healthy, index=i)
            if strategy == "latency" and now - health.latency_at <= self.latency_window_s:
                option.latency_ms = health.latency_ms
            elif strategy == "least_busy":
                option.in_flight = sum(health.in_flight.values())
            elif costs:
                option.cost = costs[i]
            out.append(option)
        return out

    def chose(self, name: str, now: float) -> None:
        """The deployment a request goes to first: a half-open breaker counts its probe."""
        self.of(name).breaker.allows(now)
