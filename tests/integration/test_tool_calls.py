"""MCP calls in ClickHouse: the row the stage that ends a call writes
(``StageContext.finish``), stored through the sink's path (a JetStream batch
decoded, checked and inserted), lands once in ``tool_calls``; the named
queries and alert measures over it give answers computed here from the
same events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import msgspec
import pytest

from analytics import intake, recost
from analytics.alerting import _MEASURE_OF, MEASURES
from analytics.intake import Pulled
from analytics.migrate import MIGRATIONS, statements
from analytics.queries import NAMED, bind
from analytics.store import Store
from schemas import bus
from schemas.alerts import AlertKind, AlertRule
from schemas.analytics import QueryRequest, RecostRequest
from schemas.chat import Cost, Usage
from schemas.envelope import Envelope
from schemas.events import Detection, DetectionEvent, EventBatch, RequestEvent
from schemas.mcp import McpCall, McpMethod
from schemas.replies import Failure, Final
from services import pricing, records
from services.config import Config
from workers.runner import StageContext

MS = 1_000_000
S = 1_000_000_000
PRICE = 1_000_000
TOOL_NAMES = ("tool_calls", "tools_by_server", "tool_errors")


class _Events:
    """Stands in for the stage's event publisher: keeps what is emitted."""

    def __init__(self) -> None:
        self.emitted: list = []

    def emit(self, event: object) -> None:
        self.emitted.append(event)

    async def flush_now(self) -> None:
        pass


class _Nats:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


class Call(msgspec.Struct, frozen=True):
    """One MCP call of the data set and how it ended."""

    request_id: str
    tenant: str
    key: str
    server: str
    name: str
    arguments: bytes = b"{}"
    method: McpMethod = "tools/call"
    # A Final's result JSON and finish reason, or a failure (status, code).
    result: bytes = b'{"content":[]}'
    finish: str = "completed"
    failed: tuple[int, str] | None = None


CALLS = [
    Call("c0", "t1", "k1", "demo-tools", "echo", b'{"text":"hi alice@example.com"}', result=b'{"content":[1]}'),
    Call("c1", "t1", "k1", "demo-tools", "fail", result=b'{"content":[],"isError":true}', finish="is_error"),
    Call("c2", "t1", "k2", "demo-tools", "slow", b'{"seconds":9}', failed=(504, "upstream_timeout")),
    Call("c3", "t1", "k1", "demo-tools", "echo", b'{"text":"again"}', result=b'{"content":[22]}'),
    Call("c4", "t2", "k3", "files", "lookup", b'{"id":7}', result=b'{"content":[333]}'),
    Call("c5", "t2", "k3", "demo-tools", "echo", b'{"text":""}'),
    Call("c6", "t1", "k1", "demo-tools", "demo://readme", method="resources/read", result=b'{"contents":[]}'),
    Call("c7", "t1", "k2", "demo-tools", "fail", result=b'{"isError":true}', finish="is_error"),
]
EVENTS: list[RequestEvent] = []
T0 = 0


async def end_call(c: Call, received_at_ns: int) -> RequestEvent:
    """The row ``StageContext.finish`` writes for ``c`` (as the provider stage ends it)."""
    ctx = StageContext("provider", _Nats(), None, _Events(), None, {})  # type: ignore[arg-type]
    call = McpCall(server=c.server, method=c.method, name=c.name, arguments=c.arguments)
    env = Envelope(
        reply="_INBOX.test", tool=call, id=c.request_id, received_at_ns=received_at_ns, api="mcp",
        origin="http", key_id=c.key, tenant_id=c.tenant, trace_id="ab" * 16 if c.request_id == "c0" else "",
    )  # fmt: skip
    reply: Final | Failure
    if c.failed is not None:
        reply = Failure(id=c.request_id, seq=0, status=c.failed[0], type="timeout_error", code=c.failed[1],
                        message="the tool took too long", deployment="http://127.0.0.1:9100/mcp")  # fmt: skip
    else:
        reply = Final(id=c.request_id, seq=0, model=env.model, usage=Usage(), cost=Cost(call=PRICE),
                      cost_pico_usd=PRICE, tool_result=c.result, finish_reason=c.finish,
                      deployment="http://127.0.0.1:9100/mcp", attempts=1)  # fmt: skip
    await ctx.finish(env, reply, received_at_ns)
    (row,) = ctx.events.emitted
    assert ctx.nc.published and ctx.nc.published[0][0] == "_INBOX.test"  # the caller was answered
    return row


