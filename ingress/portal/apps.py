"""Apps and their keys: ``/portal/apps``. A developer makes an app, then
keys in it; a new or rotated key's secret is shown once, on the page the
form leads to (``.../keys/<id>/secret``: POST/redirect/GET through a
one-time slot, ``ingress.portal.once``; a reload says it was shown, and
makes no other key). The record keeps only its SHA-256. Rotation keeps the
old secret working for the chosen grace; revoking disables the key. A form
given wrong values is shown again with what was wrong (400).

Keys are written through the control store, as the admin API writes them
(revision-checked, audited under the person's user id); the rules are
``services.portal_apps``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from ingress.portal import once, views
from ingress.portal.forms import (
    FormError,
    apps_of,
    back_to,
    email_of,
    form_error,
    is_inline,
    kept,
    now_ms,
    people_of,
    posted,
    signed_in,
    store_of,
    when,
)
from schemas.control import ApiKey
from schemas.errors import GatewayError, InvalidRequest, RecordNotFound
from schemas.people import App
from services import control, portal_apps
from services.portal_scope import Who

APPS = f"{views.PREFIX}/apps"
NAV = [views.NavItem("Apps and keys", APPS, order=20)]
_DONE = {"created": "App created.", "revoked": "Key revoked: every secret of it is refused from now on."}
_MAX_ID = 64


def _id(value: str, kind: str) -> str:
    # A path segment is caller input: a bounded id or nothing found.
    if not 1 <= len(value) <= _MAX_ID:
        raise RecordNotFound(f"No {kind} {value[:_MAX_ID]!r}.")
    return value


def _app(request: Request, who: Who, app_id: str) -> App:
    return portal_apps.require_app(who, apps_of(request).mirror.items.get(_id(app_id, "app")), app_id)


def _key_row(key: ApiKey, last_used: int, now: int) -> dict[str, Any]:
    grace = control.grace_ends_ms(key, now)
    state = "revoked" if key.disabled else ("expired" if key.expires_at_ms and key.expires_at_ms <= now else "active")
    return {
        "key": key,
        "state": state,
        "created": when(key.created_at_ms),
        "last_used": when(last_used),
        "grace_until": when(grace),
    }


def _apps_page(request: Request, person: Any, who: Who, *, status: int = 200, **context: Any) -> Response:
    apps = portal_apps.visible_apps(who, apps_of(request).mirror.items.values())
    keys = store_of(request).keys.all()
    rows = [{"app": a, "keys": len(portal_apps.keys_of(a, keys)), "created": when(a.created_at_ms)} for a in apps]
    done = _DONE.get(request.query_params.get("done", ""), "")
    return views.page(request, "apps.html", person, status=status, rows=rows, done=done, **context)


@get("/apps", include_in_schema=False)
async def list_apps(request: Request) -> Response:
    person, who = await signed_in(request)
    return _apps_page(request, person, who)


@post("/apps", include_in_schema=False, status_code=303)
async def create_app(request: Request) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    try:
        app = portal_apps.new_app(who, form.get("name", ""), form.get("description", ""), now_ms())
        await apps_of(request).create(app.id, app, who.actor())
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        field = "description" if exc.message.startswith("description") else "name"
        wrong = form_error("new-app", exc, field)
        return _apps_page(request, person, who, status=exc.status, form_error=wrong, values=kept(form))
    return back_to(f"{APPS}/{app.id}", "created")


def _app_page(request: Request, person: Any, who: Who, app: App, *, status: int = 200, **context: Any) -> Response:
    store = store_of(request)
    now = now_ms()
    keys = [_key_row(k, store.key_usage.items.get(k.id, 0), now) for k in portal_apps.keys_of(app, store.keys.all())]
    return views.page(
        request,
        "app.html",
        person,
        status=status,
        app=app,
        keys=keys,
        owner=email_of(people_of(request), app.user_id),
        is_owner=app.user_id == who.user_id,
        grace_choices=portal_apps.GRACE_CHOICES,
        created=when(app.created_at_ms),
        done=_DONE.get(request.query_params.get("done", ""), ""),
        **context,
    )


@get("/apps/{app_id:str}", include_in_schema=False)
async def show_app(request: Request, app_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    return _app_page(request, person, who, _app(request, who, app_id))


def _secret_href(app: App, key: ApiKey) -> str:
    return f"{APPS}/{app.id}/keys/{key.id}/secret"


async def _shown_once(request: Request, person: Any, app: App, key: ApiKey, secret: str, rotated: bool) -> Response:
    """Keep the secret for this browser's next page, and lead there."""
    await once.keep_for(request, person, f"key:{key.id}", {"secret": secret, "rotated": "1" if rotated else ""})
    return back_to(_secret_href(app, key))


