"""The ClickHouse side: one client, inserts and queries, chdb or server alike."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from analytics import migrate
from analytics.conflicts import CONFLICT_COLUMNS, Conflict, Sorted, alert_for, conflict_row, describe, sort_requests
from analytics.rows import (
    ALERT_STATE_COLUMNS,
    API_CALL_COLUMNS,
    ATTEMPT_COLUMNS,
    AUDIT_COLUMNS,
    CALL_LOG_COLUMNS,
    DEAD_LETTER_COLUMNS,
    DETECTION_COLUMNS,
    EVENT_COLUMNS,
    REQUEST_COLUMNS,
    Rows,
    to_rows,
)
from services.bus import metrics

log = logging.getLogger("sluice.sink")

# A test hook: while the file it names exists, ClickHouse is "unavailable"
# to inserts (they fail as a lost connection does), so a test can take the
# embedded engine away and bring it back without stopping the sink.
UNAVAILABLE = "SLUICE_TEST_CLICKHOUSE_UNAVAILABLE"

# Every row of a request carries the time it was received (the envelope's),
# and the table is ordered by time first: the batch's time range keeps the
# look-up to a few granules. Measured on chdb with 300k rows over two
# minutes and a pull of 1,000 new ids: ~6 ms for the ids alone, 11 ms
# fetching whole rows, 17 ms with a minute more each side; so the ids first,
# and whole rows only of those found (a redelivery): 6.6 ms.
_STORED_IDS = (
    "SELECT DISTINCT request_id FROM requests WHERE ts >= fromUnixTimestamp64Nano({lo:Int64})"
    " AND ts <= fromUnixTimestamp64Nano({hi:Int64}) AND request_id IN {ids:Array(String)}"
)
_STORED_REQUESTS = (
    "SELECT "
    + ", ".join("toUnixTimestamp64Nano(ts)" if c == "ts" else c for c in REQUEST_COLUMNS)
    + " FROM requests WHERE ts >= fromUnixTimestamp64Nano({lo:Int64}) AND ts <= fromUnixTimestamp64Nano({hi:Int64})"
    " AND request_id IN {ids:Array(String)}"
)
_STORED_CONFLICTS = (
    "SELECT conflict_id FROM request_conflicts WHERE ts >= fromUnixTimestamp64Nano({lo:Int64})"
    " AND ts <= fromUnixTimestamp64Nano({hi:Int64}) AND conflict_id IN {ids:Array(String)}"
)


# The embedded engine's cache ceilings. ClickHouse sizes its caches for a
# server that owns its machine (5 GiB each for marks, primary indexes and
# vector indexes, 128 MiB of compiled expressions); the embedded engine
# shares a small one with the gateway, for months. A cache holds only what
# queries read, so over ``loadtest/analytics_bench.py``'s 5 million rows these
# ceilings change neither memory nor speed measurably (``--engine
# clickhouse`` runs without them): they bound what a long-lived gateway's
# caches may grow to. A ceiling on the engine's whole memory
# (``max_server_memory_usage`` = 1 GiB) was tried and left out: the analysts'
# full scans took twice as long under it.
EMBEDDED_ENGINE: dict[str, int] = {
    "mark_cache_size": 64 << 20,
    "index_mark_cache_size": 16 << 20,
    "primary_index_cache_size": 64 << 20,
    "vector_similarity_index_cache_size": 16 << 20,
    "compiled_expression_cache_size": 16 << 20,
    "query_condition_cache_size": 16 << 20,
}


class NotWriter(RuntimeError):
    """This sink may not write now: another replica holds the writer's lease."""


_TABLE_SQL = "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}"
# Raw rows, kept shorter than the rollups made from them.
RAW_TABLES = ("events", "requests", "attempts", "api_calls", "dead_letters", "detections", "tool_calls")