def ingress_refusal(request_id: str, received_at_ns: int) -> RequestEvent:
    """A call the ingress ended itself, recorded without the MCP fields: its
    row must still say which server and tool (read from the name)."""
    failure = Failure(id=request_id, seq=0, status=403, type="permission_error", code="tool_not_allowed",
                      message="no", tenant_id="t1", key_id="k1")  # fmt: skip
    return records.request_event(
        request_id=request_id, received_at_ns=received_at_ns, origin="http", api="mcp",
        model="demo-tools__delete_item", stream=False, done_ns=received_at_ns + 2 * MS, reply=failure,
    )  # fmt: skip


def chat_request(received_at_ns: int) -> RequestEvent:
    return RequestEvent(event_id="e-chat", request_id="chat-1", received_at_ns=received_at_ns, origin="http",
                        api="chat", model="demo-model", status=200, tenant_id="t1", key_id="k1",
                        latency_ns=3 * MS, cost_pico_usd=5)  # fmt: skip


def detections(received_at_ns: int) -> list[DetectionEvent]:
    found = [Detection("email", "mask", "arguments.text", 3, 20), Detection("email", "mask", "result", 0, 17)]
    return [
        DetectionEvent("d-c0", "c0", received_at_ns + MS, "t1", found),
        DetectionEvent("d-chat", "chat-1", received_at_ns + MS, "t1", found[:1]),
    ]


def through_sink(store: Store, events: list, name: str = "b") -> None:
    """As the sink stores a pull: the batch encoded as on the stream, decoded, checked, inserted."""
    pulled = [Pulled(subject="sluice.v1.events.provider", data=bus.encode(EventBatch(id=name, events=events)))]
    good, dead = intake.sort(pulled)
    assert dead == []
    assert intake.store_all(good, dead, store.insert) == []


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    global T0
    T0 = time.time_ns() - 10 * 60 * S
    EVENTS[:] = [asyncio.run(end_call(c, T0 + i * S)) for i, c in enumerate(CALLS)]
    EVENTS.append(ingress_refusal("c8", T0 + len(CALLS) * S))
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('tool_calls')) / 'data'}")
    s.migrate()
    through_sink(s, [*EVENTS, chat_request(T0 + 30 * S), *detections(T0)])
    yield s
    s.close()


def run(store: Store, name: str, **params: object) -> list[dict]:
    sql, bound = bind(QueryRequest(name=name, params=params))  # type: ignore[arg-type]
    columns, rows = store.query(sql, bound)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def measure(store: Store, name: str, **params: object) -> dict[str, dict]:
    named = MEASURES[name]
    bound = {k: params.get(k, default) for k, (_, default) in named.params.items()}
    columns, rows = store.query(named.sql, bound)
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def failed(e: RequestEvent) -> bool:
    return e.status >= 400 or e.tool_error


def test_the_stage_that_ends_a_call_puts_the_call_on_its_row(store: Store) -> None:
    by_id = {e.request_id: e for e in EVENTS}
    echo = by_id["c0"]
    assert (echo.api, echo.model, echo.mcp_server, echo.mcp_tool, echo.mcp_method) == (
        "mcp", "demo-tools__echo", "demo-tools", "echo", "tools/call",
    )  # fmt: skip
    assert (echo.request_bytes, echo.response_bytes) == (len(CALLS[0].arguments), len(CALLS[0].result))
    assert (echo.status, echo.tool_error, echo.cost_pico_usd) == (200, False, PRICE)
    # isError is a 200 (the call worked) marked as the tool's own error.
    assert (by_id["c1"].status, by_id["c1"].tool_error) == (200, True)
    slow = by_id["c2"]
    assert (slow.status, slow.error_code, slow.tool_error, slow.response_bytes, slow.request_bytes) == (
        504, "upstream_timeout", False, 0, len(b'{"seconds":9}'),
    )  # fmt: skip
    assert (by_id["c6"].mcp_method, by_id["c6"].mcp_tool) == ("resources/read", "demo://readme")
    # Old readers (and non-MCP rows) see none of it: the fields are left out when unset.
    assert b"mcp_server" not in msgspec.msgpack.encode(chat_request(T0))


