"""Routing of REST calls: which instances, in which order (by weight, the
breaker-held last), and no retry rounds of routing's own."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas.errors import GatewayError, InvalidRequest
from schemas.health import TryOutcome
from schemas.rest import RestCall, RestInstance, RestService
from services.breaker import BreakerConfig, BreakerState
from services.health import HealthBoard
from services.rest_routing import deployments, plan

NOW = 1_800_000_000.0
INSTANCES = [
    RestInstance(url="http://a:1/api", weight=6),
    RestInstance(url="http://b:2/api", weight=3),
    RestInstance(url="http://c:3/api", weight=1),
]
SERVICES = {
    s.key: s
    for s in (
        RestService(slug="billing", instances=INSTANCES, read_timeout_s=12, methods=["GET", "POST"]),
        RestService(slug="billing", version=2, instances=INSTANCES[:1]),
        RestService(slug="wip", instances=INSTANCES, state="draft"),
        RestService(slug="gone", instances=INSTANCES, state="retired"),
        RestService(slug="empty"),
    )
}


def call(service: str = "billing", **fields: object) -> RestCall:
    return RestCall(service=service, **fields)  # type: ignore[arg-type]


def urls(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [d.base_url for d in p.candidates]


def test_every_instance_is_a_deployment_of_its_own() -> None:
    found = deployments(SERVICES["billing.v1"])
    assert [d.name for d in found] == ["rest:billing.v1:0", "rest:billing.v1:1", "rest:billing.v1:2"]
    first = found[0]
    assert (first.provider, first.base_url, first.upstream_model, first.timeout_s, first.weight) == (
        "rest", "http://a:1/api", "billing.v1", 12, 6,
    )  # fmt: skip
    # Each version's instances are its own (another breaker for the same URL).
    assert [d.name for d in deployments(SERVICES["billing.v2"])] == ["rest:billing.v2:0"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_instance_is_a_candidate_and_routing_adds_no_retry_rounds(method: str) -> None:
    # Whether a failed try goes on to the next is the adapter's to say (a POST whose body got through never does).
    p = plan(SERVICES, call(method=method), HealthBoard(), NOW, random.Random(1))
    assert sorted(urls(p)) == sorted(i.url for i in INSTANCES)
    assert (p.group, p.retries) == ("service:billing", 0)
    assert plan(SERVICES, call(version=2), HealthBoard(), NOW, random.Random(1)).group == "service:billing/v2"


def test_the_first_instance_is_drawn_by_weight() -> None:
    rng, board = random.Random(7), HealthBoard()
    firsts = Counter(urls(plan(SERVICES, call(), board, NOW, rng))[0] for _ in range(3000))
    assert firsts["http://a:1/api"] == pytest.approx(1800, rel=0.1)
    assert firsts["http://b:2/api"] == pytest.approx(900, rel=0.15)
    assert firsts["http://c:3/api"] == pytest.approx(300, rel=0.25)


def test_an_instance_whose_breaker_is_open_goes_last() -> None:
    board = HealthBoard(BreakerConfig(failures_to_open=1, cooldown_s=30))
    state = board.record(TryOutcome(deployment="rest:billing.v1:0", ok=False, at_ns=0), NOW)
    assert state is BreakerState.OPEN
    for seed in range(20):
        assert urls(plan(SERVICES, call(), board, NOW + 1, random.Random(seed)))[-1] == "http://a:1/api"
    # Another version's breaker for the same URL is not this one's.
    assert urls(plan(SERVICES, call(version=2), board, NOW + 1, random.Random(1))) == ["http://a:1/api"]


def test_a_pinned_instance_is_the_only_candidate() -> None:
    p = plan(SERVICES, call(), HealthBoard(), NOW, random.Random(1), pin="rest:billing.v1:2")
    assert urls(p) == ["http://c:3/api"]
    with pytest.raises(InvalidRequest) as info:
        plan(SERVICES, call(), HealthBoard(), NOW, random.Random(1), pin="rest:billing.v2:0")
    assert info.value.code == "unknown_deployment"


@pytest.mark.parametrize(
    ("c", "status", "code"),
    [
        (call("ghost"), 404, "service_not_found"),
        (call("wip"), 404, "service_not_found"),
        (call("gone"), 410, "service_retired"),
        (call("empty"), 404, "service_not_found"),
        (call(method="DELETE"), 405, "method_not_allowed"),
    ],
)
def test_a_service_changed_since_policy_is_refused_the_same_way(c: RestCall, status: int, code: str) -> None:
    with pytest.raises(GatewayError) as info:
        plan(SERVICES, c, HealthBoard(), NOW, random.Random(1))
    assert (info.value.status, info.value.code) == (status, code)
