"""GET /v1/models: the configured models a key may call, in OpenAI's list
shape, plus what the catalog knows of each (extra fields the SDKs ignore)."""

from __future__ import annotations

from typing import Any

from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import Scope, Send, header, send_gateway_error, send_json
from schemas.control import ModelRoute
from schemas.errors import GatewayError
from schemas.replies import Failure
from services import catalog_view, policy


def model_entry(name: str, route: ModelRoute) -> dict[str, Any]:
    """A group (or an alias of one) as one model; the catalog facts are its
    first deployment's, and ``deployments`` names them all."""
    entry: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": route.owned_by}
    dep = route.deployments[0]
    entry["provider"] = dep.provider
    if name != route.name:
        entry["alias_of"] = route.name
    if len(route.deployments) > 1:
        entry["deployments"] = [d.name for d in route.deployments]
    info = catalog_view.describe(dep.catalog_model)
    if info is not None:
        entry.update(info)
    return entry


async def list_models(gw: Gateway, scope: Scope, send: Send) -> None:
    received_ns, request_id = request_of(scope)
    id_header = [(b"x-request-id", request_id.encode())]
    try:
        key = policy.authenticate(header(scope, b"authorization"), gw.keys.by_hash, received_ns // 1_000_000)
    except GatewayError as exc:
        await send_gateway_error(send, exc, id_header)
        gw.record(request_id, received_ns, "models", "", False, Failure.from_error(request_id, exc), [])
        return
    names = sorted(gw.table.names().items())
    data = [
        model_entry(name, route)
        for name, route in names
        if route.deployments and (policy.may_call(key, name) or policy.may_call(key, route.name))
    ]
    await send_json(send, 200, {"object": "list", "data": data}, id_header)
