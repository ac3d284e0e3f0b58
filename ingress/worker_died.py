"""What a request is billed when the provider process that held it died:
that process can no longer say, so the ingress settles it from what it
knows (the call's price, or what it sent and relayed of a model's answer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.chat import Cost, Usage
from schemas.rest import service_key
from services import quota, routing, task_usage
from services import usage as usage_svc

if TYPE_CHECKING:
    from ingress.session import BusSession


def billed_so_far(session: BusSession) -> tuple[Usage, Cost]:
    """What the upstream was sent, and generated as far as it reached us."""
    gw = session.gw
    if session.tool is not None:
        # A tool is priced per call, and the upstream may have run it.
        server = gw.mcp_servers.items.get(session.tool.server)
        price = server.rule(session.tool.name).price_pico_usd if server is not None else 0
        return Usage(), Cost(call=price if session.tool.method == "tools/call" else 0)
    if session.rest is not None:
        # A service is priced per call, and its instance may have acted on it.
        service = gw.rest_services.items.get(service_key(session.rest.service, session.rest.version))
        return Usage(), Cost(call=service.price_pico_usd if service is not None else 0)
    # Which candidate it was calling died with it: bill at the dearest.
    route = gw.table.find(session.model)
    catalog_model = routing.priciest_catalog_model(route, session.task) if route is not None else None
    if session.task is not None:
        # What it asked for: the upstream may have made the images, spoken the text.
        usage = task_usage.as_asked(session.task, catalog_model)
        return usage, usage_svc.task_cost(session.task, usage, catalog_model)
    if session.embeddings is not None:
        usage = usage_svc.settle_embeddings(None, session.embeddings, catalog_model)
    else:
        assert session.body is not None
        usage = usage_svc.settle_cut_short(None, session.body, "".join(session.relayed), catalog_model)
    return usage, usage_svc.cost_of(usage, catalog_model)


def tokens_held(session: BusSession) -> int:
    """What a task's tokens-per-minute hold took (its text, counted): a task
    reports units, so that is what it used of the limit."""
    return quota.reserved_tokens(session.quota) if session.task is not None else 0
