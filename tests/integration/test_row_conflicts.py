"""One row per request in the embedded ClickHouse, however a request's rows
come (issue 24): a copy is dropped and counted, a different second row is
kept beside the first in ``request_conflicts``, counted and alerted, and the
rollups count the request once either way."""

from __future__ import annotations

import asyncio
import time

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from analytics import intake
from analytics.conflicts import ROW_CONFLICT
from analytics.queries import bind
from analytics.rows import to_rows
from analytics.store import NotWriter, Store
from schemas import bus, subjects
from schemas.analytics import QueryRequest
from schemas.events import EventBatch, RequestEvent
from schemas.ids import new_id
from tests.stack import Stack

# A minute ago: inside every window the named queries default to.
T = time.time_ns() - 60 * 10**9


def request(request_id: str, tenant: str, **changes: object) -> RequestEvent:
    fields = {"status": 200, "cost_pico_usd": 1200, "prompt_tokens": 10, "model": "m", **changes}
    return RequestEvent(
        event_id=f"e-{request_id}", request_id=request_id, received_at_ns=T,
        origin="http", api="chat", tenant_id=tenant, **fields,
    )  # fmt: skip


def store_as_the_sink_does(store: Store, *events: RequestEvent) -> None:
    assert intake.store_all(list(events), [], store.insert) == []


def counted(name: str) -> float:
    return REGISTRY.get_sample_value(f"sluice_{name}_total") or 0.0


def raw_rows(store: Store, request_id: str) -> int:
    return store.query("SELECT count() FROM requests WHERE request_id = {r:String}", {"r": request_id})[1][0][0]


def totals(store: Store, tenant: str) -> dict[str, tuple[int, int]]:
    """(requests, cost) of a tenant in the raw table (no FINAL) and in each rollup."""
    sql = "SELECT count(), sum(cost_pico_usd) FROM requests WHERE tenant_id = {t:String}"
    out = {"raw": tuple(int(v) for v in store.query(sql, {"t": tenant})[1][0])}
    for name, params in (("hourly", {"tenant_id": tenant}), ("per_minute", {"tenant_id": tenant, "minutes": 120})):
        columns, rows = store.query(*bind(QueryRequest(name=name, params=params)))
        got = [dict(zip(columns, r, strict=True)) for r in rows]
        out[name] = (sum(r["requests"] for r in got), sum(int(r["cost_pico_usd"]) for r in got))
    return out


def named(store: Store, name: str, **params: object) -> list[dict]:
    columns, rows = store.query(*bind(QueryRequest(name=name, params=params)))  # type: ignore[arg-type]
    return [dict(zip(columns, r, strict=True)) for r in rows]


def test_the_same_row_delivered_twice_is_one_raw_row_and_counted_once(store: Store) -> None:
    e = request("same-twice", "dup")
    before = counted("duplicate_rows")
    store_as_the_sink_does(store, e)
    store_as_the_sink_does(store, e)  # redelivered: the sink died before its ack
    store_as_the_sink_does(store, e, e)  # and published again, twice in one pull
    assert raw_rows(store, "same-twice") == 1
    assert counted("duplicate_rows") - before == 3
    assert set(totals(store, "dup").values()) == {(1, 1200)}
    assert named(store, "conflicts", request_id="same-twice") == []


def test_a_different_second_row_is_kept_as_a_conflict_and_alerted(store: Store) -> None:
    before = counted("row_conflicts")
    timed_out = request("then-billed", "conflict", status=504, cost_pico_usd=0, error_type="timeout")
    billed = request("then-billed", "conflict")
    store_as_the_sink_does(store, timed_out)
    store_as_the_sink_does(store, billed)
    assert raw_rows(store, "then-billed") == 1
    (row,) = named(store, "request", request_id="then-billed")
    assert row["status"] == 504  # the first row stays: the one the rollups counted
    assert set(totals(store, "conflict").values()) == {(1, 0)}

    (conflict,) = named(store, "conflicts", request_id="then-billed")
    assert conflict["differs"] == ["status", "error_type", "cost_pico_usd"]
    assert '"status":504' in conflict["stored_row"] and '"status":200' in conflict["new_row"]
    assert conflict["tenant_id"] == "conflict"
    assert counted("row_conflicts") - before == 1
    (alert,) = [a for a in named(store, "alerts") if a["request_id"] == "then-billed"]
    assert alert["alert"] == ROW_CONFLICT and "status 504 -> 200" in alert["detail"]


