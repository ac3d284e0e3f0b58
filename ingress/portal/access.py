"""Access to APIs: a developer asks for it with a reason (POST
``/portal/subscriptions``, from the form ``_subscribe.html`` on an API's
page), sees where their tenant stands (``/portal/subscriptions``), and a
tenant admin (their tenant's) or gateway admin (all) approves or rejects
with a reason in the queue (``/portal/approvals``).

Subscriptions are written through the control store, revision-checked and
audited under the person's user id, as the admin API writes them; the rules
(names, moves, who decides) are ``services.portal_access``. A request for
access without a reason (or one already asked) shows the API's page again,
its form saying what was wrong, with the reason given.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.params import FromPath

from ingress.portal import views
from ingress.portal.docs import api_response
from ingress.portal.forms import (
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
from schemas import subjects
from schemas.control import Subscription
from schemas.errors import GatewayError, InvalidRequest, RecordNotFound
from schemas.rest import SLUG, service_key
from services import portal_access
from services.portal_access import ApiKind
from services.portal_scope import Who, require_admin

KINDS: tuple[ApiKind, ...] = ("model", "prompt", "service", "mcp")
# Callers see these; a draft or retired API is nobody's to ask for.
_LIVE = ("published", "deprecated")
_SERVICE_VERSION = re.compile(r"(.+)\.v([1-9][0-9]{0,5})")
_DONE = {
    "subscribed": "Access requested: a tenant admin will decide.",
    "approve": "Approved.",
    "reject": "Rejected.",
    "revoke": "Revoked.",
}
NAV = [
    views.NavItem("Subscriptions", f"{views.PREFIX}/subscriptions", order=30),
    views.NavItem("Approvals", f"{views.PREFIX}/approvals", frozenset({"tenant_admin", "gateway_admin"}), order=31),
]


def _api_target(gw: Any, who: Who, kind: str, name: str) -> tuple[str, bool]:
    """The subscription name of the API the person names, and whether it
    needs approval; one the person cannot see is missing (404)."""
    missing = RecordNotFound(f"No API {name!r} of kind {kind!r}.", code="api_not_found")
    if kind == "model":
        route = gw.table.find(name)
        if route is None:
            raise missing
        rules = gw.store.approval_rules.all()
        return portal_access.subscription_name("model", route.name), portal_access.model_needs_approval(route, rules)
    if kind == "prompt":
        prompt = gw.prompt_book.by_slug(name)
        if prompt is None or prompt.api is None or prompt.api.state not in _LIVE:
            raise missing
        return portal_access.subscription_name("prompt", prompt.api.slug), prompt.api.requires_approval
    if kind == "service":
        versioned = _SERVICE_VERSION.fullmatch(name)
        slug, version = (versioned.group(1), int(versioned.group(2))) if versioned else (name, 1)
        services = getattr(gw, "rest_services", None)
        service = services.items.get(service_key(slug, version)) if services and SLUG.fullmatch(slug) else None
        if service is None or service.state not in _LIVE:
            raise missing
        return portal_access.subscription_name("service", slug), service.requires_approval
    if kind == "mcp":
        server = gw.mcp_servers.items.get(name)
        if server is None or not (who.is_gateway_admin or _tools_for(gw, who, server)):
            raise missing
        return portal_access.subscription_name("mcp", name), server.requires_approval
    raise missing


def _tools_for(gw: Any, who: Who, server: Any) -> list[str]:
    # The catalog's own rule (its entries): a server none of whose tools the tenant may use is not shown.
    from ingress.portal.entries import visible_tools

    tenant = gw.mirrors[subjects.KV_TENANTS].items.get(who.tenant_id)
    return visible_tools(server, gw.mcp_catalog.items.get(server.name), who, tenant)


def api_href(kind: str, name: str) -> str:
    return f"{views.PREFIX}/apis/{kind}/{quote(name, safe='')}"


def _row(sub: Subscription, people: dict[str, Any]) -> dict[str, Any]:
    return {
        "sub": sub,
        "requested_by": email_of(people, sub.requested_by),
        "decided_by": email_of(people, sub.decided_by),
        "created": when(sub.created_at_ms),
        "decided": when(sub.decided_at_ms),
    }


@post("/subscriptions", include_in_schema=False, status_code=303)
async def subscribe(request: Request) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    kind, name = form.get("kind", ""), form.get("name", "")
    if kind not in KINDS or not 1 <= len(name) <= 256:
        raise InvalidRequest("Name an API by its kind and name.", code="invalid_api")
    gw = request.app.state.gateway
    sub_name, needs = _api_target(gw, who, kind, name)
    store = store_of(request)
    try:
        sub = portal_access.subscribe(who, sub_name, needs, form.get("reason", ""), store.subscriptions.all(), now_ms())
        await store.subscriptions.create(sub.id, sub, who.actor())
    except GatewayError as exc:
        if not is_inline(exc):
            raise
        wrong = form_error("subscribe", exc, "reason")
        return await api_response(request, person, kind, name, status=exc.status, form_error=wrong, values=kept(form))
    return back_to(api_href(kind, name), "subscribed")


@get("/subscriptions", include_in_schema=False)
async def subscriptions(request: Request) -> Response:
    person, who = await signed_in(request)
    people = people_of(request)
    rows = [_row(s, people) for s in portal_access.visible(who, store_of(request).subscriptions.all())]
    return views.page(
        request,
        "subscriptions.html",
        person,
        rows=rows,
        done=_DONE.get(request.query_params.get("done", ""), ""),
    )


@get("/approvals", include_in_schema=False)
async def approvals(request: Request) -> Response:
    person, who = await signed_in(request)
    require_admin(who, "decide subscriptions")
    people = people_of(request)
    mine = portal_access.visible(who, store_of(request).subscriptions.all())
    # The oldest request first: the queue is worked through in order.
    pending = sorted((s for s in mine if s.state == "pending"), key=lambda s: (s.created_at_ms, s.id))
    decided = [s for s in mine if s.state != "pending"]
    return views.page(
        request,
        "approvals.html",
        person,
        pending=[_row(s, people) for s in pending],
        decided=[_row(s, people) for s in decided[:200]],
        done=_DONE.get(request.query_params.get("done", ""), ""),
    )


@post("/approvals/{subscription_id:str}", include_in_schema=False, status_code=303)
async def decide(request: Request, subscription_id: FromPath[str]) -> Response:
    person, who = await signed_in(request)
    form = await posted(request, person)
    store = store_of(request)
    if not 1 <= len(subscription_id) <= 64:
        raise RecordNotFound(f"No subscription {subscription_id[:64]!r}.")
    before, revision = await store.subscriptions.get(subscription_id)
    decision = form.get("decision", "")
    after = portal_access.decide(who, before, decision, form.get("reason", ""), now_ms())
    await store.subscriptions.replace(subscription_id, after, revision, who.actor(), decision, before)
    return back_to(f"{views.PREFIX}/approvals", decision)


ROUTES = [subscribe, subscriptions, approvals, decide]
