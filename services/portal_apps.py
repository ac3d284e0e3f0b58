"""A developer's apps and their API keys, without I/O.

An app belongs to the person who made it and to their tenant; its keys are
ordinary caller keys of that tenant carrying the app's id. A developer sees
and changes their own apps; a tenant admin every app of the tenant; a
gateway admin every app. Keys are made, rotated and revoked by the admin
API's own rules (``services.control``): one place decides what a new secret
and a grace period are.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas.control import ApiKey
from schemas.errors import PermissionDenied, RecordNotFound
from schemas.ids import new_id
from schemas.people import App
from services import control
from services.portal_scope import Who, clean_text, require_tenant

MAX_NAME = 64
MAX_DESCRIPTION = 500
# The grace periods the rotate form offers, in seconds (the admin API's
# limit, ``control.MAX_GRACE_S``, holds for any other value).
GRACE_CHOICES: tuple[tuple[int, str], ...] = (
    (0, "none: the old secret stops at once"),
    (3600, "1 hour"),
    (86_400, "1 day"),
    (7 * 86_400, "7 days"),
)


def new_app(who: Who, name: str, description: str, now_ms: int) -> App:
    tenant_id = require_tenant(who, "make apps (they belong to a tenant)")
    return App(
        id=f"app_{new_id().lower()}",
        tenant_id=tenant_id,
        user_id=who.user_id,
        name=clean_text(name, "name", MAX_NAME, required=True),
        description=clean_text(description, "description", MAX_DESCRIPTION, lines=True),
        created_at_ms=now_ms,
    )


def sees_app(who: Who, app: App) -> bool:
    if who.is_gateway_admin:
        return True
    if not who.sees_tenant(app.tenant_id):
        return False
    return who.is_admin or app.user_id == who.user_id


def require_app(who: Who, app: App | None, app_id: str) -> App:
    """The app, if the person may see it; missing otherwise, as a missing one is."""
    if app is None or not sees_app(who, app):
        raise RecordNotFound(f"No app {app_id!r}.")
    return app


def require_owner(who: Who, app: App) -> None:
    """Keys are made and rotated by the app's owner only: a new secret is
    shown to whoever makes it, and it is the owner's to hold."""
    if app.user_id != who.user_id:
        raise PermissionDenied("Only the app's owner makes and rotates its keys.", code="not_the_owner")


def require_revoker(who: Who, app: App) -> None:
    """The owner, or an admin who sees the app (a tenant admin stops a key
    of someone who left), may revoke its keys."""
    if app.user_id != who.user_id and not who.is_admin:
        raise PermissionDenied("Only the app's owner or an admin revokes its keys.", code="not_the_owner")


def visible_apps(who: Who, apps: Iterable[App]) -> list[App]:
    return sorted((a for a in apps if sees_app(who, a)), key=lambda a: (a.tenant_id, a.name.lower(), a.id))


def keys_of(app: App, keys: Iterable[ApiKey]) -> list[ApiKey]:
    """The app's keys (of its tenant only: an app id on another tenant's key
    would be a forged record, never shown), oldest first."""
    return sorted(
        (k for k in keys if k.app_id == app.id and k.tenant_id == app.tenant_id), key=lambda k: (k.created_at_ms, k.id)
    )


def require_key(app: App, key: ApiKey | None, key_id: str) -> ApiKey:
    """The key, if it is one of the app's."""
    if key is None or key.app_id != app.id or key.tenant_id != app.tenant_id:
        raise RecordNotFound(f"No key {key_id!r} in this app.")
    return key


def new_app_key(app: App, name: str, now_ms: int) -> tuple[ApiKey, str]:
    """A caller key of the app's tenant, and its secret to show once."""
    draft = ApiKey(
        id="",
        tenant_id=app.tenant_id,
        role="caller",
        name=clean_text(name, "name", MAX_NAME, required=True),
        app_id=app.id,
    )
    return control.new_key_record(draft, now_ms)


def rotated(key: ApiKey, grace_s: int, now_ms: int) -> tuple[ApiKey, str]:
    control.require_api_owned(key.owner, "key", key.id)
    return control.rotate(key, grace_s, now_ms)


def revoked(key: ApiKey) -> ApiKey:
    """The key disabled: every secret of it is refused from now on; its
    record stays, so its calls still count in the app's usage."""
    control.require_api_owned(key.owner, "key", key.id)
    return msgspec.structs.replace(key, disabled=True)


def key_ids_of(who: Who, apps: Iterable[App], keys: Iterable[ApiKey]) -> list[str]:
    """The ids of every key of the apps the person sees (their usage)."""
    mine = {a.id: a for a in visible_apps(who, apps)}
    return sorted(k.id for k in keys if k.app_id in mine and k.tenant_id == mine[k.app_id].tenant_id)
