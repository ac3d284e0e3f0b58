"""A request's second row: a copy is a duplicate, anything else a conflict
that keeps both versions (issue 24). The decision alone, without ClickHouse."""

from __future__ import annotations

from analytics.conflicts import ROW_CONFLICT, alert_for, conflict_row, describe, sort_requests
from analytics.rows import REQUEST_COLUMNS, to_rows
from schemas.events import RequestEvent

T = 1_700_000_000_000_000_000


def row(request_id: str = "r1", **changes: object) -> list:
    fields = {"status": 200, "cost_pico_usd": 1200, "tenant_id": "t1", "model": "m", **changes}
    event = RequestEvent(event_id="e", request_id=request_id, received_at_ns=T, origin="http", api="chat", **fields)
    return to_rows([event]).requests[0]


def test_a_row_whose_id_is_not_stored_is_fresh() -> None:
    got = sort_requests([], [row("r1"), row("r2")])
    assert (got.fresh, got.duplicates, got.conflicts) == ([row("r1"), row("r2")], 0, [])


def test_a_copy_of_the_stored_row_is_a_duplicate() -> None:
    got = sort_requests([tuple(row("r1"))], [row("r1"), row("r2")])
    assert (got.fresh, got.duplicates, got.conflicts) == ([row("r2")], 1, [])


def test_the_same_row_twice_in_one_pull_is_stored_once() -> None:
    got = sort_requests([], [row("r1"), row("r1")])
    assert (got.fresh, got.duplicates, got.conflicts) == ([row("r1")], 1, [])


def test_a_different_row_for_a_stored_id_is_a_conflict_with_both_versions() -> None:
    got = sort_requests([row("r1", status=504, cost_pico_usd=0)], [row("r1")])
    assert (got.fresh, got.duplicates) == ([], 0)
    (c,) = got.conflicts
    assert c.differs == ["status", "cost_pico_usd"]
    assert (c.stored["status"], c.new["status"], c.new["cost_pico_usd"]) == (504, 200, 1200)
    assert describe(c) == "request r1 came again with another row: status 504 -> 200, cost_pico_usd 0 -> 1200"


def test_two_different_rows_in_one_pull_keep_the_first_and_record_the_second() -> None:
    got = sort_requests([], [row("r1", status=504), row("r1"), row("r1")])
    assert got.fresh == [row("r1", status=504)]
    assert [c.differs for c in got.conflicts] == [["status"]]
    assert got.duplicates == 1  # the second version's copy is not a second conflict


def test_a_row_that_copies_any_version_seen_is_a_duplicate() -> None:
    # Stored twice before this check existed: a copy of either is no conflict.
    got = sort_requests([row("r1", status=504), row("r1")], [row("r1")])
    assert (got.duplicates, got.conflicts) == (1, [])


def test_a_conflict_redelivered_has_the_same_id_and_alert_id() -> None:
    first = sort_requests([row("r1", status=504)], [row("r1")]).conflicts[0]
    again = sort_requests([row("r1", status=504)], [row("r1")]).conflicts[0]
    other = sort_requests([row("r1", status=504)], [row("r1", status=201)]).conflicts[0]
    assert first.conflict_id == again.conflict_id != other.conflict_id
    assert alert_for(first, 1).event_id == alert_for(again, 2).event_id


def test_the_conflict_row_and_alert_name_the_request_and_what_differs() -> None:
    (c,) = sort_requests([row("r1", status=504)], [row("r1")]).conflicts
    stored = conflict_row(c, T + 5)
    assert stored[:6] == ["r1", T, c.conflict_id, T + 5, "t1", ["status"]]
    assert '"status":504' in stored[6] and '"status":200' in stored[7]
    alert = alert_for(c, T + 5)
    assert (alert.alert, alert.request_id, alert.model) == (ROW_CONFLICT, "r1", "m")
    assert "status 504 -> 200" in alert.detail


def test_columns_line_up_with_the_rows() -> None:
    assert len(row()) == len(REQUEST_COLUMNS)
