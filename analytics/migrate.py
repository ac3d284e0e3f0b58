"""Ordered SQL migrations, the same SQL on chdb and on a ClickHouse server."""

from __future__ import annotations

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

MIGRATIONS = Path(__file__).parent / "migrations"


def statements(sql: str) -> list[str]:
    sql = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def migrate(client: Client) -> list[str]:
    """Apply migrations not applied yet; returns the names applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY name"
    )
    done = {row[0] for row in client.query("SELECT name FROM schema_migrations").result_rows}
    applied = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name in done:
            continue
        for stmt in statements(path.read_text()):
            client.command(stmt)
        client.insert("schema_migrations", [[path.name]], column_names=["name"])
        applied.append(path.name)
    return applied
