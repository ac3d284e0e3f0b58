"""How a model group orders its deployments for one request, without I/O.

Each strategy turns the group's deployments (with what is known of them:
weight, priority, recent latency, price for this request, calls in flight,
whether their breaker lets calls through) into the order the provider stage
tries them in. Deployments whose breaker is open go last, not away: when all
are open, the least bad is still tried.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.control import Strategy

# EWMA weight of the newest latency sample.
LATENCY_ALPHA = 0.2


@dataclass(slots=True)
class Option:
    name: str
    weight: float = 1.0
    priority: int = 0
    # EWMA of recent latency (ms); None until the first sample
    latency_ms: float | None = None
    # This request's estimated cost on this deployment (pico-USD)
    cost: int = 0
    in_flight: int = 0
    healthy: bool = True
    # Its place in the caller's list, to map the order back without a lookup.
    index: int = 0


def ewma(previous: float | None, sample: float, alpha: float = LATENCY_ALPHA) -> float:
    return sample if previous is None else alpha * sample + (1 - alpha) * previous


def order(strategy: Strategy, options: Sequence[Option], rng: random.Random) -> list[str]:
    """Names in the order to try them: healthy ones by the strategy, then the rest the same way."""
    return [o.name for o in ranked(strategy, options, rng)]


def ranked(strategy: Strategy, options: Sequence[Option], rng: random.Random) -> list[Option]:
    healthy = [o for o in options if o.healthy]
    if len(healthy) == len(options):
        return _ranked(strategy, healthy, rng)
    broken = [o for o in options if not o.healthy]
    return _ranked(strategy, healthy, rng) + _ranked(strategy, broken, rng)


def _ranked(strategy: Strategy, options: list[Option], rng: random.Random) -> list[Option]:
    if strategy == "weighted":
        return _weighted_shuffle(options, rng)
    if strategy == "priority":
        return sorted(options, key=lambda o: o.priority)
    if strategy == "latency":
        # Unmeasured first: a deployment nobody has timed yet gets a chance to be.
        return sorted(options, key=lambda o: -1.0 if o.latency_ms is None else o.latency_ms)
    if strategy == "cost":
        return sorted(options, key=lambda o: o.cost)
    return sorted(options, key=lambda o: o.in_flight)


def _weighted_shuffle(options: list[Option], rng: random.Random) -> list[Option]:
    """An order drawn by weight: the first pick is weight-proportional, then
    the next among the rest, and so on (weight 0 goes last)."""
    left = list(options)
    weights = [max(0.0, o.weight) for o in left]
    total = sum(weights)
    out = []
    while left:
        if total <= 0:
            return out + left
        point = rng.random() * total
        pick = len(left) - 1  # float rounding at the very end
        for i, w in enumerate(weights):
            point -= w
            if point < 0:
                pick = i
                break
        total -= weights.pop(pick)
        out.append(left.pop(pick))
    return out


def sticky_arm(arms: Sequence[tuple[str, float]], sticky_key: str, salt: str = "") -> str:
    """An A/B arm by percentage, the same one for the same key every time
    (a hash of the key, not a random draw)."""
    total = sum(share for _, share in arms)
    if total <= 0:
        raise ValueError("an A/B split needs a positive share")
    digest = hashlib.sha256(f"{salt}:{sticky_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * total
    for name, share in arms:
        point -= share
        if point < 0:
            return name
    return arms[-1][0]