def test_each_mcp_request_is_one_tool_calls_row_and_nothing_else_is(store: Store) -> None:
    # Raw count, no FINAL: the view must not have written anything twice.
    _, rows = store.query("SELECT request_id, server, tool, method, status, tool_error FROM tool_calls ORDER BY ts")
    assert [r[0] for r in rows] == [e.request_id for e in EVENTS]
    got = {r[0]: r[1:] for r in rows}
    for e in EVENTS[:-1]:
        assert got[e.request_id] == (e.mcp_server, e.mcp_tool, e.mcp_method, e.status, e.tool_error)
    # The ingress's own row: server and tool from the namespaced name, method unknown.
    assert got["c8"] == ("demo-tools", "delete_item", "", 403, False)


def test_a_batch_that_comes_again_or_a_second_version_adds_no_tool_call(store: Store) -> None:
    through_sink(store, EVENTS, "again")  # redelivered: a copy of every row
    through_sink(store, [msgspec.structs.replace(EVENTS[0], status=502, tool_error=True)], "conflict")
    _, rows = store.query("SELECT count(), countIf(request_id = 'c0' AND status = 200) FROM tool_calls")
    assert rows == [(len(EVENTS), 1)]  # the first version counts, as in requests


def test_tool_calls_lists_the_newest_with_filters_and_detections(store: Store) -> None:
    rows = run(store, "tool_calls")
    assert [r["request_id"] for r in rows] == [e.request_id for e in reversed(EVENTS)]
    by_id = {r["request_id"]: r for r in rows}
    c0 = by_id["c0"]
    assert (c0["detections"], c0["cost_pico_usd"], c0["request_bytes"], c0["trace_id"]) == (
        2, str(PRICE), len(CALLS[0].arguments), "ab" * 16,
    )  # fmt: skip
    assert c0["latency_ms"] == pytest.approx(EVENTS[0].latency_ns / MS, abs=0.01)
    assert by_id["c3"]["detections"] == 0
    assert [r["request_id"] for r in run(store, "tool_calls", tenant_id="t2")] == ["c5", "c4"]
    assert [r["request_id"] for r in run(store, "tool_calls", tool="echo")] == ["c5", "c3", "c0"]
    assert [r["request_id"] for r in run(store, "tool_calls", tool="demo-tools__echo", key_id="k1")] == ["c3", "c0"]
    assert [r["request_id"] for r in run(store, "tool_calls", server="files")] == ["c4"]
    assert [r["request_id"] for r in run(store, "tool_calls", method="resources/read")] == ["c6"]
    assert [r["request_id"] for r in run(store, "tool_calls", status="error")] == ["c8", "c7", "c2", "c1"]
    assert [r["request_id"] for r in run(store, "tool_calls", status="504")] == ["c2"]
    assert [r["request_id"] for r in run(store, "tool_calls", limit=2)] == ["c8", "c7"]
    assert run(store, "tool_calls", tenant_id="t1", server="files") == []


def test_tools_by_server_counts_calls_errors_latency_cost_and_bytes(store: Store) -> None:
    got = {(r["server"], r["tool"]): r for r in run(store, "tools_by_server")}
    want: dict[tuple[str, str], list[RequestEvent]] = {}
    for e in EVENTS:
        server, tool = (e.mcp_server, e.mcp_tool) if e.mcp_server else ("demo-tools", "delete_item")
        want.setdefault((server, tool), []).append(e)
    assert set(got) == set(want)
    for key, es in want.items():
        row = got[key]
        assert (row["calls"], row["errors"], row["tool_errors"]) == (
            len(es), sum(e.status >= 400 for e in es), sum(e.tool_error for e in es),
        )  # fmt: skip
        assert int(row["cost_pico_usd"]) == sum(e.cost_pico_usd for e in es)
        assert (row["request_bytes"], row["response_bytes"]) == (
            sum(e.request_bytes for e in es), sum(e.response_bytes for e in es),
        )  # fmt: skip
        latencies = [e.latency_ns / MS for e in es]
        p50, p95 = row["latency_ms"]
        assert min(latencies) - 0.01 <= p50 <= p95 <= max(latencies) + 0.01
    assert got[("demo-tools", "echo")]["calls"] == 3
    assert {(r["server"], r["tool"], r["calls"]) for r in run(store, "tools_by_server", tenant_id="t2")} == {
        ("files", "lookup", 1), ("demo-tools", "echo", 1),
    }  # fmt: skip


