"""/admin/v1/keys: create (the secret is shown once), list, read, change,
rotate with a grace period, disable, delete."""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, patch, post
from msgspec import UNSET

from ingress.admin import views
from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import Deleted, Id, KeyCreate, KeyOut, KeyRotate, KeyUpdate, KeyWithSecret
from schemas.control import ApiKey
from schemas.errors import InvalidRequest
from services import control
from services.control import Actor


def _last_used(store: ControlStore, key_id: str) -> int:
    return store.key_usage.items.get(key_id, 0)


class Keys(Controller):
    path = "/keys"
    tags = ["keys"]

    async def _visible(self, key_id: str, actor: Actor, store: ControlStore) -> tuple[ApiKey, int]:
        record, revision = await store.keys.get(key_id)
        control.require_visible(actor, record.tenant_id, "key", key_id)
        return record, revision

    @post("/", responses=ERROR_RESPONSES)
    async def create_key(self, data: KeyCreate, actor: Actor, store: ControlStore) -> KeyWithSecret:
        tenant_id = control.tenant_asked_for(actor, data.tenant)
        control.check_role_grant(actor, data.role)
        await store.tenants.get(tenant_id)  # 404 for a tenant that does not exist
        now = now_ms()
        expires = control.ms_of(data.expires_at)
        if expires and expires <= now:
            raise InvalidRequest("expires_at is in the past.", code="invalid_time")
        record, secret = control.new_key_record(
            ApiKey(
                id="",
                tenant_id=tenant_id,
                role=data.role,
                name=data.name,
                models=data.models,
                limits=views.limits_in(data.limits),
                budget=views.budget_in(data.budget),
                metadata=data.metadata,
                expires_at_ms=expires,
                may_pin=data.may_pin,
                mcp_tools=data.mcp_tools,
            ),
            now,
        )
        await store.keys.create(record.id, record, actor)
        return views.key_with_secret(record, secret, now)

    @get("/", responses=ERROR_RESPONSES)
    async def list_keys(self, actor: Actor, store: ControlStore, tenant: Id | None = None) -> list[KeyOut]:
        now = now_ms()
        keys = [
            k
            for k in store.keys.all()
            if control.can_see(actor, k.tenant_id) and (tenant is None or k.tenant_id == tenant)
        ]
        return [views.key_out(k, _last_used(store, k.id), now) for k in sorted(keys, key=lambda k: k.id)]

    @get("/{key_id:str}", responses=ERROR_RESPONSES)
    async def get_key(self, key_id: Id, actor: Actor, store: ControlStore) -> KeyOut:
        record, _ = await self._visible(key_id, actor, store)
        return views.key_out(record, _last_used(store, key_id), now_ms())

    @patch("/{key_id:str}", responses=ERROR_RESPONSES)
    async def update_key(self, key_id: Id, data: KeyUpdate, actor: Actor, store: ControlStore) -> KeyOut:
        before, revision = await self._visible(key_id, actor, store)
        control.require_api_owned(before.owner, "key", key_id)
        changes: dict = {}
        for field in ("name", "models", "metadata", "disabled", "may_pin", "mcp_tools"):
            value = getattr(data, field)
            if value is not UNSET:
                changes[field] = value
        if data.limits is not UNSET:
            changes["limits"] = views.limits_in(data.limits)
        if data.budget is not UNSET:
            changes["budget"] = views.budget_in(data.budget)
        if data.expires_at is not UNSET:
            changes["expires_at_ms"] = control.ms_of(data.expires_at)
        after = msgspec.structs.replace(before, **changes)
        if after != before:
            action = "disable" if changes.get("disabled") and not before.disabled else "update"
            await store.keys.replace(key_id, after, revision, actor, action, before)
        return views.key_out(after, _last_used(store, key_id), now_ms())

    @post("/{key_id:str}/rotate", status_code=200, responses=ERROR_RESPONSES)
    async def rotate_key(self, key_id: Id, data: KeyRotate, actor: Actor, store: ControlStore) -> KeyWithSecret:
        before, revision = await self._visible(key_id, actor, store)
        control.require_api_owned(before.owner, "key", key_id)
        now = now_ms()
        after, secret = control.rotate(before, data.grace_seconds, now)
        await store.keys.replace(key_id, after, revision, actor, "rotate", before)
        return views.key_with_secret(after, secret, now)

    @post("/{key_id:str}/disable", status_code=200, responses=ERROR_RESPONSES)
    async def disable_key(self, key_id: Id, actor: Actor, store: ControlStore) -> KeyOut:
        before, revision = await self._visible(key_id, actor, store)
        control.require_api_owned(before.owner, "key", key_id)
        after = msgspec.structs.replace(before, disabled=True)
        if after != before:
            await store.keys.replace(key_id, after, revision, actor, "disable", before)
        return views.key_out(after, _last_used(store, key_id), now_ms())

    @delete("/{key_id:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_key(self, key_id: Id, actor: Actor, store: ControlStore) -> Deleted:
        before, revision = await self._visible(key_id, actor, store)
        control.require_api_owned(before.owner, "key", key_id)
        if before.id == actor.key_id:
            raise InvalidRequest("A key cannot delete itself.", code="self_delete")
        await store.keys.delete(key_id, revision, actor, before)
        return Deleted(id=key_id)