@post("/apps/{app_id:str}/keys", include_in_schema=False, status_code=303)
async def create_key(request: Request, app_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    app = _app(request, who, app_id)
    portal_apps.require_owner(who, app)
    try:
        key, secret = portal_apps.new_app_key(app, form.get("name", ""), now_ms())
        await store_of(request).keys.create(key.id, key, who.actor())
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = FormError("new-key", exc.message, "name")
        return _app_page(request, person, who, app, status=exc.status, form_error=wrong, values=kept(form))
    return await _shown_once(request, person, app, key, secret, rotated=False)


@get("/apps/{app_id:str}/keys/{key_id:str}/secret", include_in_schema=False)
async def key_secret(request: Request, app_id: FromPath[str], key_id: FromPath[str]) -> Response:
    """A new or rotated key's secret, the first time this page is asked for
    by the browser that made it; after that, that it was shown."""
    person, who = await signed_in(request)
    app = _app(request, who, app_id)
    try:
        # Read from the bucket: the key may be newer than this replica's copy.
        record, _ = await store_of(request).keys.get(_id(key_id, "key"))
    except RecordNotFound:
        record = None
    key = portal_apps.require_key(app, record, key_id)
    shown = await once.take_for(request, person, f"key:{key.id}")
    return views.page(
        request,
        "key_secret.html",
        person,
        app=app,
        key=key,
        secret=shown["secret"] if shown else "",
        rotated=bool(shown and shown.get("rotated")),
        grace_until=when(control.grace_ends_ms(key, now_ms())),
    )


async def _app_key(request: Request, who: Who, app_id: str, key_id: str) -> tuple[App, ApiKey, int]:
    app = _app(request, who, app_id)
    keys = store_of(request).keys
    # The revision is read from the bucket: a change made meanwhile elsewhere is a conflict, not lost.
    if not portal_apps.keys_of(app, [k for k in keys.all() if k.id == _id(key_id, "key")]):
        raise RecordNotFound(f"No key {key_id!r} in this app.")
    record, revision = await keys.get(key_id)
    return app, portal_apps.require_key(app, record, key_id), revision


@post("/apps/{app_id:str}/keys/{key_id:str}/rotate", include_in_schema=False, status_code=303)
async def rotate_key(request: Request, app_id: FromPath[str], key_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    app, before, revision = await _app_key(request, who, app_id, key_id)
    portal_apps.require_owner(who, app)
    grace = form.get("grace_seconds", "0")
    if not grace.isdigit() or len(grace) > 9:
        raise InvalidRequest("grace_seconds must be a whole number of seconds.", code="invalid_grace")
    after, secret = portal_apps.rotated(before, int(grace), now_ms())
    await store_of(request).keys.replace(key_id, after, revision, who.actor(), "rotate", before)
    return await _shown_once(request, person, app, after, secret, rotated=True)


@post("/apps/{app_id:str}/keys/{key_id:str}/revoke", include_in_schema=False, status_code=303)
async def revoke_key(request: Request, app_id: FromPath[str], key_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    await posted(request, person)
    app, before, revision = await _app_key(request, who, app_id, key_id)
    portal_apps.require_revoker(who, app)
    after = portal_apps.revoked(before)
    if after != before:
        await store_of(request).keys.replace(key_id, after, revision, who.actor(), "disable", before)
    return back_to(f"{APPS}/{app.id}", "revoked")


ROUTES = [list_apps, create_app, show_app, create_key, key_secret, rotate_key, revoke_key]
