"""The catalog page, ``/portal``: every API the person's tenant may see,
searched and filtered on the server by the query string (no script needed).

The page is a pure function of its entries (``render_catalog``), so its
render time can be measured on fixtures of any size; gathering them reads
the ingress's mirrors and asks analytics once per ``health.FRESH_S``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from litestar import Litestar, Request, Response, get

from ingress.portal import views
from ingress.portal.entries import KIND_LABELS, KINDS, STATES, Entry, Filters, Sources, build
from ingress.portal.health import HealthCache, Stats
from ingress.portal.views import NavItem
from schemas import subjects
from services.portal_access import Access
from services.portal_scope import Who

_STANDING = {
    "open": "Open to your tenant",
    "none": "Needs approval",
    "pending": "Approval pending",
    "approved": "Approved",
    "rejected": "Rejected",
    "revoked": "Access revoked",
}


def standing_label(access: Access) -> str:
    return _STANDING.get(access.standing, access.standing)


def catalog_context(entries: Sequence[Entry], filters: Filters) -> dict[str, Any]:
    """What catalog.html shows: the entries the filters keep, with counts
    per kind over all of them."""
    counts = Counter(e.kind for e in entries)
    index = {(e.kind, e.name): e.href for e in entries}

    def successor_href(entry: Entry) -> str:
        return index.get((entry.kind, entry.successor), "")

    return {
        "filters": filters,
        "shown": [e for e in entries if filters.keeps(e)],
        "total": len(entries),
        "kinds": [{"value": k, "label": KIND_LABELS[k] + "s", "count": counts[k]} for k in KINDS],
        "states": STATES,
        "health_known": any(e.health_known for e in entries) or not entries,
        "standing_label": standing_label,
        "successor_href": successor_href,
    }


def render_catalog(entries: Sequence[Entry], filters: Filters | None = None, **layout: Any) -> str:
    """The whole catalog page as HTML (``layout``: the base template's
    person, csrf and nav, when rendered for someone)."""
    return views.render("catalog.html", **catalog_context(entries, filters or Filters()), **layout)


def sources(gateway: Any, stats: Stats) -> Sources:
    """The catalog's inputs from the ingress's mirrors (REST services once
    the gateway has them)."""
    mirrors = gateway.mirrors
    services = getattr(gateway, "rest_services", None)
    return Sources(
        routes=list(gateway.routes.items.values()),
        prompts=gateway.prompt_book.published(),
        services=list(services.items.values()) if services is not None else [],
        mcp_servers=gateway.mcp_servers.items,
        mcp_catalogs=gateway.mcp_catalog.items,
        tenants=mirrors[subjects.KV_TENANTS].items,
        subscriptions=list(mirrors[subjects.KV_SUBSCRIPTIONS].items.values()),
        approval_rules=list(mirrors[subjects.KV_APPROVAL_RULES].items.values()),
        stats=stats,
    )


def health_cache(app: Litestar) -> HealthCache:
    cache = getattr(app.state, "catalog_health", None)
    if cache is None:
        cache = app.state.catalog_health = HealthCache(app.state.gateway.store.named_query)
    return cache


async def entries_for(request: Request, who: Who) -> list[Entry]:
    stats = await health_cache(request.app).get()
    return build(sources(request.app.state.gateway, stats), who)


def _query(request: Request) -> Mapping[str, str]:
    # One value per name (the first), as a form sends them.
    return {k: str(v) for k, v in request.query_params.items()}


@get("/", include_in_schema=False)
async def catalog_page(request: Request) -> Response:
    person = await views.signed_in(request)
    entries = await entries_for(request, views.who_of(person))
    context = catalog_context(entries, Filters.parse(_query(request)))
    return views.page(request, "catalog.html", person, **context)


ROUTES = [catalog_page]
NAV = [NavItem("Catalog", views.PREFIX, order=0)]
