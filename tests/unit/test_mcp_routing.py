"""Routing of MCP calls: which instances, in which order, how many tries."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from schemas.errors import InvalidRequest, RecordNotFound
from schemas.health import TryOutcome
from schemas.mcp import CatalogTool, McpCall, McpServer, ServerCatalog, ToolAnnotations, ToolRule
from services.breaker import BreakerConfig, BreakerState
from services.health import HealthBoard
from services.mcp_routing import plan

NOW = 1_800_000_000.0
URLS = ["http://a/mcp", "http://b/mcp", "http://c/mcp"]
SERVERS = {
    "demo": McpServer(
        name="demo", urls=URLS, timeout_s=12, tools={"echo": ToolRule(idempotent=True), "ping": ToolRule()}
    ),
    "local": McpServer(name="local", transport="stdio", command=["python", "-m", "tools"]),
}
CATALOGS = {
    "demo": ServerCatalog(
        server="demo",
        tools=[
            CatalogTool(name="echo"),
            CatalogTool(name="ping"),
            CatalogTool(name="lookup", annotations=ToolAnnotations(readOnlyHint=True)),
            CatalogTool(name="put", annotations=ToolAnnotations(idempotentHint=True)),
            CatalogTool(name="delete_item", annotations=ToolAnnotations(destructiveHint=True)),
            CatalogTool(name="maybe", annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=None)),
        ],
        healthy=URLS,
    )
}


def call(name: str, method: str = "tools/call", server: str = "demo") -> McpCall:
    return McpCall(server=server, method=method, name=name)  # type: ignore[arg-type]


def urls(p) -> list[str]:  # type: ignore[no-untyped-def]
    return [d.base_url for d in p.candidates]


@pytest.mark.parametrize(
    "c",
    [
        call("echo"),  # the rule says idempotent
        call("lookup"),
        call("put"),
        call("greeting", "prompts/get"),
        call("demo://readme", "resources/read"),
    ],
)
def test_a_safe_call_may_go_to_every_instance(c: McpCall) -> None:
    p = plan(SERVERS, CATALOGS, c, HealthBoard(), NOW)
    assert urls(p) == URLS and p.retries == 0 and p.group == "demo"
    d = p.candidates[0]
    assert (d.name, d.provider, d.upstream_model, d.timeout_s) == ("mcp:demo:0", "mcp", c.name, 12)


@pytest.mark.parametrize("name", ["ping", "delete_item", "maybe", "unknown-to-the-catalog"])
def test_a_call_not_safe_to_repeat_gets_one_try(name: str) -> None:
    p = plan(SERVERS, CATALOGS, call(name), HealthBoard(), NOW)
    assert urls(p) == URLS[:1] and p.retries == 0


def test_a_lone_instance_is_tried_again_only_for_a_safe_call() -> None:
    servers = {"one": McpServer(name="one", urls=["http://a/mcp"])}
    catalogs = {
        "one": ServerCatalog(
            server="one",
            tools=[CatalogTool(name="r", annotations=ToolAnnotations(readOnlyHint=True)), CatalogTool(name="w")],
        )
    }
    assert plan(servers, catalogs, call("r", server="one"), HealthBoard(), NOW).retries == 1
    assert plan(servers, catalogs, call("w", server="one"), HealthBoard(), NOW).retries == 0


def test_instances_that_answered_come_first_and_breaker_held_ones_last() -> None:
    catalogs = {"demo": ServerCatalog(server="demo", tools=CATALOGS["demo"].tools, healthy=[URLS[1], URLS[2]])}
    board = HealthBoard(BreakerConfig(failures_to_open=1, cooldown_s=30))
    changed = board.record(TryOutcome(deployment="mcp:demo:1", ok=False, at_ns=0), NOW)
    assert changed is BreakerState.OPEN
    assert urls(plan(SERVERS, catalogs, call("echo"), board, NOW)) == [URLS[2], URLS[0], URLS[1]]
    # An unsafe call's one try goes to the best of them.
    assert urls(plan(SERVERS, catalogs, call("ping"), board, NOW)) == [URLS[2]]
    # Once the cooldown is over the instance is back among the answering ones.
    assert urls(plan(SERVERS, catalogs, call("echo"), HealthBoard(), NOW)) == [URLS[1], URLS[2], URLS[0]]


def test_calls_spread_over_instances_that_are_alike() -> None:
    rng = random.Random(7)
    firsts = Counter(
        plan(SERVERS, CATALOGS, call("ping"), HealthBoard(), NOW, rng).candidates[0].base_url for _ in range(300)
    )
    assert set(firsts) == set(URLS) and min(firsts.values()) > 60


def test_a_stdio_server_is_one_candidate() -> None:
    p = plan(SERVERS, {}, call("anything", server="local"), HealthBoard(), NOW)
    assert [(d.name, d.base_url) for d in p.candidates] == [("mcp:local:0", "stdio")]


def test_an_unknown_server_is_404_and_a_pin_must_name_an_instance() -> None:
    with pytest.raises(RecordNotFound) as info:
        plan(SERVERS, CATALOGS, call("echo", server="ghost"), HealthBoard(), NOW)
    assert info.value.code == "tool_not_found" and info.value.status == 404
    with pytest.raises(RecordNotFound):
        plan({"empty": McpServer(name="empty")}, {}, call("x", server="empty"), HealthBoard(), NOW)
    assert urls(plan(SERVERS, CATALOGS, call("ping"), HealthBoard(), NOW, pin="mcp:demo:2")) == [URLS[2]]
    with pytest.raises(InvalidRequest):
        plan(SERVERS, CATALOGS, call("ping"), HealthBoard(), NOW, pin="mcp:other:0")
