"""Migrations and inserts against the embedded ClickHouse engine (chdb)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics import intake
from analytics.migrate import MIGRATIONS
from analytics.rows import to_rows
from analytics.store import Store
from schemas.events import RequestEvent


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    # chdb holds one data directory per process: one store for the module.
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('ch')) / 'data'}")
    yield s
    s.close()


def test_migrations_apply_once(store: Store) -> None:
    first = store.migrate()
    assert first == sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert first[:3] == ["001_tables.sql", "002_rollups.sql", "003_usage_detail.sql"]
    assert store.migrate() == []
    _, rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
    assert {"events", "requests", "attempts", "requests_minutely", "requests_hourly"} <= {r[0] for r in rows}
    _, cols = store.query("SELECT name FROM system.columns WHERE table = 'requests' AND database = currentDatabase()")
    assert {"cached_tokens", "reasoning_tokens", "cost_cached_input_pico_usd"} <= {c[0] for c in cols}


def test_redelivered_events_count_once(store: Store) -> None:
    store.migrate()
    e = RequestEvent(
        event_id="e1",
        request_id="dup-1",
        received_at_ns=1_700_000_000_000_000_000,
        origin="http",
        api="chat",
        model="m",
        status=200,
        cost_pico_usd=123,
    )
    store.insert(to_rows([e]))
    store.insert(to_rows([e]))  # the sink crashed before its ack: JetStream redelivers
    _, rows = store.query("SELECT count(), sum(cost_pico_usd) FROM requests FINAL WHERE request_id = 'dup-1'")
    assert rows == [(1, 123)]
    _, rows = store.query("SELECT count() FROM events FINAL WHERE event_id = 'e1'")
    assert rows == [(1,)]


def test_a_value_no_check_foresaw_is_dead_lettered_and_the_rest_lands(store: Store) -> None:
    store.migrate()

    def request(request_id: str, model: str) -> RequestEvent:
        return RequestEvent(
            event_id=f"ev-{request_id}",
            request_id=request_id,
            received_at_ns=1_700_000_000_000_000_000,
            origin="nats",
            api="chat",
            model=model,
            status=200,
        )

    # A lone surrogate passes msgspec's str type but not ClickHouse's UTF-8 encoding.
    good, odd = request("lands-1", "m"), request("refused-1", "bad\udcff")
    dead = intake.store_all([good, odd], [], store.insert)
    assert [d.request_id for d in dead] == ["refused-1"]
    _, rows = store.query("SELECT request_id FROM requests FINAL WHERE request_id IN ('lands-1', 'refused-1')")
    assert rows == [("lands-1",)]
    _, rows = store.query("SELECT request_id, reason FROM dead_letters FINAL WHERE request_id = 'refused-1'")
    assert len(rows) == 1 and "insert refused" in rows[0][1]
    _, rows = store.query("SELECT count() FROM events FINAL WHERE kind = 'alert' AND request_id = 'refused-1'")
    assert rows == [(1,)]


def test_retention_is_set_per_table_and_only_when_it_changes(store: Store) -> None:
    store.migrate()
    changed = store.apply_ttls(30, 400, 7)
    assert "requests: TTL toDateTime(ts) + toIntervalDay(30)" in changed
    assert "requests_hourly: TTL hour + toIntervalDay(400)" in changed
    assert "call_logs: TTL toDateTime(ts) + toIntervalDay(7)" in changed
    assert not any(c.startswith("audit") for c in changed)  # the trail is kept for ever
    assert store.apply_ttls(30, 400, 7) == []
    assert store.apply_ttls(0, 400, 7)[0] == "events: no TTL"
    assert store.apply_ttls(90, 800, 0) != []


def test_a_request_row_that_comes_again_is_stored_and_rolled_up_once(store: Store) -> None:
    store.migrate()
    event = RequestEvent(
        event_id="again-e", request_id="again-r", received_at_ns=1_800_000_000_000_000_000, origin="http",
        api="chat", model="again", status=200, tenant_id="again", cost_pico_usd=7,
    )  # fmt: skip
    for _ in range(3):
        store.insert(to_rows([event, event]))
    _, rows = store.query("SELECT count() FROM requests WHERE request_id = 'again-r'")
    assert rows[0][0] == 1
    _, rows = store.query(
        "SELECT countMerge(requests), sumMerge(cost_pico_usd) FROM requests_hourly WHERE tenant_id = 'again'"
    )
    assert rows[0] == (1, 7)
