"""The Batch API's HTTP door (ingress/batches_endpoint.py, and its route in
ingress/app.py) over an in-memory store: a batch's live counts are counted
at most once a COUNTS_FRESH_S however often it is polled, a list shows the
counts as stored and reads only its page's records, and every call holds a
slot of the process's ``max_in_flight`` (503 gateway_busy past it)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from ingress import batches_endpoint
from ingress.app import IngressApp
from ingress.batches_endpoint import BatchesEndpoint
from schemas.batches import BatchRecord, RequestCounts
from schemas.control import ApiKey
from schemas.errors import GatewayError
from services import batches
from services.config import GatewaySettings


def record(n: int, **fields: Any) -> BatchRecord:
    base: dict[str, Any] = {
        "id": batches.new_batch_id(n * 1_000_000_000),
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": n,
        "in_progress_at": n,
        "request_counts": RequestCounts(total=10),
        "tenant_id": "t",
        "key_id": "k",
    }
    return BatchRecord(**{**base, **fields})


class FakeStore:
    def __init__(self, records: list[BatchRecord]) -> None:
        self.records = {r.id: r for r in records}
        self.counted = 0
        self.read: list[str] = []

    async def counts(self, batch_id: str, total: int) -> RequestCounts:
        self.counted += 1
        return RequestCounts(total=total, completed=self.counted)

    async def ids_of_tenant(self, tenant_id: str) -> list[str]:
        return list(self.records)

    async def get(self, tenant_id: str, batch_id: str) -> tuple[BatchRecord | None, int]:
        self.read.append(batch_id)
        return self.records.get(batch_id), 1


def endpoint(store: FakeStore) -> BatchesEndpoint:
    service = SimpleNamespace(store=store, finisher=SimpleNamespace(touched=lambda tenant, batch: None))
    return BatchesEndpoint(SimpleNamespace(), service)  # type: ignore[arg-type]


def test_a_batch_polled_in_a_loop_is_counted_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each GET counted its lines anew: two JetStream consumers a poll."""
    running = record(1)
    store = FakeStore([running])
    door = endpoint(store)

    async def polls() -> list[int]:
        return [(await door._shown(running)).request_counts.completed for _ in range(20)]

    assert asyncio.run(polls()) == [1] * 20 and store.counted == 1
    monkeypatch.setattr(batches_endpoint, "COUNTS_FRESH_S", 0.0)
    assert asyncio.run(door._shown(running)).request_counts.completed == 2


def test_a_list_shows_counts_as_stored_and_reads_only_its_page() -> None:
    made = [record(n) for n in range(1, 51)]
    store = FakeStore(made)
    key = ApiKey(id="k", tenant_id="t")
    page = asyncio.run(endpoint(store)._list(key, {"limit": ["5"]}))
    assert [b.id for b in page.data] == [r.id for r in made[::-1][:5]] and page.has_more
    assert all(b.request_counts == RequestCounts(total=10) for b in page.data)
    assert store.counted == 0 and sorted(store.read) == sorted(b.id for b in page.data)


class FakeBatches:
    """The app's batches door: what it was served with, and the process's count of calls then."""

    def __init__(self, app: IngressApp) -> None:
        self.app = app
        self.seen: list[tuple[int, GatewayError | None]] = []

    async def serve(self, scope: Any, receive: Any, send: Any, *, busy: GatewayError | None = None) -> None:
        self.seen.append((self.app.in_flight, busy))


def test_a_batch_call_holds_a_slot_of_max_in_flight_and_is_refused_past_it() -> None:
    app = IngressApp(GatewaySettings(max_in_flight=2))
    app.gw, app.admin = SimpleNamespace(), SimpleNamespace()  # type: ignore[assignment]
    door = FakeBatches(app)
    app.batches = door  # type: ignore[assignment]
    scope = {"type": "http", "method": "POST", "path": "/v1/batches", "headers": []}

    async def call() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        async def send(message: dict) -> None:
            pass

        await app(dict(scope), receive, send)

    asyncio.run(call())
    assert door.seen == [(1, None)] and app.in_flight == 0
    app.in_flight = 2  # two model requests held
    asyncio.run(call())
    busy = door.seen[-1][1]
    assert busy is not None and (busy.status, busy.code) == (503, "gateway_busy") and app.in_flight == 2


def test_busy_is_answered_in_openais_shape_before_the_key_is_read() -> None:
    door = endpoint(FakeStore([]))
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"method": "POST", "path": "/v1/batches", "headers": [], "sluice.received_ns": 1, "sluice.request_id": "r"}
    busy = GatewayError("busy", status=503, code="gateway_busy")
    asyncio.run(door.serve(scope, receive, send, busy=busy))
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["error"]["code"] == "gateway_busy"
