"""Named analytics queries over the bus (``sluice.v1.analytics.query``),
and re-costing (``sluice.v1.analytics.recost``), in JSON: tools need no
ClickHouse driver."""

from __future__ import annotations

import msgspec


class QueryRequest(msgspec.Struct):
    name: str
    params: dict[str, int | str] = {}


class QueryResult(msgspec.Struct):
    columns: list[str] = []
    rows: list[list] = []
    error: str | None = None


class RecostRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Recompute the cost of the requests stored in [since, until) from the
    current catalog; ``dry_run`` only says what would change."""

    since_ns: int
    until_ns: int = 2**63 - 1
    model: str = ""
    tenant_id: str = ""
    dry_run: bool = False


class RecostTenant(msgspec.Struct):
    tenant_id: str
    requests: int
    old_cost_pico_usd: int
    new_cost_pico_usd: int


class RecostResult(msgspec.Struct):
    recost_id: str = ""
    tenants: list[RecostTenant] = []
    # Requests in the range left as they were: their deployment is no longer
    # configured, or its catalog model has no price.
    unpriced: int = 0
    error: str | None = None
