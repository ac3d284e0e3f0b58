"""GET /v1/models: the configured models, for keys that may see them."""

from __future__ import annotations

from ingress.gateway import Gateway
from ingress.http import Scope, Send, header, send_gateway_error, send_json
from schemas.errors import GatewayError
from services import policy


async def list_models(gw: Gateway, scope: Scope, send: Send) -> None:
    try:
        key = policy.authenticate(header(scope, b"authorization"), gw.keys.items)
    except GatewayError as exc:
        return await send_gateway_error(send, exc)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": route.owned_by}
        for name, route in sorted(gw.routes.items.items())
        if policy.may_call(key, name)
    ]
    await send_json(send, 200, {"object": "list", "data": data})
