"""/admin/v1/usage: what a tenant's keys spent (recorded in ClickHouse) and
where each budget stands now (its counter)."""

from __future__ import annotations

import datetime as dt

from litestar import Controller, get

from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import BudgetStanding, Id, SpendRow, UsageOut
from schemas.errors import InvalidRequest
from services import control, pricing, quota
from services.control import Actor


def _usd(pico: int) -> str:
    return format(pricing.pico_to_usd(pico).normalize(), "f")


class Usage(Controller):
    path = "/usage"
    tags = ["usage"]

    @get("/", responses=ERROR_RESPONSES)
    async def usage(
        self, actor: Actor, store: ControlStore, tenant: Id | None = None, since: dt.datetime | None = None
    ) -> UsageOut:
        """Spend per key since ``since`` (default: the start of this UTC month),
        and the budgets' standing. A tenant admin sees its own tenant only."""
        if not actor.is_gateway_admin:
            tenant = control.tenant_asked_for(actor, tenant)
        now = now_ms()
        if since is None:
            today = dt.datetime.now(dt.UTC)
            since = dt.datetime(today.year, today.month, 1, tzinfo=dt.UTC)
        since_ns = control.ms_of(since) * 1_000_000
        if not 0 <= since_ns < 2**63:
            raise InvalidRequest("since: give a time between 1970 and 2262.", code="invalid_time")
        rows = await store.recorded_spend(since_ns, tenant or "")
        spend = [
            SpendRow(
                tenant=r["tenant_id"],
                key=r["key_id"],
                requests=int(r["requests"]),
                tokens=int(r["tokens"]),
                cost_usd=_usd(int(r["cost_pico_usd"])),
            )
            for r in rows
            if control.can_see(actor, r["tenant_id"])
        ]
        budgets = await budget_standings(store, actor, tenant, now)
        return UsageOut(since=since, spend=spend, budgets=budgets)


async def budget_standings(store: ControlStore, actor: Actor, tenant: str | None, now: int) -> list[BudgetStanding]:
    """Every budget the actor may see (of ``tenant`` only, if given), as its counter stands now."""
    budgets = []
    records = [("tenant", t.id, t.id, t.budget) for t in store.tenants.all()]
    records += [("key", k.id, k.tenant_id, k.budget) for k in store.keys.all()]
    for scope, record_id, tenant_id, budget in sorted(records, key=lambda r: (r[2], r[0], r[1])):
        if budget is None or not control.can_see(actor, tenant_id) or (tenant and tenant_id != tenant):
            continue
        subject, reset_ms = quota.spend_counter(scope, record_id, budget, now)
        committed = await store.committed(subject)
        budgets.append(
            BudgetStanding(
                scope=scope,  # type: ignore[arg-type]
                id=record_id,
                period=budget.period,
                limit_usd=_usd(budget.limit_pico_usd),
                committed_usd=_usd(committed),
                remaining_usd=_usd(max(0, budget.limit_pico_usd - committed)),
                resets_at=control.time_of(now + reset_ms) if reset_ms else None,
            )
        )
    return budgets