class Store:
    """Serialises access: chdb runs in-process and one engine serves all calls."""

    def __init__(self, dsn: str, engine: dict[str, int] | None = None) -> None:
        """``engine``: the embedded engine's server settings (``EMBEDDED_ENGINE``
        unless given; ``{}`` for ClickHouse's own); a server keeps its own."""
        self.dsn = dsn
        options = {"chdb_options": EMBEDDED_ENGINE if engine is None else engine} if dsn.startswith("chdb:") else {}
        self.client: Client = clickhouse_connect.get_client(dsn=dsn, **options)
        self._lock = threading.Lock()

    def migrate(self) -> list[str]:
        with self._lock:
            return migrate.migrate(self.client)

    def insert(self, rows: Rows, guard: Callable[[], None] | None = None) -> None:
        """Insert a batch. A batch can come twice (its ack was lost when the
        sink died after inserting, or a stage published it again after the
        stream's duplicate window). Every table replaces a row by its id on
        merge (and reads use FINAL); ``requests`` also feeds the rollups'
        views, which count what is inserted, so a request's second row never
        goes there: a copy is dropped, one that differs is kept in
        ``request_conflicts`` and alerted (``analytics.conflicts``).

        ``guard`` raises ``NotWriter`` when this process may not write; it
        runs once the lock is ours, since a query ahead of us may have held
        it for longer than the lease."""
        marker = os.environ.get(UNAVAILABLE)
        if marker and os.path.exists(marker):
            raise OperationalError(f"ClickHouse unavailable (test hook {UNAVAILABLE})")
        with self._lock:
            if guard is not None:
                guard()
            sorted_ = self._sort_requests(rows.requests)
            conflicts = self._not_stored_conflicts(sorted_.conflicts)
            now = time.time_ns()
            alerts = to_rows([alert_for(c, now) for c in conflicts]).events
            for table, columns, batch in (
                ("events", EVENT_COLUMNS, [*rows.events, *alerts]),
                ("requests", REQUEST_COLUMNS, sorted_.fresh),
                ("request_conflicts", CONFLICT_COLUMNS, [conflict_row(c, now) for c in conflicts]),
                ("attempts", ATTEMPT_COLUMNS, rows.attempts),
                ("dead_letters", DEAD_LETTER_COLUMNS, rows.dead_letters),
                ("audit", AUDIT_COLUMNS, rows.audit),
                ("api_calls", API_CALL_COLUMNS, rows.api_calls),
                ("call_logs", CALL_LOG_COLUMNS, rows.call_logs),
                ("alert_events", ALERT_STATE_COLUMNS, rows.alert_states),
                ("detections", DETECTION_COLUMNS, rows.detections),
            ):
                if batch:
                    self.client.insert(table, batch, column_names=columns)
        # Counted once the whole batch is in: a refused insert comes again.
        if sorted_.duplicates:
            metrics.DUPLICATE_ROWS.inc(sorted_.duplicates)
        if conflicts:
            metrics.ROW_CONFLICTS.inc(len(conflicts))
        for c in conflicts:
            log.warning("row conflict: %s", describe(c))

    def _sort_requests(self, batch: list[list]) -> Sorted:
        if not batch:
            return Sorted()
        key, ts = REQUEST_COLUMNS.index("request_id"), REQUEST_COLUMNS.index("ts")
        times = [row[ts] for row in batch]
        span = {"lo": min(times), "hi": max(times)}
        ids = list({row[key] for row in batch})
        found = [row[0] for row in self.client.query(_STORED_IDS, parameters={**span, "ids": ids}).result_rows]
        stored = self.client.query(_STORED_REQUESTS, parameters={**span, "ids": found}).result_rows if found else []
        return sort_requests(stored, batch)

    def _not_stored_conflicts(self, conflicts: list[Conflict]) -> list[Conflict]:
        """Leave out conflicts already recorded (their batch came again), so
        each is counted and alerted once."""
        if not conflicts:
            return conflicts
        times = [c.new["ts"] for c in conflicts]
        found = self.client.query(
            _STORED_CONFLICTS,
            parameters={"lo": min(times), "hi": max(times), "ids": [c.conflict_id for c in conflicts]},
        ).result_rows
        recorded = {row[0] for row in found}
        return [c for c in conflicts if c.conflict_id not in recorded]

    def apply_ttls(self, raw_days: int, rollup_days: int, call_log_days: int) -> list[str]:
        """Keep raw rows ``raw_days``, rollups ``rollup_days`` and call logs
        ``call_log_days`` (0: for ever; the audit trail always is). Only what
        changed is altered, and old parts are trimmed by merges rather than
        rewritten now."""
        changed = []
        with self._lock:
            for table, column, days in (
                *((t, "toDateTime(ts)", raw_days) for t in RAW_TABLES),
                ("requests_hourly", "hour", rollup_days),
                ("requests_minutely", "minute", raw_days),
                ("call_logs", "toDateTime(ts)", call_log_days),
            ):
                wanted = f"TTL {column} + toIntervalDay({days})" if days else ""
                current = self.client.query(_TABLE_SQL, parameters={"t": table}).result_rows[0][0]
                has_ttl = " TTL " in current
                if (wanted and wanted in current) or (not wanted and not has_ttl):
                    continue
                if wanted:
                    self.client.command(
                        f"ALTER TABLE {table} MODIFY {wanted}", settings={"materialize_ttl_after_modify": 0}
                    )
                else:
                    self.client.command(f"ALTER TABLE {table} REMOVE TTL")
                changed.append(f"{table}: {wanted or 'no TTL'}")
        return changed

    def query(self, sql: str, parameters: dict | None = None) -> tuple[list[str], list[tuple]]:
        with self._lock:
            result = self.client.query(sql, parameters=parameters or {})
            return list(result.column_names), result.result_rows

    def command(self, sql: str, parameters: dict | None = None) -> None:
        with self._lock:
            self.client.command(sql, parameters=parameters or {})

    def wait_idle(self) -> None:
        """Return once no insert or query is running."""
        with self._lock:
            pass

    def close(self) -> None:
        self.client.close()