def test_tool_errors_gives_each_failing_tools_rate_with_iserror_counted(store: Store) -> None:
    got = {(r["server"], r["tool"]): r for r in run(store, "tool_errors")}
    # fail: both isError; slow: a timeout; delete_item: refused. echo, lookup, the resource: none.
    assert set(got) == {("demo-tools", "fail"), ("demo-tools", "slow"), ("demo-tools", "delete_item")}
    assert (got[("demo-tools", "fail")]["tool_errors"], got[("demo-tools", "fail")]["error_rate"]) == (2, 1.0)
    assert (got[("demo-tools", "slow")]["failed"], got[("demo-tools", "slow")]["top_error_code"]) == (
        1, "upstream_timeout",
    )  # fmt: skip
    assert got[("demo-tools", "fail")]["top_error_code"] == ""
    assert run(store, "tool_errors", tenant_id="t2") == []


def test_the_tool_alert_measures_give_the_known_values(store: Store) -> None:
    per_tool = measure(store, "tool_error_rate", minutes=60, min_requests=1)
    assert per_tool["demo-tools__fail"]["value"] == 1.0 and per_tool["demo-tools__echo"]["value"] == 0.0
    assert per_tool["files__lookup"]["volume"] == 1
    per_server = measure(store, "tool_error_rate", minutes=60, by="server", min_requests=1)
    demo = [e for e in EVENTS if e.mcp_server != "files"]
    assert per_server["demo-tools"]["value"] == pytest.approx(sum(failed(e) for e in demo) / len(demo))
    assert set(measure(store, "tool_error_rate", minutes=60, by="server", min_requests=3)) == {"demo-tools"}
    p95 = measure(store, "tool_latency_p95", minutes=60, by="server", min_requests=1)
    ok = [e.latency_ns / MS for e in demo if e.status < 400]
    assert min(ok) <= p95["demo-tools"]["value"] <= max(ok) and p95["demo-tools"]["volume"] == len(ok)
    assert measure(store, "tool_latency_p95", minutes=1, min_requests=1) == {}  # all older than a minute


def test_every_alert_kind_has_a_measure_and_the_tool_kinds_read_from_config() -> None:
    assert {k for k in get_args(AlertKind) if k != "budget"} == set(_MEASURE_OF)
    assert set(_MEASURE_OF.values()) <= set(MEASURES)
    rule = msgspec.convert({"name": "tools", "kind": "tool_latency_p95", "by": "server", "threshold": 800},
                           AlertRule)  # fmt: skip
    assert (rule.kind, rule.by) == ("tool_latency_p95", "server")


def test_recosting_leaves_tool_calls_alone(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # A tool call's price is per call, not per token: even under a deployment
    # name the catalog prices, re-costing by tokens would make it 0.
    priced = {"http://127.0.0.1:9100/mcp": pricing.Price(input=5, cached_input=1, cache_write=6, output=9)}
    monkeypatch.setattr(recost, "prices", lambda config: priced)
    result = recost.recost(store, Config(), RecostRequest(since_ns=T0 - 1, dry_run=True))
    assert result.tenants == []


def test_tool_calls_are_raw_rows_kept_as_long_as_requests(store: Store) -> None:
    changed = store.apply_ttls(30, 400, 7)
    assert "tool_calls: TTL toDateTime(ts) + toIntervalDay(30)" in changed


def test_the_migration_applied_twice_changes_nothing(store: Store) -> None:
    assert store.migrate() == []
    _, before = store.query("SELECT count() FROM tool_calls")
    for stmt in statements((MIGRATIONS / "019_tool_calls.sql").read_text()):
        store.command(stmt)
    _, after = store.query("SELECT count() FROM tool_calls")
    assert after == before
    # Still one view: a new call is one row, not two.
    late = msgspec.structs.replace(EVENTS[3], event_id="late", request_id="c-late")
    through_sink(store, [late], "late")
    _, rows = store.query("SELECT count() FROM tool_calls WHERE request_id = 'c-late'")
    assert rows == [(1,)]


def test_the_tool_queries_are_listed_with_a_tenant_filter() -> None:
    # per_tenant: a tenant admin may run them, narrowed to its own tenant.
    assert all(NAMED[name].per_tenant for name in TOOL_NAMES)
