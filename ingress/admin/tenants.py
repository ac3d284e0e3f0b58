"""/admin/v1/tenants: gateway admins manage tenants, their limits and budgets;
a tenant admin reads its own."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import UNSET

from ingress.admin import views
from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import Deleted, Id, ModerationIn, ModerationOut, TenantCreate, TenantOut, TenantUpdate
from schemas.control import PrivacyRules, Tenant, TenantModeration
from schemas.errors import InvalidRequest, RecordConflict
from services import control, privacy
from services.control import Actor
from services.detectors.custom import check_pattern


def _checked(rules: PrivacyRules | None) -> PrivacyRules | None:
    for c in rules.custom if rules is not None else ():
        check_pattern(c.name, c.pattern)  # 400 invalid_pattern unless RE2 runs it
    if rules is not None and (problem := privacy.problem(rules)):
        raise InvalidRequest(f"privacy: {problem}", code="invalid_privacy_rules")
    return rules


def _moderation(given: ModerationIn | None, store: ControlStore) -> TenantModeration | None:
    """The setting as kept; its model must be served here (a group or an
    alias: whether its mode is moderation, routing checks per request, as
    the models may change after)."""
    if given is None:
        return None
    if not store.model_known(given.model):
        raise InvalidRequest(
            f"moderation: model {given.model!r} is not a configured model.", code="invalid_moderation_model"
        )
    return TenantModeration(model=given.model, action=given.action, apis=list(given.apis))


def _out(t: Tenant) -> TenantOut:
    m = t.moderation
    shown = ModerationOut(model=m.model, action=m.action, apis=m.apis) if m is not None else None
    return msgspec.structs.replace(views.tenant_out(t), moderation=shown)


class Tenants(Controller):
    path = "/tenants"
    tags = ["tenants"]

    @post("/", responses=ERROR_RESPONSES)
    async def create_tenant(self, data: TenantCreate, actor: Actor, store: ControlStore) -> TenantOut:
        control.require_gateway_admin(actor, "create tenants")
        tenant = Tenant(
            id=data.id,
            limits=views.limits_in(data.limits),
            budget=views.budget_in(data.budget),
            metadata=data.metadata,
            cache=views.cache_in(data.cache),
            job_concurrency=data.job_concurrency,
            batch_concurrency=data.batch_concurrency,
            files_max_bytes=data.files_max_bytes,
            files_total_bytes=data.files_total_bytes,
            files_max_count=data.files_max_count,
            call_log_max_bytes=data.call_log_max_bytes,
            privacy=_checked(data.privacy),
            mcp_tools=data.mcp_tools,
            mcp_safety=data.mcp_safety,
            moderation=_moderation(data.moderation, store),
            created_at_ms=now_ms(),
            owner="api",
        )
        await store.tenants.create(data.id, tenant, actor)
        return _out(tenant)

    @get("/", responses=ERROR_RESPONSES)
    async def list_tenants(self, actor: Actor, store: ControlStore) -> list[TenantOut]:
        mine = [t for t in store.tenants.all() if control.can_see(actor, t.id)]
        return [_out(t) for t in sorted(mine, key=lambda t: t.id)]

    @get("/{tenant_id:str}", responses=ERROR_RESPONSES)
    async def get_tenant(self, tenant_id: Id, actor: Actor, store: ControlStore) -> TenantOut:
        control.require_visible(actor, tenant_id, "tenant", tenant_id)
        tenant, _ = await store.tenants.get(tenant_id)
        return _out(tenant)

    @patch("/{tenant_id:str}", responses=ERROR_RESPONSES)
    async def update_tenant(self, tenant_id: Id, data: TenantUpdate, actor: Actor, store: ControlStore) -> TenantOut:
        control.require_visible(actor, tenant_id, "tenant", tenant_id)
        control.require_gateway_admin(actor, "change a tenant's limits, budget, metadata, cache or moderation")
        before, revision = await store.tenants.get(tenant_id)
        control.require_api_owned(before.owner, "tenant", tenant_id)
        changes: dict = {}
        if data.limits is not UNSET:
            changes["limits"] = views.limits_in(data.limits)
        if data.budget is not UNSET:
            changes["budget"] = views.budget_in(data.budget)
        if data.metadata is not UNSET:
            changes["metadata"] = data.metadata
        if data.cache is not UNSET:
            changes["cache"] = views.cache_in(data.cache)
        if data.job_concurrency is not UNSET:
            changes["job_concurrency"] = data.job_concurrency
        if data.batch_concurrency is not UNSET:
            changes["batch_concurrency"] = data.batch_concurrency
        if data.files_max_bytes is not UNSET:
            changes["files_max_bytes"] = data.files_max_bytes
        if data.files_total_bytes is not UNSET:
            changes["files_total_bytes"] = data.files_total_bytes
        if data.files_max_count is not UNSET:
            changes["files_max_count"] = data.files_max_count
        if data.call_log_max_bytes is not UNSET:
            changes["call_log_max_bytes"] = data.call_log_max_bytes
        if data.mcp_tools is not UNSET:
            changes["mcp_tools"] = data.mcp_tools
        if data.mcp_safety is not UNSET:
            changes["mcp_safety"] = data.mcp_safety
        if data.moderation is not UNSET:
            changes["moderation"] = _moderation(data.moderation, store)
        if data.privacy is not UNSET:
            rules = _checked(data.privacy)
            if rules is not None:  # versions only go up, so a detection names the rules it was made under
                last = before.privacy.version if before.privacy is not None else 0
                rules = msgspec.structs.replace(rules, version=max(rules.version, last + 1))
            changes["privacy"] = rules
        after = msgspec.structs.replace(before, **changes)
        if after != before:
            await store.tenants.replace(tenant_id, after, revision, actor, "update", before)
        return _out(after)

    @delete("/{tenant_id:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_tenant(self, tenant_id: Id, actor: Actor, store: ControlStore) -> Deleted:
        control.require_visible(actor, tenant_id, "tenant", tenant_id)
        control.require_gateway_admin(actor, "delete tenants")
        before, revision = await store.tenants.get(tenant_id)
        control.require_api_owned(before.owner, "tenant", tenant_id)
        if any(k.tenant_id == tenant_id for k in store.keys.all()):
            raise RecordConflict(f"Tenant {tenant_id!r} still has keys: delete them first.")
        await store.tenants.delete(tenant_id, revision, actor, before)
        return Deleted(id=tenant_id)
