"""The ClickHouse side: one client, inserts and queries, chdb or server alike."""

from __future__ import annotations

import threading

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from analytics import migrate
from analytics.rows import (
    API_CALL_COLUMNS,
    ATTEMPT_COLUMNS,
    AUDIT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    REQUEST_COLUMNS,
    Rows,
)


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
        with self._lock:
            if rows.events:
                self.client.insert("events", rows.events, column_names=EVENT_COLUMNS)
            if rows.requests:
                self.client.insert("requests", rows.requests, column_names=REQUEST_COLUMNS)
            if rows.attempts:
                self.client.insert("attempts", rows.attempts, column_names=ATTEMPT_COLUMNS)
            if rows.dead_letters:
                self.client.insert("dead_letters", rows.dead_letters, column_names=DEAD_LETTER_COLUMNS)
            if rows.audit:
                self.client.insert("audit", rows.audit, column_names=AUDIT_COLUMNS)
            if rows.api_calls:
                self.client.insert("api_calls", rows.api_calls, column_names=API_CALL_COLUMNS)

    def query(self, sql: str, parameters: dict | None = None) -> tuple[list[str], list[tuple]]:
        with self._lock:
            result = self.client.query(sql, parameters=parameters or {})
            return list(result.column_names), result.result_rows

    def close(self) -> None:
        self.client.close()
