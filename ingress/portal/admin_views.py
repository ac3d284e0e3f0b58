"""The portal's admin views, ``/portal/admin/...``: tenants, users
(invitations, a new one-time link, disable and enable), approval rules,
and the lifecycle of every prompt API and REST service (REST services are
registered in ``ingress.portal.admin_services``). Gateway admins see and change
everything; a tenant admin sees their tenant's part (its tenant record and
people, whom they invite and disable) and reads the gateway-wide pages;
a developer gets none of them (403).

Every write goes through the stores the admin API uses (the control store;
the people's store for users), revision-checked and audited, under the
same rules (``services.control``, ``services.people.accounts``,
``services.portal_lifecycle``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath

from ingress.portal import once, views
from ingress.portal.forms import (
    FormError,
    apps_of,
    back_to,
    email_of,
    is_inline,
    kept,
    now_ms,
    people_of,
    posted,
    services_of,
    signed_in,
    store_of,
    when,
)
from schemas.admin import ApprovalRuleCreate, TenantCreate
from schemas.control import ApprovalRule, Tenant
from schemas.errors import GatewayError, InvalidRequest, RecordConflict, RecordNotFound
from schemas.ids import new_id
from schemas.rest import RestService
from services import portal_lifecycle, pricing
from services.people import accounts
from services.portal_scope import require_admin, require_gateway_admin

ADMIN = f"{views.PREFIX}/admin"
NAV = [views.NavItem("Admin", f"{ADMIN}/tenants", frozenset({"tenant_admin", "gateway_admin"}), order=60)]
_DONE = {
    "tenant": "Tenant created.",
    "rule": "Approval rule added.",
    "rule-deleted": "Approval rule removed.",
    "disabled": "User disabled: their sessions ended.",
    "enabled": "User enabled.",
    "moved": "Lifecycle changed.",
}
_MAX_ID = 128


def _done(request: Request) -> str:
    return _DONE.get(request.query_params.get("done", ""), "")


def _checked(data: dict[str, Any], schema: type[msgspec.Struct]) -> Any:
    """A form's fields held to the admin API's own input schema."""
    try:
        return msgspec.convert(data, schema)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), code="invalid_field") from None


def _page(request: Request, person: Any, template: str, section: str, *, status: int = 200, **context: Any) -> Response:
    return views.page(request, template, person, status=status, section=section, done=_done(request), **context)


# --- tenants -------------------------------------------------------------------


def _usd(pico: int) -> str:
    return format(pricing.pico_to_usd(pico).normalize(), "f")


@get("/admin/tenants", include_in_schema=False)
async def tenants(request: Request) -> Response:
    person, who = await signed_in(request)
    require_admin(who, "see tenants")
    store = store_of(request)
    people = people_of(request).values()
    apps = apps_of(request).mirror.items.values()
    keys = store.keys.all()
    subs = store.subscriptions.all()
    rows = []
    for t in sorted((t for t in store.tenants.all() if who.sees_tenant(t.id)), key=lambda t: t.id):
        rows.append(
            {
                "tenant": t,
                "users": sum(1 for u in people if u.tenant_id == t.id),
                "apps": sum(1 for a in apps if a.tenant_id == t.id),
                "keys": sum(1 for k in keys if k.tenant_id == t.id),
                "pending": sum(1 for s in subs if s.tenant_id == t.id and s.state == "pending"),
                "budget": f"{_usd(t.budget.limit_pico_usd)} USD per {t.budget.period}" if t.budget else "",
                "rpm": t.limits.rpm,
            }
        )
    return _page(request, person, "admin_tenants.html", "tenants", rows=rows)


@post("/admin/tenants", include_in_schema=False, status_code=303)
async def create_tenant(request: Request) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    require_gateway_admin(who, "create tenants")
    data: TenantCreate = _checked({"id": form.get("id", "").strip()}, TenantCreate)
    tenant = Tenant(id=data.id, created_at_ms=now_ms(), owner="api")
    await store_of(request).tenants.create(tenant.id, tenant, who.actor())
    return back_to(f"{ADMIN}/tenants", "tenant")


# --- users ---------------------------------------------------------------------


def _people_store(request: Request) -> Any:
    return request.app.state.gateway.people


def _users_page(request: Request, person: Any, who: Any, *, status: int = 200, **context: Any) -> Response:
    people = people_of(request)
    shown = sorted(
        (u for u in people.values() if who.is_gateway_admin or (u.tenant_id and u.tenant_id == who.tenant_id)),
        key=lambda u: (u.tenant_id, u.email),
    )
    rows = [
        {"user": u, "state": accounts.state_of(u), "invited_by": email_of(people, u.invited_by.removeprefix("user:"))}
        for u in shown
    ]
    tenant_ids = sorted(t.id for t in store_of(request).tenants.all()) if who.is_gateway_admin else [who.tenant_id]
    return _page(
        request, person, "admin_users.html", "users", status=status, rows=rows, tenant_ids=tenant_ids, **context
    )


@get("/admin/users", include_in_schema=False)
async def users(request: Request) -> Response:
    person, who = await signed_in(request)
    require_admin(who, "manage people")
    return _users_page(request, person, who)


# Which input of the invitation form an error of the people's rules is about.
_INVITE_FIELDS = {
    "invalid_email": "email",
    "user_exists": "email",
    "conflict": "email",
    "invalid_name": "name",
    "invalid_role": "role",
    "missing_tenant": "tenant",
}


@post("/admin/users", include_in_schema=False)
async def invite(request: Request) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    require_admin(who, "invite people")
    tenant_id = form.get("tenant", "") if who.is_gateway_admin else who.tenant_id
    try:
        invited = await _people_store(request).invite(
            form.get("email", ""),
            tenant_id,
            form.get("role", "developer"),
            person.actor,
            str(request.base_url).rstrip("/"),
            form.get("name", ""),
        )
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = FormError("invite", exc.message, _INVITE_FIELDS.get(exc.code, "email"))
        return _users_page(request, person, who, status=exc.status, form_error=wrong, values=kept(form))
    expires = when(invited.invitation.expires_at_ms)
    return _page(request, person, "admin_invited.html", "users", invited=invited, expires=expires)


def _user_id(user_id: str) -> str:
    # A path segment is caller input: a bounded id or nobody found.
    if not 1 <= len(user_id) <= _MAX_ID:
        raise RecordNotFound(f"No user {user_id[:_MAX_ID]!r}.")
    return user_id


def _link_href(user_id: str) -> str:
    return f"{ADMIN}/users/{user_id}/link"


@post("/admin/users/{user_id:str}/link", include_in_schema=False, status_code=303)
async def new_link(request: Request, user_id: FromPath[str]) -> Response:
    """A new one-time link for someone the admin sees (``PeopleStore.new_link``:
    an invitation again, or a password reset), shown once on the next page."""
    person, who = await signed_in(request)
    await posted(request, person)
    require_admin(who, "manage people")
    try:
        invited = await _people_store(request).new_link(
            _user_id(user_id), person.actor, str(request.base_url).rstrip("/")
        )
    except RecordConflict as exc:  # a disabled person: the list again, saying so
        wrong = FormError("users", exc.message)
        return _users_page(request, person, who, status=exc.status, form_error=wrong)
    shown = {
        "link": invited.link,
        "expires": when(invited.invitation.expires_at_ms),
        "mailed": "1" if invited.mailed else "",
    }
    await once.keep_for(request, person, f"link:{invited.user.id}", shown)
    return back_to(_link_href(invited.user.id))


@get("/admin/users/{user_id:str}/link", include_in_schema=False)
async def shown_link(request: Request, user_id: FromPath[str]) -> Response:
    """The link ``new_link`` made, the first time this browser asks; after
    that, that it was shown."""
    person, who = await signed_in(request)
    require_admin(who, "manage people")
    user = accounts.require_sees(person.actor, people_of(request).get(_user_id(user_id)), user_id)
    shown = await once.take_for(request, person, f"link:{user.id}")
    return _page(
        request,
        person,
        "admin_invited.html",
        "users",
        invited={"user": user, "link": shown["link"] if shown else "", "mailed": bool(shown and shown["mailed"])},
        expires=shown["expires"] if shown else "",
        again=True,
        reset=accounts.state_of(user) != "invited",
    )


async def _set_disabled(request: Request, user_id: str, disabled: bool) -> Response:
    person, who = await signed_in(request)
    await posted(request, person)
    require_admin(who, "manage people")
    _user_id(user_id)
    if user_id == who.user_id:
        raise InvalidRequest("You cannot disable or enable yourself.", code="self_change")
    action = "disable" if disabled else "enable"
    await _people_store(request).change_user(
        user_id, person.actor, action, lambda u: accounts.with_disabled(u, disabled)
    )
    return back_to(f"{ADMIN}/users", "disabled" if disabled else "enabled")


@post("/admin/users/{user_id:str}/disable", include_in_schema=False, status_code=303)
async def disable_user(request: Request, user_id: FromPath[str]) -> Response:
    return await _set_disabled(request, user_id, True)


@post("/admin/users/{user_id:str}/enable", include_in_schema=False, status_code=303)
async def enable_user(request: Request, user_id: FromPath[str]) -> Response:
    return await _set_disabled(request, user_id, False)


# --- approval rules ----------------------------------------------------------------


@get("/admin/approval-rules", include_in_schema=False)
async def approval_rules(request: Request) -> Response:
    person, who = await signed_in(request)
    require_admin(who, "see approval rules")
    rules = sorted(store_of(request).approval_rules.mirror.items.items(), key=lambda kv: kv[1].pattern)
    rows = [{"id": rid, "rule": r, "created": when(r.created_at_ms)} for rid, r in rules]
    return _page(request, person, "admin_rules.html", "rules", rows=rows)


@post("/admin/approval-rules", include_in_schema=False, status_code=303)
async def add_rule(request: Request) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    require_gateway_admin(who, "decide which models need approval")
    data: ApprovalRuleCreate = _checked({"pattern": form.get("pattern", "").strip()}, ApprovalRuleCreate)
    store = store_of(request)
    if any(r.pattern == data.pattern for r in store.approval_rules.all()):
        raise RecordConflict(f"Models matching {data.pattern!r} need approval already.")
    rule_id = f"rule_{new_id().lower()}"
    await store.approval_rules.create(rule_id, ApprovalRule(pattern=data.pattern, created_at_ms=now_ms()), who.actor())
    return back_to(f"{ADMIN}/approval-rules", "rule")


@post("/admin/approval-rules/{rule_id:str}/delete", include_in_schema=False, status_code=303)
async def delete_rule(request: Request, rule_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    await posted(request, person)
    require_gateway_admin(who, "decide which models need approval")
    if not 1 <= len(rule_id) <= _MAX_ID:
        raise RecordNotFound(f"No approval_rule {rule_id[:_MAX_ID]!r}.")
    store = store_of(request)
    before, revision = await store.approval_rules.get(rule_id)
    await store.approval_rules.delete(rule_id, revision, who.actor(), before)
    return back_to(f"{ADMIN}/approval-rules", "rule-deleted")


# --- lifecycle ---------------------------------------------------------------------


def _lifecycle_row(kind: str, record_id: str, title: str, owner: str, api: Any) -> dict[str, Any]:
    offered = portal_lifecycle.PROMPT_OFFERED if kind == "prompt" else portal_lifecycle.SERVICE_OFFERED
    return {
        "kind": kind,
        "id": record_id,
        "title": title,
        "state": api.state,
        "owner": owner,
        "successor": api.successor,
        "sunset": _day(api.sunset_at_ms),
        "deprecated": _day(api.deprecated_at_ms),
        "approval": api.requires_approval,
        "actions": offered[api.state] if owner == "api" else (),
    }


def _day(ms: int) -> str:
    return when(ms)[:10]


def _service_path(service: RestService) -> str:
    return f"/services/{service.slug}" + (f"/v{service.version}" if service.version > 1 else "")


@get("/admin/lifecycle", include_in_schema=False)
async def lifecycle(request: Request) -> Response:
    person, who = await signed_in(request)
    require_admin(who, "see the APIs' lifecycle")
    rows = [
        _lifecycle_row("prompt", p.name, f"/apis/{p.api.slug}", p.owner, p.api)
        for p in sorted(store_of(request).prompts.all(), key=lambda p: p.api.slug if p.api else "")
        if p.api is not None
    ]
    services = sorted(services_of(request).all(), key=lambda s: (s.slug, s.version))
    rows += [_lifecycle_row("service", s.key, _service_path(s), s.owner, s) for s in services]
    return _page(request, person, "admin_lifecycle.html", "lifecycle", rows=rows, may_change=who.is_gateway_admin)


@post("/admin/lifecycle/{kind:str}/{record_id:str}", include_in_schema=False, status_code=303)
async def move(request: Request, kind: FromPath[str], record_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    require_gateway_admin(who, "change an API's lifecycle")
    if not 1 <= len(record_id) <= _MAX_ID or kind not in ("prompt", "service"):
        raise RecordNotFound(f"No {kind[:16]} {record_id[:_MAX_ID]!r}.")
    asked = portal_lifecycle.move_of(form.get("action", ""), form.get("successor", ""), form.get("sunset", ""))
    now = now_ms()
    actor = who.actor()
    if kind == "prompt":
        prompts = store_of(request).prompts
        before, revision = await prompts.get(record_id)
        after, action = portal_lifecycle.moved_prompt(before, asked, prompts.mirror.items, now)
        await prompts.replace(record_id, after, revision, actor, action, before)
    else:
        records = services_of(request)
        service, revision = await records.get(record_id)
        moved, action = portal_lifecycle.moved_service(service, asked, records.mirror.items, now)
        await records.replace(record_id, moved, revision, actor, action, service)
    return back_to(f"{ADMIN}/lifecycle", "moved")


ROUTES = [
    tenants,
    create_tenant,
    users,
    invite,
    new_link,
    shown_link,
    disable_user,
    enable_user,
    approval_rules,
    add_rule,
    delete_rule,
    lifecycle,
    move,
]
