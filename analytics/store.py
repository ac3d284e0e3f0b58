"""The ClickHouse side: one client, inserts and queries, chdb or server alike."""

from __future__ import annotations

import os
import threading

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from analytics import migrate
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
)

# A test hook: while the file it names exists, ClickHouse is "unavailable"
# to inserts (they fail as a lost connection does), so a test can take the
# embedded engine away and bring it back without stopping the sink.
UNAVAILABLE = "SLUICE_TEST_CLICKHOUSE_UNAVAILABLE"

# Tables whose inserts feed rollups (materialized views), with each row's own id.
_ROLLED_UP = {"requests": "request_id"}


_TABLE_SQL = "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}"
# Raw rows, kept shorter than the rollups made from them.
RAW_TABLES = ("events", "requests", "attempts", "api_calls", "dead_letters", "detections")


class Store:
    """Serialises access: chdb runs in-process and one engine serves all calls."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.client: Client = clickhouse_connect.get_client(dsn=dsn)
        self._lock = threading.Lock()

    def migrate(self) -> list[str]:
        with self._lock:
            return migrate.migrate(self.client)

    def insert(self, rows: Rows) -> None:
        """Insert a batch. A batch can come twice (its ack was lost when the
        sink died after inserting, or a stage published it again after the
        stream's duplicate window). Every table replaces a row by its id on
        merge (and reads use FINAL); ``requests`` also feeds the rollups'
        views, which count what is inserted, so its rows already stored are
        left out here: each request is counted once everywhere."""
        marker = os.environ.get(UNAVAILABLE)
        if marker and os.path.exists(marker):
            raise OperationalError(f"ClickHouse unavailable (test hook {UNAVAILABLE})")
        with self._lock:
            for table, columns, batch in (
                ("events", EVENT_COLUMNS, rows.events),
                ("requests", REQUEST_COLUMNS, rows.requests),
                ("attempts", ATTEMPT_COLUMNS, rows.attempts),
                ("dead_letters", DEAD_LETTER_COLUMNS, rows.dead_letters),
                ("audit", AUDIT_COLUMNS, rows.audit),
                ("api_calls", API_CALL_COLUMNS, rows.api_calls),
                ("call_logs", CALL_LOG_COLUMNS, rows.call_logs),
                ("alert_events", ALERT_STATE_COLUMNS, rows.alert_states),
                ("detections", DETECTION_COLUMNS, rows.detections),
            ):
                fresh = self._not_stored(table, columns, batch) if table in _ROLLED_UP else batch
                if fresh:
                    self.client.insert(table, fresh, column_names=columns)

    def _not_stored(self, table: str, columns: list[str], batch: list[list]) -> list[list]:
        if not batch:
            return batch
        id_column = _ROLLED_UP[table]
        key, ts = columns.index(id_column), columns.index("ts")
        # Both copies may come in the same pull: keep the first of each.
        batch = list({row[key]: row for row in reversed(batch)}.values())[::-1]
        times = [row[ts] for row in batch]
        # Each table is ordered by time first: the time range keeps the look-up to a few granules.
        found = self.client.query(
            f"SELECT {id_column} FROM {table} WHERE ts >= fromUnixTimestamp64Nano({{lo:Int64}}) "
            f"AND ts <= fromUnixTimestamp64Nano({{hi:Int64}}) AND {id_column} IN {{ids:Array(String)}}",
            parameters={"lo": min(times), "hi": max(times), "ids": [row[key] for row in batch]},
        ).result_rows
        if not found:
            return batch
        stored = {row[0] for row in found}
        return [row for row in batch if row[key] not in stored]

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

    def close(self) -> None:
        self.client.close()
