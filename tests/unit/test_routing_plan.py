"""Routing plans from a group, the shared health board and the request."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas.chat import ChatBody, Message
from schemas.control import ModelRoute, Strategy
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest
from schemas.health import BreakerRecord, TryOutcome
from services import routing, tokens
from services.breaker import BreakerConfig, BreakerState
from services.health import HealthBoard

NOW = 1_800_000_000.0


def dep(name: str, **fields: object) -> Deployment:
    return Deployment(name=name, provider="openai", base_url="http://x/v1", upstream_model="gpt-4o-mini", **fields)  # type: ignore[arg-type]


def table(*groups: ModelRoute) -> routing.RouteTable:
    return routing.routes_by_name({g.name: g for g in groups})


def request(model: str = "g", user: str | None = None, key: str = "k1") -> routing.Request:
    body = ChatBody(model=model, messages=[Message(role="user", content="hello " * 50)], user=user)
    return routing.Request(model, "chat", key, body=body)


def firsts(group: ModelRoute, board: HealthBoard, n: int, **req: object) -> Counter[str]:
    rng, routes = random.Random(3), table(group)
    return Counter(routing.plan(routes, request(**req), board, NOW, rng).candidates[0].name for _ in range(n))  # type: ignore[arg-type]


def failures(board: HealthBoard, name: str, n: int, at: float = NOW) -> BreakerState | None:
    changed = None
    for _ in range(n):
        changed = board.record(TryOutcome(deployment=name, ok=False, at_ns=0), at) or changed
    return changed


def test_weighted_80_20_lands_within_5_percent_over_1000_requests() -> None:
    group = ModelRoute(name="g", deployments=[dep("a", weight=80), dep("b", weight=20)])
    counts = firsts(group, HealthBoard(), 1000)
    assert 750 <= counts["a"] <= 850 and counts["a"] + counts["b"] == 1000


def test_every_plan_holds_every_deployment_once() -> None:
    group = ModelRoute(name="g", deployments=[dep("a"), dep("b"), dep("c")])
    for _ in range(50):
        names = [d.name for d in routing.plan(table(group), request(), HealthBoard(), NOW, random.Random()).candidates]
        assert sorted(names) == ["a", "b", "c"]


def test_an_open_breaker_puts_its_deployment_last_until_the_cooldown_lets_a_probe_through() -> None:
    board = HealthBoard(BreakerConfig(failures_to_open=3, cooldown_s=10, probes=1))
    group = ModelRoute(name="g", strategy="priority", deployments=[dep("a", priority=0), dep("b", priority=1)])
    assert failures(board, "a", 3) is BreakerState.OPEN
    plan = routing.plan(table(group), request(), board, NOW + 1, random.Random())
    assert [d.name for d in plan.candidates] == ["b", "a"]
    probe = routing.plan(table(group), request(), board, NOW + 11, random.Random())
    assert probe.candidates[0].name == "a"  # half-open: one probe goes first
    after = routing.plan(table(group), request(), board, NOW + 11.5, random.Random())
    assert after.candidates[0].name == "b"  # the probe is out; the rest wait for its outcome
    assert board.record(TryOutcome(deployment="a", ok=True, at_ns=0), NOW + 12) is BreakerState.CLOSED
    assert routing.plan(table(group), request(), board, NOW + 13, random.Random()).candidates[0].name == "a"


def test_a_state_another_replica_wrote_is_taken_over() -> None:
    board = HealthBoard(BreakerConfig(cooldown_s=10))
    board.take_over(BreakerRecord("a", "open", int(NOW * 1000), by="route-2"))
    group = ModelRoute(name="g", strategy="priority", deployments=[dep("a"), dep("b", priority=1)])
    assert routing.plan(table(group), request(), board, NOW + 1, random.Random()).candidates[0].name == "b"


def test_the_latency_strategy_follows_the_faster_deployment() -> None:
    board = HealthBoard()
    group = ModelRoute(name="g", strategy="latency", deployments=[dep("a"), dep("b")])
    for name, ms in (("a", 50), ("b", 80)):
        board.record(TryOutcome(deployment=name, ok=True, at_ns=0, ttfb_ns=ms * 1_000_000), NOW)
    assert firsts(group, board, 10) == {"a": 10}
    for _ in range(10):  # "a" slows down
        board.record(TryOutcome(deployment="a", ok=True, at_ns=0, ttfb_ns=400 * 1_000_000), NOW)
    assert firsts(group, board, 10) == {"b": 10}


def test_the_cost_strategy_prices_this_request_per_deployment() -> None:
    group = ModelRoute(
        name="g",
        strategy="cost",
        deployments=[dep("dear", catalog_model="gpt-4o"), dep("cheap", catalog_model="gpt-4o-mini")],
    )
    assert firsts(group, HealthBoard(), 5) == {"cheap": 5}


@pytest.mark.parametrize(
    ("strategy", "catalog_models", "fallback", "expected"),
    [
        ("cost", ["gpt-4o", "gpt-4"], None, {"o200k_base"}),
        ("cost", ["gpt-4", "gpt-4o"], None, {"cl100k_base"}),
        ("weighted", ["gpt-4o", "gpt-4"], None, set()),
        ("cost", ["gpt-4"], None, set()),
        ("weighted", ["gpt-4"], "big", {"cl100k_base"}),
    ],
)
def test_the_encodings_built_ahead_are_those_the_plan_counts_with(
    monkeypatch: pytest.MonkeyPatch,
    strategy: Strategy,
    catalog_models: list[str],
    fallback: str | None,
    expected: set[str],
) -> None:
    """The routing stage builds ``counted_with``'s encodings off the event
    loop before it plans: the plan must count with no other."""
    deps = [dep(f"d{i}", catalog_model=m) for i, m in enumerate(catalog_models)]
    group = ModelRoute(name="g", strategy=strategy, deployments=deps, context_fallback=fallback)
    big = ModelRoute(name="big", strategy="cost", deployments=[dep("b0", catalog_model="gpt-4"), dep("b1")])
    routes, counted = table(group, big), []
    real = tokens.encoding
    monkeypatch.setattr(tokens, "encoding", lambda name: counted.append(name) or real(name))
    routing.plan(routes, request(), HealthBoard(), NOW, random.Random())
    assert set(counted) == routing.counted_with(routes, request()) == expected
    assert not routing.counted_with(routes, routing.Request("g", "chat", "k1", body=request().body, pin="d0"))


def test_least_busy_follows_the_in_flight_counts_of_every_provider_replica() -> None:
    board = HealthBoard()
    group = ModelRoute(name="g", strategy="least_busy", deployments=[dep("a"), dep("b")])
    board.record(TryOutcome(deployment="a", ok=True, at_ns=0, in_flight=3, replica="provider-1"), NOW)
    board.record(TryOutcome(deployment="b", ok=True, at_ns=0, in_flight=2, replica="provider-1"), NOW)
    board.record(TryOutcome(deployment="b", ok=True, at_ns=0, in_flight=2, replica="provider-2"), NOW)
    assert firsts(group, board, 5) == {"a": 5}  # 3 vs 2 + 2


def test_a_deployment_whose_own_rpm_is_used_up_goes_last_until_the_next_minute() -> None:
    board = HealthBoard()
    group = ModelRoute(name="g", strategy="priority", deployments=[dep("a", rpm=2), dep("b", priority=1)])
    start = 60.0 * 30_000_000
    for _ in range(2):
        board.record(TryOutcome(deployment="a", ok=True, at_ns=0), start)
    assert routing.plan(table(group), request(), board, start + 1, random.Random()).candidates[0].name == "b"
    assert routing.plan(table(group), request(), board, start + 60, random.Random()).candidates[0].name == "a"


@pytest.mark.parametrize("strategy", ["weighted", "priority", "latency", "cost", "least_busy"])
def test_a_sticky_split_keeps_each_user_in_one_arm(strategy: Strategy) -> None:
    group = ModelRoute(
        name="g", strategy=strategy, deployments=[dep("a"), dep("b")], split={"a": 50, "b": 50}, sticky="user"
    )
    routes, board = table(group), HealthBoard()
    arms = {}
    for user in (f"user-{i}" for i in range(200)):
        plans = {routing.plan(routes, request(user=user), board, NOW, random.Random()).arm for _ in range(3)}
        assert len(plans) == 1
        arms[user] = plans.pop()
    counts = Counter(arms.values())
    assert set(counts) == {"a", "b"} and 70 <= counts["a"] <= 130
    plan = routing.plan(routes, request(user="user-1"), board, NOW, random.Random())
    assert plan.candidates[0].name == plan.arm and len(plan.candidates) == 2  # the other stays as a fallback


def test_a_split_sticky_per_key_ignores_the_user_field() -> None:
    group = ModelRoute(name="g", deployments=[dep("a"), dep("b")], split={"a": 50, "b": 50}, sticky="key")
    routes = table(group)
    arms = {routing.plan(routes, request(user=f"u{i}"), HealthBoard(), NOW, random.Random()).arm for i in range(30)}
    assert len(arms) == 1


def test_a_pin_names_one_deployment_of_the_group() -> None:
    group = ModelRoute(name="g", deployments=[dep("a"), dep("b")])
    req = request()
    req.pin = "b"
    assert [d.name for d in routing.plan(table(group), req, HealthBoard(), NOW, random.Random()).candidates] == ["b"]
    req.pin = "elsewhere"
    with pytest.raises(InvalidRequest) as info:
        routing.plan(table(group), req, HealthBoard(), NOW, random.Random())
    assert info.value.code == "unknown_deployment"


def test_a_context_fallback_group_rides_along() -> None:
    small = ModelRoute(name="g", deployments=[dep("a")], context_fallback="big", retries=2)
    big = ModelRoute(name="big", deployments=[dep("x"), dep("y")])
    plan = routing.plan(table(small, big), request(), HealthBoard(), NOW, random.Random())
    assert sorted(d.name for d in plan.context_candidates) == ["x", "y"] and plan.retries == 2


def test_a_latency_average_with_no_recent_sample_is_forgotten_so_the_deployment_is_measured_again() -> None:
    board = HealthBoard(latency_window_s=30)
    group = ModelRoute(name="g", strategy="latency", deployments=[dep("a"), dep("b")])
    board.record(TryOutcome(deployment="a", ok=True, at_ns=0, ttfb_ns=400_000_000), NOW)
    board.record(TryOutcome(deployment="b", ok=True, at_ns=0, ttfb_ns=50_000_000), NOW + 20)
    assert routing.plan(table(group), request(), board, NOW + 25, random.Random()).candidates[0].name == "b"
    assert routing.plan(table(group), request(), board, NOW + 31, random.Random()).candidates[0].name == "a"


def test_a_deployment_whose_own_tpm_is_used_up_goes_last() -> None:
    board = HealthBoard()
    group = ModelRoute(name="g", strategy="priority", deployments=[dep("a", tpm=1000), dep("b", priority=1)])
    start = 60.0 * 30_000_000
    board.record(TryOutcome(deployment="a", ok=True, at_ns=0, tokens=600), start)
    assert routing.plan(table(group), request(), board, start + 1, random.Random()).candidates[0].name == "a"
    board.record(TryOutcome(deployment="a", ok=True, at_ns=0, tokens=600), start + 2)
    assert routing.plan(table(group), request(), board, start + 3, random.Random()).candidates[0].name == "b"
