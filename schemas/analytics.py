"""Named analytics queries over the bus (``sluice.v1.analytics.query``),
in JSON: tools need no ClickHouse driver."""

from __future__ import annotations

import msgspec


class QueryRequest(msgspec.Struct):
    name: str
    params: dict[str, int | str] = {}


class QueryResult(msgspec.Struct):
    columns: list[str] = []
    rows: list[list] = []
    error: str | None = None
