"""Usage: ``/portal/usage``. Requests, errors, tokens and exact spend per
API and per day, charted, from the dashboard's named query ``hourly``
narrowed in the query to what the person may see (their apps' keys for a
developer, the tenant for a tenant admin: ``services.portal_usage``).

Analytics that does not answer in time leaves the page up with a notice,
never an error page.
"""

from __future__ import annotations

import asyncio
import logging
import time

from litestar import Request, Response, get

from ingress.portal import views
from ingress.portal.forms import apps_of, signed_in, store_of
from schemas.errors import GatewayError
from services import portal_apps, portal_usage

log = logging.getLogger("sluice.portal")
NAV = [views.NavItem("Usage", f"{views.PREFIX}/usage", order=40)]
# A page waits this long for analytics (the rollup answers in milliseconds).
QUERY_TIMEOUT_S = 10.0
WINDOWS = (1, 7, 30, 90)


@get("/usage", include_in_schema=False)
async def usage(request: Request) -> Response:
    person, who = await signed_in(request)
    days = portal_usage.days_of(request.query_params.get("days"))
    store = store_of(request)
    key_ids = portal_apps.key_ids_of(who, apps_of(request).mirror.items.values(), store.keys.all())
    params = portal_usage.query_params(who, key_ids, days, time.time_ns())
    found = portal_usage.summarize([], [])
    unavailable = ""
    if params is not None:
        try:
            result = await asyncio.wait_for(store.named_query(portal_usage.QUERY, params), QUERY_TIMEOUT_S)
            found = portal_usage.summarize(result.columns, result.rows)
        except (GatewayError, TimeoutError) as exc:
            log.warning("portal usage: analytics did not answer: %s", exc)
            unavailable = "Usage is unavailable right now (analytics did not answer); try again shortly."
    scope = (
        "every tenant"
        if who.is_gateway_admin
        else (f"the tenant {who.tenant_id}" if who.is_admin else "the keys of your apps")
    )
    return views.page(
        request,
        "usage.html",
        person,
        usage=found,
        chart=portal_usage.chart_data(found),
        days=days,
        windows=WINDOWS,
        scope=scope,
        no_keys=params is None,
        unavailable=unavailable,
    )


ROUTES = [usage]