def test_a_conflict_redelivered_is_recorded_counted_and_alerted_once(store: Store) -> None:
    first, second = request("twice-different", "redelivered"), request("twice-different", "redelivered", status=500)
    store_as_the_sink_does(store, first)
    before = counted("row_conflicts")
    store_as_the_sink_does(store, second)
    store_as_the_sink_does(store, second)  # the conflicting batch came again
    assert counted("row_conflicts") - before == 1
    _, rows = store.query("SELECT count() FROM request_conflicts WHERE request_id = 'twice-different'")
    assert rows == [(1,)]
    assert len([a for a in named(store, "alerts") if a["request_id"] == "twice-different"]) == 1
    assert raw_rows(store, "twice-different") == 1


def test_a_sink_that_may_not_write_inserts_nothing(store: Store) -> None:
    def refuse() -> None:
        raise NotWriter("another replica holds the lease")

    with pytest.raises(NotWriter):
        intake.store_all([request("not-mine", "standby")], [], lambda rows: store.insert(rows, guard=refuse))
    assert raw_rows(store, "not-mine") == 0
    store.insert(to_rows([request("not-mine", "standby")]))
    assert raw_rows(store, "not-mine") == 1


def test_a_second_row_with_another_time_shows_in_the_raw_count(store: Store) -> None:
    # Every row of a request carries its received time, so the sink looks
    # for a second row in the batch's time range only; one with another
    # time (none is made so) would be stored, and the raw count shows it.
    store_as_the_sink_does(store, request("other-time", "other-time"))
    later = msgspec.structs.replace(request("other-time", "other-time"), received_at_ns=T + 10**9)
    store_as_the_sink_does(store, later)
    assert raw_rows(store, "other-time") == 2
    (counts,) = named(store, "duplicate_rows", since_ns=T + 10**9)
    assert counts == {"duplicate_rows": 0, "conflicts": 0}  # only the later row is in this window
    (counts,) = named(store, "duplicate_rows", since_ns=T)
    assert counts["duplicate_rows"] == 1


def test_through_the_sink_a_conflict_lands_beside_the_row_and_shows_in_metrics(stack: Stack) -> None:
    request_id, now = new_id(), time.time_ns()
    timed_out = RequestEvent(
        event_id=new_id(), request_id=request_id, received_at_ns=now, origin="nats", api="chat", model="m",
        status=504, error_type="timeout", tenant_id="sink-conflict",
    )  # fmt: skip
    billed = msgspec.structs.replace(timed_out, event_id=new_id(), status=200, error_type="", cost_pico_usd=1500)
    before = metric_samples(stack)

    async def publish(*events: RequestEvent) -> None:
        nc = await stack.connect("admin")
        try:
            batch = EventBatch(id=new_id(), events=list(events))
            await nc.jetstream().publish(
                subjects.events("provider"), bus.encode(batch), headers={"Nats-Msg-Id": batch.id}
            )
        finally:
            await nc.close()

    asyncio.run(publish(timed_out))
    assert stack.request_row(request_id)["status"] == 504
    asyncio.run(publish(timed_out, billed))  # a copy of the first, and the provider's billed row
    deadline = time.monotonic() + 30
    while not (found := stack.query("conflicts", request_id=request_id)["rows"]):
        assert time.monotonic() < deadline, "no conflict recorded"
        time.sleep(0.2)
    (conflict,) = [dict(zip(stack.query("conflicts")["columns"], row, strict=True)) for row in found]
    assert conflict["differs"] == ["status", "error_type", "cost_pico_usd"]
    assert stack.request_row(request_id)["status"] == 504  # still the first row, counted once
    assert stack.query("duplicate_rows", since_ns=now)["rows"] == [[0, 1]]
    alerts = stack.query("alerts")
    assert any(row[0] == request_id and row[2] == ROW_CONFLICT for row in alerts["rows"])
    while True:  # each process writes its samples as it counts; the ingress sums them
        after = metric_samples(stack)
        grew = [
            after.get(n, 0.0) - before.get(n, 0.0)
            for n in ("sluice_row_conflicts_total", "sluice_duplicate_rows_total")
        ]
        if grew == [1.0, 1.0] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grew == [1.0, 1.0]


def metric_samples(stack: Stack) -> dict[str, float]:
    r = httpx.get(stack.base_url.removesuffix("/v1") + "/metrics", timeout=10)
    return {s.name: s.value for family in text_string_to_metric_families(r.text) for s in family.samples}
