"""REST calls in ClickHouse: the row the stage that ends a call writes
(``StageContext.finish``), stored through the sink's path (a JetStream batch
decoded, checked and inserted), carries the service, version, method, route
template, body sizes and the upstream's status; the named query
``rest_calls`` gives answers computed here from the same events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from analytics import intake
from analytics.intake import Pulled
from analytics.migrate import MIGRATIONS, statements
from analytics.queries import NAMED, bind
from analytics.store import Store
from schemas import bus
from schemas.analytics import QueryRequest
from schemas.chat import Cost, Usage
from schemas.envelope import Envelope
from schemas.events import EventBatch, RequestEvent
from schemas.replies import Failure, Final
from schemas.rest import HttpMethod, RestCall, RestHead, RestResult, service_model
from services import records
from workers.runner import StageContext

MS = 1_000_000
S = 1_000_000_000
PRICE = 1_000_000
UPSTREAM = "rest:billing.v1:0"


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
    """One REST call of the data set and how it ended."""

    request_id: str
    tenant: str
    key: str
    service: str
    method: HttpMethod
    path: str
    route: str
    version: int = 1
    body: bytes = b""
    # The upstream's status and body size, or a failure (status, code).
    status: int = 200
    response_bytes: int = 0
    failed: tuple[int, str] | None = None


CALLS = [
    Call("r0", "t1", "k1", "billing", "GET", "/invoices/1", "/invoices/{id}", response_bytes=120),
    Call("r1", "t1", "k1", "billing", "GET", "/invoices/2?x=1", "/invoices/{id}", response_bytes=80),
    Call("r2", "t1", "k2", "billing", "POST", "/invoices", "/invoices", body=b'{"amount": 5}', status=201,
         response_bytes=40),
    Call("r3", "t1", "k2", "billing", "GET", "/invoices/9", "/invoices/{id}", status=404, response_bytes=20),
    Call("r4", "t1", "k1", "billing", "GET", "/invoices/3", "/invoices/{id}", failed=(502, "upstream_unreachable")),
    Call("r5", "t2", "k3", "billing", "GET", "/invoices", "/invoices", version=2, response_bytes=7),
    Call("r6", "t2", "k3", "files", "PUT", "/unmatched/path", "", body=b"x" * 1000, response_bytes=2),
]  # fmt: skip
EVENTS: list[RequestEvent] = []
T0 = 0


async def end_call(c: Call, received_at_ns: int) -> RequestEvent:
    """The row ``StageContext.finish`` writes for ``c`` (as the provider stage ends it)."""
    ctx = StageContext("provider", _Nats(), None, _Events(), None, {})  # type: ignore[arg-type]
    call = RestCall(service=c.service, version=c.version, method=c.method, path=c.path, route=c.route, body=c.body)
    env = Envelope(
        reply="_INBOX.test", rest=call, id=c.request_id, received_at_ns=received_at_ns, api="rest",
        origin="http", key_id=c.key, tenant_id=c.tenant,
    )  # fmt: skip
    reply: Final | Failure
    if c.failed is not None:
        reply = Failure(id=c.request_id, seq=0, status=c.failed[0], type="upstream_error", code=c.failed[1],
                        message="no instance answered", deployment=UPSTREAM)  # fmt: skip
    else:
        result = RestResult(head=RestHead(status=c.status), response_bytes=c.response_bytes, status=c.status)
        reply = Final(id=c.request_id, seq=0, model=env.model, usage=Usage(), cost=Cost(call=PRICE),
                      cost_pico_usd=PRICE, rest=result, deployment=UPSTREAM, attempts=1)  # fmt: skip
    await ctx.finish(env, reply, received_at_ns)
    (row,) = ctx.events.emitted
    assert ctx.nc.published and ctx.nc.published[0][0] == "_INBOX.test"  # the caller was answered
    return row


def ingress_refusal(request_id: str, received_at_ns: int) -> RequestEvent:
    """A call the ingress ended itself before it had the call (a refused
    key), recorded by its name alone: counted under the service it names."""
    failure = Failure(id=request_id, seq=0, status=401, type="authentication_error", code="invalid_api_key",
                      message="no", tenant_id="", key_id="")  # fmt: skip
    return records.request_event(
        request_id=request_id, received_at_ns=received_at_ns, origin="http", api="rest",
        model=service_model("billing", 2), stream=False, done_ns=received_at_ns + 2 * MS, reply=failure,
    )  # fmt: skip


def chat_request(received_at_ns: int) -> RequestEvent:
    return RequestEvent(event_id="e-chat", request_id="chat-1", received_at_ns=received_at_ns, origin="http",
                        api="chat", model="demo-model", status=200, tenant_id="t1", key_id="k1",
                        latency_ns=3 * MS, cost_pico_usd=5, request_bytes=9)  # fmt: skip


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
    EVENTS.append(ingress_refusal("r7", T0 + len(CALLS) * S))
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('rest_calls')) / 'data'}")
    s.migrate()
    through_sink(s, [*EVENTS, chat_request(T0 + 30 * S)])
    yield s
    s.close()


def run(store: Store, name: str, **params: object) -> list[dict]:
    sql, bound = bind(QueryRequest(name=name, params=params))  # type: ignore[arg-type]
    columns, rows = store.query(sql, bound)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_the_stage_that_ends_a_call_puts_the_call_on_its_row(store: Store) -> None:
    by_id = {e.request_id: e for e in EVENTS}
    post = by_id["r2"]
    assert (post.api, post.model, post.rest_service, post.rest_version, post.http_method, post.route) == (
        "rest", "service:billing", "billing", 1, "POST", "/invoices",
    )  # fmt: skip
    assert (post.request_bytes, post.response_bytes, post.status, post.cost_pico_usd) == (13, 40, 201, PRICE)
    # The upstream's own status is the row's: a 404 the service answered is a 404.
    assert by_id["r3"].status == 404
    failed = by_id["r4"]
    assert (failed.status, failed.error_code, failed.response_bytes, failed.http_method) == (
        502, "upstream_unreachable", 0, "GET",
    )  # fmt: skip
    assert (by_id["r5"].model, by_id["r5"].rest_version) == ("service:billing/v2", 2)


def test_each_rest_call_is_stored_with_its_fields(store: Store) -> None:
    _, rows = store.query(
        "SELECT request_id, rest_service, rest_version, http_method, route, request_bytes, response_bytes, status"
        " FROM requests FINAL WHERE api = 'rest' ORDER BY ts"
    )
    assert [r[0] for r in rows] == [e.request_id for e in EVENTS]
    for row, e in zip(rows, EVENTS, strict=True):
        assert row[1:] == (
            e.rest_service, e.rest_version, e.http_method, e.route, e.request_bytes, e.response_bytes, e.status,
        )  # fmt: skip
    # Old readers (and non-REST rows) see none of it: the fields are left out when unset.
    assert b"rest_service" not in msgspec.msgpack.encode(chat_request(T0))


def want_groups(events: list[RequestEvent]) -> dict[tuple, list[RequestEvent]]:
    out: dict[tuple, list[RequestEvent]] = {}
    for e in events:
        key = (e.rest_service or "billing", e.rest_version or 2, e.route, e.http_method)
        out.setdefault(key, []).append(e)
    return out


def test_rest_calls_counts_calls_errors_latency_cost_and_bytes_per_route_and_method(store: Store) -> None:
    rows = run(store, "rest_calls")
    got = {(r["service"], r["version"], r["route"], r["method"]): r for r in rows}
    want = want_groups(EVENTS)
    assert set(got) == set(want)
    for key, es in want.items():
        row = got[key]
        assert (row["calls"], row["errors"]) == (len(es), sum(e.status >= 400 for e in es)), key
        assert int(row["cost_pico_usd"]) == sum(e.cost_pico_usd for e in es)
        assert (row["request_bytes"], row["response_bytes"]) == (
            sum(e.request_bytes for e in es), sum(e.response_bytes for e in es),
        )  # fmt: skip
        latencies = [e.latency_ns / MS for e in es]
        p50, p95 = row["latency_ms"]
        assert min(latencies) - 0.01 <= p50 <= p95 <= max(latencies) + 0.01
    # The busiest first: GET /invoices/{id} of billing v1, a 404 and a 502 among its four.
    assert (rows[0]["service"], rows[0]["route"], rows[0]["method"], rows[0]["calls"], rows[0]["errors"]) == (
        "billing", "/invoices/{id}", "GET", 4, 2,
    )  # fmt: skip
    # The refusal by name alone: billing v2, no route or method.
    assert got[("billing", 2, "", "")]["errors"] == 1


def test_rest_calls_narrows_to_a_tenant_its_keys_and_a_service(store: Store) -> None:
    t2 = {(r["service"], r["version"], r["method"], r["calls"]) for r in run(store, "rest_calls", tenant_id="t2")}
    assert t2 == {("billing", 2, "GET", 1), ("files", 1, "PUT", 1)}
    k2 = run(store, "rest_calls", tenant_id="t1", key_ids="k2")
    assert sorted((r["route"], r["method"], r["calls"]) for r in k2) == [
        ("/invoices", "POST", 1), ("/invoices/{id}", "GET", 1),
    ]  # fmt: skip
    assert run(store, "rest_calls", tenant_id="t1", key_ids="k3") == []
    files = run(store, "rest_calls", service="files")
    assert [(r["route"], r["request_bytes"]) for r in files] == [("", 1000)]
    assert run(store, "rest_calls", hours=0) == []


def test_a_batch_that_comes_again_adds_no_rest_call(store: Store) -> None:
    before = sum(r["calls"] for r in run(store, "rest_calls"))
    through_sink(store, EVENTS, "again")  # redelivered: a copy of every row
    assert sum(r["calls"] for r in run(store, "rest_calls")) == before == len(EVENTS)


def test_the_migration_applied_twice_changes_nothing(store: Store) -> None:
    assert store.migrate() == []
    for stmt in statements((MIGRATIONS / "020_rest_calls.sql").read_text()):
        store.command(stmt)
    _, rows = store.query("SELECT count() FROM requests FINAL WHERE api = 'rest' AND rest_service != ''")
    assert rows == [(len(CALLS),)]


def test_rest_calls_is_listed_with_a_tenant_filter() -> None:
    # per_tenant: a tenant admin may run it, narrowed to its own tenant.
    assert NAMED["rest_calls"].per_tenant
    assert set(NAMED["rest_calls"].params) == {"hours", "tenant_id", "key_ids", "service"}
