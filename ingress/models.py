"""GET /v1/models: the configured models a key may call, in OpenAI's list
shape plus what the catalog knows of each (extra fields the SDKs ignore), or
in Anthropic's when the caller speaks Anthropic's API (``anthropic-version``
or ``x-api-key``: the anthropic SDK and Claude Code send both)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import JSON_HEADERS, Scope, Send, header, send_bytes, send_gateway_error, send_json
from schemas.control import ModelRoute
from schemas.errors import GatewayError, InvalidRequest
from schemas.replies import Failure
from services import catalog_view, policy
from services.apis import anthropic_shapes, messages

# Anthropic's ``limit``: 20 unless asked, at most 1000.
ANTHROPIC_LIMIT = 20
ANTHROPIC_LIMIT_MAX = 1000
# Models have no creation date here; Anthropic's shape requires one.
EPOCH = "1970-01-01T00:00:00Z"


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


def anthropic_page(names: list[str], query: dict[str, str]) -> dict[str, Any]:
    """Anthropic's list of models: ``limit`` of them after ``after_id`` (or
    before ``before_id``), with ``has_more``, ``first_id`` and ``last_id``. An
    id no longer listed ends the list (a client paging on does not loop)."""
    raw_limit = query.get("limit", str(ANTHROPIC_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= ANTHROPIC_LIMIT_MAX:
        raise InvalidRequest(f"limit: must be an integer from 1 to {ANTHROPIC_LIMIT_MAX}.")
    limit = int(raw_limit)
    before, after = query.get("before_id"), query.get("after_id")
    if before is not None:
        end = names.index(before) if before in names else 0
        page, has_more = names[max(0, end - limit) : end], end > limit
    else:
        start = 0 if after is None else names.index(after) + 1 if after in names else len(names)
        page, has_more = names[start : start + limit], start + limit < len(names)
    return {
        "data": [{"type": "model", "id": n, "display_name": n, "created_at": EPOCH} for n in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def speaks_anthropic(scope: Scope) -> bool:
    return header(scope, b"anthropic-version") is not None or header(scope, b"x-api-key") is not None


async def list_models(gw: Gateway, scope: Scope, send: Send) -> None:
    received_ns, request_id = request_of(scope)
    id_header = [(b"x-request-id", request_id.encode())]
    anthropic = speaks_anthropic(scope)
    try:
        # x-api-key or Authorization, whichever shape is asked for.
        key_header = messages.api_key(lambda name: header(scope, name))
        key = policy.authenticate(key_header, gw.keys.by_hash, received_ns // 1_000_000)
        table = gw.table.names()
        names = [
            name
            for name, route in sorted(table.items())
            if route.deployments and (policy.may_call(key, name) or policy.may_call(key, route.name))
        ]
        if anthropic:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            return await send_json(send, 200, anthropic_page(names, query), id_header)
    except GatewayError as exc:
        if anthropic:
            body = anthropic_shapes.error_body(exc.type.value, exc.code, exc.message)
            await send_bytes(send, exc.status, body, [*JSON_HEADERS, *id_header])
        else:
            await send_gateway_error(send, exc, id_header)
        gw.record(request_id, received_ns, "models", "", False, Failure.from_error(request_id, exc), [])
        return
    data = [model_entry(name, table[name]) for name in names]
    await send_json(send, 200, {"object": "list", "data": data}, id_header)
