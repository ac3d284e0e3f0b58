from __future__ import annotations

import pytest

from analytics import intake, migrate
from analytics.intake import Pulled
from analytics.queries import UnknownQuery, bind
from analytics.rows import ATTEMPT_COLUMNS, REQUEST_COLUMNS, problem, to_rows
from loadtest.mock_upstream.faults import Behaviour, apply_directives
from schemas import bus
from schemas.analytics import QueryRequest
from schemas.events import AttemptEvent, EventBatch, RequestEvent, StageEvent
from services.cli.stats_table import render, rows_as_dicts


def test_rows_match_their_column_lists() -> None:
    events = [
        RequestEvent(event_id="e1", request_id="r", received_at_ns=1, origin="http", api="chat", model="m", status=200),
        AttemptEvent(
            event_id="e2", request_id="r", started_at_ns=1, deployment="d", provider="p", upstream_model="u", status=200
        ),
        StageEvent(event_id="e3", request_id="r", stage="policy", started_at_ns=1, duration_ns=5, outcome="forward"),
    ]
    rows = to_rows(events)
    assert len(rows.events) == 3
    assert len(rows.requests) == 1 and len(rows.requests[0]) == len(REQUEST_COLUMNS)
    assert len(rows.attempts) == 1 and len(rows.attempts[0]) == len(ATTEMPT_COLUMNS)


def test_query_binding_coerces_and_refuses_unknown_names() -> None:
    _, params = bind(QueryRequest(name="stats", params={"minutes": "15"}))
    assert params == {"minutes": 15, "tenant_id": ""}
    with pytest.raises(UnknownQuery):
        bind(QueryRequest(name="DROP TABLE requests"))


def test_migration_files_split_into_statements() -> None:
    stmts = migrate.statements("-- a comment; with a semicolon\nCREATE TABLE a (x UInt8);\n\nSELECT 1;\n")
    assert stmts == ["CREATE TABLE a (x UInt8)", "SELECT 1"]


def test_stats_table_renders_cost_in_usd() -> None:
    columns = [
        "model",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "cost_pico_usd",
        "latency_ms",
        "ttft_ms",
    ]
    records = rows_as_dicts(columns, [["m", 2, 1, 10, 20, "12500000", [1.0, 2.0, 3.0], [None, None, None]]])
    assert records[0]["cost_usd"] == "0.0000125"
    text = render(records, 60)
    assert "0.00001250" in text and "3.0" in text and " -" in text
    assert render([], 5) == "No requests in the last 5 minutes."


def test_mock_directives_override_defaults() -> None:
    b = apply_directives(Behaviour(chunks=3), "x [mock:status=429] [mock:no_usage] [mock:chunk_ms=20]")
    assert (b.status, b.no_usage, b.chunk_ms, b.chunks) == (429, True, 20, 3)
    assert apply_directives(Behaviour(), "plain") == Behaviour()


def _request(**fields: object) -> RequestEvent:
    base: dict = dict(event_id="e", request_id="r", received_at_ns=1, origin="nats", api="chat", model="m", status=200)
    return RequestEvent(**{**base, **fields})


def test_events_clickhouse_cannot_hold_are_named_with_the_field() -> None:
    assert problem(_request()) is None
    assert "received_at_ns" in (problem(_request(received_at_ns=2**64 - 1)) or "")
    assert "prompt_tokens" in (problem(_request(prompt_tokens=2**32)) or "")
    assert "latency_ns" in (problem(_request(latency_ns=-1)) or "")
    assert "status" in (problem(_request(status=70000)) or "")
    attempt = AttemptEvent(
        event_id="a", request_id="r", started_at_ns=-5, deployment="d", provider="p", upstream_model="u", status=200
    )
    assert "started_at_ns" in (problem(attempt) or "")


def test_sort_keeps_good_events_and_dead_letters_the_rest() -> None:
    good, bad = _request(event_id="good"), _request(event_id="bad", received_at_ns=2**64 - 1, request_id="poison")
    pulled = [
        Pulled(subject="sluice.v1.events.policy", data=bus.encode(EventBatch(id="b1", events=[good, bad]))),
        Pulled(subject="sluice.v1.events.x", data=b"\xc1 not msgpack"),
    ]
    events, dead = intake.sort(pulled)
    assert [e.event_id for e in events] == ["good"]
    assert [(d.subject, d.request_id) for d in dead] == [
        ("sluice.v1.events.policy", "poison"),
        ("sluice.v1.events.x", ""),
    ]
    assert "received_at_ns" in dead[0].reason and b'"event_id":"bad"' in dead[0].payload
    assert dead[1].reason.startswith("undecodable") and dead[1].payload == b"\xc1 not msgpack"
    rows = to_rows(intake.alerts_for(dead), dead)
    assert len(rows.dead_letters) == 2 and rows.dead_letters[1][-1].startswith("base64:")
    assert [r[1] for r in rows.events] == ["alert", "alert"]
