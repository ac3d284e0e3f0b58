"""What the dashboard shows, gathered from named queries (rollups, except
the list of recent requests) and the budget counters. A tenant admin's view
is narrowed to its tenant here, on the server, whatever the page asks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from ingress.admin.store import ControlStore
from ingress.admin.usage import budget_standings
from schemas.errors import RecordNotFound
from services.control import Actor

# panel -> (named query, which window parameter it takes)
PANELS = {
    "per_minute": ("per_minute", "minutes"),
    "cost_by_tenant": ("cost_by_tenant", "hours"),
    "cost_by_model": ("cost_by_model", "hours"),
    "by_api": ("by_api", "hours"),
    "tools": ("tools_by_server", "hours"),
    "rest": ("rest_calls", "hours"),
    "batches": ("batches", "hours"),
    "latency": ("latency_by_model", "hours"),
    "cache": ("cache_savings", "hours"),
    "recent": ("recent_requests", "minutes"),
    "alerts": ("alert_states", "hours"),
}


def _records(columns: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=True)) for row in rows]


def scope_of(actor: Actor) -> str:
    """The tenant the actor's view is narrowed to ("" for a gateway admin: every tenant)."""
    return "" if actor.is_gateway_admin else actor.tenant_id


async def gather(store: ControlStore, actor: Actor, minutes: int, hours: int) -> dict[str, Any]:
    tenant = scope_of(actor)
    window = {"minutes": minutes, "hours": hours}

    async def one(query: str, param: str) -> list[dict[str, Any]]:
        result = await store.named_query(query, {param: window[param], "tenant_id": tenant})
        return _records(result.columns, result.rows)

    names = list(PANELS)
    found = await asyncio.gather(*(one(*PANELS[n]) for n in names))
    budgets = await budget_standings(store, actor, tenant or None, int(time.time() * 1000))
    return {
        "tenant": tenant,
        "role": actor.role,
        "generated_at_ms": int(time.time() * 1000),
        **dict(zip(names, found, strict=True)),
        "budgets": msgspec.to_builtins(budgets),
    }


async def request_view(store: ControlStore, actor: Actor, request_id: str) -> dict[str, Any]:
    """One request: its row, stages, upstream tries, call log and (for a
    prompt-API call) children. Another tenant's request is "not found", as
    one that does not exist: ids are not confirmed to strangers."""
    found = await store.named_query("request", {"request_id": request_id})
    rows = _records(found.columns, found.rows)
    tenant = scope_of(actor)
    if not rows or (tenant and rows[0]["tenant_id"] != tenant):
        raise RecordNotFound(f"No request {request_id!r} in this dashboard's view.", code="request_not_found")
    stages, attempts, logs, children = await asyncio.gather(
        store.named_query("stages", {"request_id": request_id}),
        store.named_query("attempts", {"request_id": request_id}),
        store.named_query("call_logs", {"request_id": request_id, "tenant_id": rows[0]["tenant_id"], "chars": 300_000}),
        store.named_query("children", {"parent_id": request_id}),
    )
    return {
        "request": rows[0],
        "stages": _records(stages.columns, stages.rows),
        "attempts": _records(attempts.columns, attempts.rows),
        "call_log": next(iter(_records(logs.columns, logs.rows)), None),
        "children": _records(children.columns, children.rows),
    }
