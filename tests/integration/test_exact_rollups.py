"""Rollups are exact however events arrive: a batch published twice, or
redelivered because the sink died between its insert and its ack, is
counted once in the base tables and in every rollup."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import msgspec
import nats.errors

from analytics.sink import CRASH_AFTER_INSERT
from analytics.store import UNAVAILABLE
from schemas import bus, subjects
from schemas.events import EventBatch, RequestEvent
from schemas.ids import new_id
from tests.stack import DEMO_KEY, Stack


def counts(stack: Stack, tenant: str) -> tuple[int, int, int, int]:
    """Requests and cost from the raw rows (``outcomes``) and from the hourly rollup (``hourly``)."""

    async def ask() -> tuple[int, int, int, int]:
        nc = await stack.connect("admin")
        try:
            hourly = await nc.request(
                subjects.ANALYTICS_QUERY,
                msgspec.json.encode({"name": "hourly", "params": {"tenant_id": tenant}}),
                timeout=10,
            )
            spend = await nc.request(
                subjects.ANALYTICS_QUERY,
                msgspec.json.encode({"name": "outcomes", "params": {"tenant_id": tenant}}),
                timeout=10,
            )
        finally:
            await nc.close()
        h, sp = msgspec.json.decode(hourly.data), msgspec.json.decode(spend.data)
        per_hour = sum(row[h["columns"].index("requests")] for row in h["rows"])
        hour_cost = sum(int(row[h["columns"].index("cost_pico_usd")]) for row in h["rows"])
        base = sum(row[sp["columns"].index("requests")] for row in sp["rows"])
        base_cost = sum(int(row[sp["columns"].index("cost_pico_usd")]) for row in sp["rows"])
        return base, per_hour, base_cost, hour_cost

    return asyncio.run(ask())


def wait_for(stack: Stack, tenant: str, n: int, timeout: float = 60) -> tuple[int, int, int, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = counts(stack, tenant)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):  # the sink is restarting
            time.sleep(0.3)
            continue
        if (got[0] >= n and got[1] >= n) or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_a_batch_published_twice_is_counted_once(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "twice").start()
    try:
        now = time.time_ns()
        events = [
            RequestEvent(
                event_id=new_id(), request_id=new_id(), received_at_ns=now + i, origin="nats", api="chat",
                model="m", status=200, tenant_id="twice", cost_pico_usd=1000 + i,
            )
            for i in range(50)
        ]  # fmt: skip

        async def publish() -> None:
            nc = await stack.connect("admin")
            try:
                js = nc.jetstream()
                # Two different batch ids: past the stream's duplicate window, as a stage
                # that published again after a lost acknowledgement would.
                for _ in range(2):
                    batch = EventBatch(id=new_id(), events=events)
                    await js.publish(subjects.events("provider"), bus.encode(batch), headers={"Nats-Msg-Id": batch.id})
            finally:
                await nc.close()

        asyncio.run(publish())
        time.sleep(2)  # both batches reach the sink
        base, per_hour, base_cost, hour_cost = wait_for(stack, "twice", 50)
    finally:
        stack.stop()
    assert (base, per_hour) == (50, 50)
    assert base_cost == hour_cost == sum(1000 + i for i in range(50))


def test_a_sink_killed_between_insert_and_ack_leaves_every_count_exact(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    os.environ[CRASH_AFTER_INSERT] = str(marker)
    try:
        stack = Stack(tmp_path / "crash").start()
    finally:
        os.environ.pop(CRASH_AFTER_INSERT)
    try:
        with httpx.Client(timeout=20, headers={"authorization": f"Bearer {DEMO_KEY}"}) as http:
            for i in range(30):
                body = {"model": "demo-model", "messages": [{"role": "user", "content": f"exact {i} [mock:chunks=2]"}]}
                assert http.post(f"{stack.base_url}/chat/completions", json=body).status_code == 200
        # The sink died once, after an insert it never acknowledged; the batch came again.
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the test hook never fired"
            time.sleep(0.1)
        base, per_hour, base_cost, hour_cost = wait_for(stack, "demo", 30)
        time.sleep(6)  # past the sink's ack wait: any redelivery has landed
        again = wait_for(stack, "demo", 30)
        everywhere = totals_everywhere(stack, "demo")
    finally:
        stack.stop()
    assert (base, per_hour) == (30, 30) and base_cost == hour_cost > 0
    assert again == (base, per_hour, base_cost, hour_cost)
    assert set(everywhere.values()) == {(30, base_cost)}, everywhere


def totals_everywhere(stack: Stack, tenant: str) -> dict[str, tuple[int, int]]:
    """(requests, cost) of a tenant in the raw rows and in each rollup."""
    out = {}
    for name, params in (
        ("outcomes", {"tenant_id": tenant}),
        ("hourly", {"tenant_id": tenant}),
        ("per_minute", {"tenant_id": tenant, "minutes": 120}),
        ("stats", {"tenant_id": tenant, "minutes": 120}),
        ("cost_by_tenant", {"tenant_id": tenant, "hours": 2}),
    ):
        result = stack.query(name, **params)
        assert result["error"] is None, result["error"]
        rows = [dict(zip(result["columns"], r, strict=True)) for r in result["rows"]]
        out[name] = (sum(r["requests"] for r in rows), sum(int(r["cost_pico_usd"]) for r in rows))
    return out


def test_clickhouse_unavailable_then_available_leaves_every_count_exact(tmp_path: Path) -> None:
    down = tmp_path / "clickhouse-down"
    os.environ[UNAVAILABLE] = str(down)
    try:
        stack = Stack(tmp_path / "outage").start()
    finally:
        os.environ.pop(UNAVAILABLE)
    try:
        down.touch()  # from here every insert fails as a lost connection would
        with httpx.Client(timeout=20, headers={"authorization": f"Bearer {DEMO_KEY}"}) as http:
            for i in range(20):
                body = {"model": "demo-model", "messages": [{"role": "user", "content": f"outage {i} [mock:chunks=3]"}]}
                assert http.post(f"{stack.base_url}/chat/completions", json=body).status_code == 200
        time.sleep(3)  # the sink has tried, failed and backed off a few times
        assert totals_everywhere(stack, "demo")["outcomes"] == (0, 0)  # nothing landed while it was away
        down.unlink()
        base, per_hour, base_cost, hour_cost = wait_for(stack, "demo", 20)
        time.sleep(6)  # past the sink's ack wait: any redelivery has landed
        everywhere = totals_everywhere(stack, "demo")
    finally:
        stack.stop()
    assert (base, per_hour) == (20, 20) and base_cost == hour_cost > 0
    assert set(everywhere.values()) == {(20, base_cost)}, everywhere
