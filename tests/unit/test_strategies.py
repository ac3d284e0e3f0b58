from __future__ import annotations

import random
from collections import Counter

from services.strategies import Option, ewma, order, sticky_arm


def test_weighted_80_20_lands_within_5_percent_over_1000_picks() -> None:
    rng = random.Random(7)
    options = [Option("a", weight=80), Option("b", weight=20)]
    firsts = Counter(order("weighted", options, rng)[0] for _ in range(1000))
    assert abs(firsts["a"] - 800) <= 50 and firsts["a"] + firsts["b"] == 1000
    assert sorted(order("weighted", options, rng)) == ["a", "b"]  # the rest still follow


def test_broken_deployments_go_last_but_are_still_tried() -> None:
    options = [Option("down", priority=0, healthy=False), Option("up", priority=5)]
    assert order("priority", options, random.Random(1)) == ["up", "down"]


def test_latency_prefers_the_fastest_and_tries_the_unmeasured_first() -> None:
    options = [Option("slow", latency_ms=900), Option("fast", latency_ms=120), Option("new")]
    assert order("latency", options, random.Random(1)) == ["new", "fast", "slow"]


def test_cost_and_least_busy() -> None:
    options = [Option("dear", cost=900, in_flight=0), Option("cheap", cost=100, in_flight=7)]
    assert order("cost", options, random.Random(1)) == ["cheap", "dear"]
    assert order("least_busy", options, random.Random(1)) == ["dear", "cheap"]


def test_ewma_moves_toward_new_samples() -> None:
    value = ewma(None, 100.0)
    assert value == 100.0
    for _ in range(20):
        value = ewma(value, 500.0)
    assert 490 < value < 500


def test_a_sticky_split_keeps_each_user_in_one_arm_and_splits_the_rest() -> None:
    arms = [("control", 50.0), ("canary", 50.0)]
    assert all(sticky_arm(arms, "user-42") == sticky_arm(arms, "user-42") for _ in range(10))
    counts = Counter(sticky_arm(arms, f"user-{i}") for i in range(2000))
    assert abs(counts["control"] - 1000) < 100
    assert sticky_arm([("only", 1.0)], "anyone") == "only"
