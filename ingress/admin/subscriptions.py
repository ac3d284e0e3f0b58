"""/admin/v1/subscriptions and /admin/v1/approval-rules: models that need a
gateway admin's approval before a tenant may call them."""

from __future__ import annotations

from litestar import Controller, delete, get, post

from ingress.admin import views
from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import (
    ApprovalRuleCreate,
    ApprovalRuleOut,
    Decision,
    Deleted,
    Id,
    SubscriptionCreate,
    SubscriptionOut,
)
from schemas.control import ApprovalRule, SubscriptionState
from schemas.errors import RecordConflict
from schemas.ids import new_id
from services import control
from services.control import Actor


class Subscriptions(Controller):
    path = "/subscriptions"
    tags = ["subscriptions"]

    @post("/", responses=ERROR_RESPONSES)
    async def create_subscription(self, data: SubscriptionCreate, actor: Actor, store: ControlStore) -> SubscriptionOut:
        tenant_id = control.tenant_asked_for(actor, data.tenant)
        await store.tenants.get(tenant_id)
        sub = control.new_subscription(tenant_id, data.model, actor.key_id, now_ms(), store.subscriptions.all())
        await store.subscriptions.create(sub.id, sub, actor)
        return views.subscription_out(sub)

    @get("/", responses=ERROR_RESPONSES)
    async def list_subscriptions(
        self, actor: Actor, store: ControlStore, tenant: Id | None = None, status: SubscriptionState | None = None
    ) -> list[SubscriptionOut]:
        subs = [
            s
            for s in store.subscriptions.all()
            if control.can_see(actor, s.tenant_id)
            and (tenant is None or s.tenant_id == tenant)
            and (status is None or s.state == status)
        ]
        return [views.subscription_out(s) for s in sorted(subs, key=lambda s: s.id)]

    @get("/{subscription_id:str}", responses=ERROR_RESPONSES)
    async def get_subscription(self, subscription_id: Id, actor: Actor, store: ControlStore) -> SubscriptionOut:
        sub, _ = await store.subscriptions.get(subscription_id)
        control.require_visible(actor, sub.tenant_id, "subscription", subscription_id)
        return views.subscription_out(sub)

    async def _decide(
        self, subscription_id: str, decision: str, reason: str, actor: Actor, store: ControlStore
    ) -> SubscriptionOut:
        before, revision = await store.subscriptions.get(subscription_id)
        control.require_visible(actor, before.tenant_id, "subscription", subscription_id)
        if decision != "revoke":
            control.require_gateway_admin(actor, f"{decision} subscriptions")
        after = control.decided(before, decision, reason, actor.key_id, now_ms())
        await store.subscriptions.replace(subscription_id, after, revision, actor, decision, before)
        return views.subscription_out(after)

    @post("/{subscription_id:str}/approve", status_code=200, responses=ERROR_RESPONSES)
    async def approve(
        self, subscription_id: Id, actor: Actor, store: ControlStore, data: Decision | None = None
    ) -> SubscriptionOut:
        return await self._decide(subscription_id, "approve", (data or Decision()).reason, actor, store)

    @post("/{subscription_id:str}/reject", status_code=200, responses=ERROR_RESPONSES)
    async def reject(
        self, subscription_id: Id, actor: Actor, store: ControlStore, data: Decision | None = None
    ) -> SubscriptionOut:
        return await self._decide(subscription_id, "reject", (data or Decision()).reason, actor, store)

    @post("/{subscription_id:str}/revoke", status_code=200, responses=ERROR_RESPONSES)
    async def revoke(
        self, subscription_id: Id, actor: Actor, store: ControlStore, data: Decision | None = None
    ) -> SubscriptionOut:
        return await self._decide(subscription_id, "revoke", (data or Decision()).reason, actor, store)


class ApprovalRules(Controller):
    path = "/approval-rules"
    tags = ["subscriptions"]

    @post("/", responses=ERROR_RESPONSES)
    async def create_rule(self, data: ApprovalRuleCreate, actor: Actor, store: ControlStore) -> ApprovalRuleOut:
        control.require_gateway_admin(actor, "decide which models need approval")
        if any(r.pattern == data.pattern for r in store.approval_rules.all()):
            raise RecordConflict(f"Models matching {data.pattern!r} need approval already.")
        rule_id = f"rule_{new_id().lower()}"
        rule = ApprovalRule(pattern=data.pattern, created_at_ms=now_ms())
        await store.approval_rules.create(rule_id, rule, actor)
        return views.approval_rule_out(rule_id, rule)

    @get("/", responses=ERROR_RESPONSES)
    async def list_rules(self, actor: Actor, store: ControlStore) -> list[ApprovalRuleOut]:
        rules = store.approval_rules.mirror.items
        return [views.approval_rule_out(rid, r) for rid, r in sorted(rules.items())]

    @delete("/{rule_id:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_rule(self, rule_id: Id, actor: Actor, store: ControlStore) -> Deleted:
        control.require_gateway_admin(actor, "decide which models need approval")
        before, revision = await store.approval_rules.get(rule_id)
        await store.approval_rules.delete(rule_id, revision, actor, before)
        return Deleted(id=rule_id)
