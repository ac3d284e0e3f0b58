"""The Responses API's stored answers by id: ``GET`` and ``DELETE
/v1/responses/{id}``, ``GET /v1/responses/{id}/input_items`` and ``POST
/v1/responses/{id}/cancel``, in OpenAI's shapes. A key reads its own
tenant's responses only: any other id is 404, as one that never existed."""

from __future__ import annotations

from urllib.parse import parse_qs

from ingress import responses_background
from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import Scope, Send, header, send_bytes, send_gateway_error, send_json
from schemas.control import ApiKey
from schemas.errors import GatewayError, InvalidRequest
from schemas.replies import Failure
from schemas.responses import InputText, Item, MessageItem, OutputText, encode_wire
from schemas.stored_response import StoredResponse
from services import policy
from services.apis.responses import request_id_of

PREFIX = "/v1/responses/"
MAX_ITEMS = 100


def matches(path: str) -> bool:
    return path.startswith(PREFIX)


def _not_found(response_id: str) -> InvalidRequest:
    # Said of any id the caller's tenant does not hold, its own or not.
    return InvalidRequest(f"Response with id '{response_id[:100]}' not found.", status=404, code="not_found")


async def serve_response_by_id(gw: Gateway, scope: Scope, send: Send) -> None:
    received_ns, request_id = request_of(scope)
    id_header = [(b"x-request-id", request_id.encode())]
    method, rest = scope["method"], scope["path"].rstrip("/")[len(PREFIX) :]
    response_id, _, action = rest.partition("/")
    try:
        key = policy.authenticate(header(scope, b"authorization"), gw.keys.by_hash, received_ns // 1_000_000)
        if (method, action) == ("GET", ""):
            stored = await _find(gw, key, response_id)
            await send_bytes(send, 200, encode_wire(stored.response), [*_json(), *id_header])
        elif (method, action) == ("DELETE", ""):
            if request_id_of(response_id) is None or not await gw.responses.delete(key.tenant_id, response_id):
                raise _not_found(response_id)
            await send_json(send, 200, {"id": response_id, "object": "response.deleted", "deleted": True}, id_header)
        elif (method, action) == ("GET", "input_items"):
            stored = await _find(gw, key, response_id)
            page = input_items(stored, parse_qs(scope.get("query_string", b"").decode("latin-1")))
            await send_bytes(send, 200, page, [*_json(), *id_header])
        elif (method, action) == ("POST", "cancel"):
            if request_id_of(response_id) is None:
                raise _not_found(response_id)
            stored, revision = await gw.responses.get_with_revision(key.tenant_id, response_id)
            if stored is None:
                raise _not_found(response_id)
            answer = await responses_background.cancel(gw, key.tenant_id, stored, revision)
            await send_bytes(send, 200, encode_wire(answer), [*_json(), *id_header])
        elif action in ("", "input_items", "cancel"):
            raise InvalidRequest(f"Method {method} is not allowed on {scope['path']}.", status=405)
        else:
            raise InvalidRequest(f"Unknown request URL: {method} {scope['path']}.", status=404, code="unknown_url")
    except GatewayError as exc:
        await send_gateway_error(send, exc, id_header)
        gw.record(request_id, received_ns, "responses", "", False, Failure.from_error(request_id, exc), [])


def _json() -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json")]


async def _find(gw: Gateway, key: ApiKey, response_id: str) -> StoredResponse:
    stored = await gw.responses.get(key.tenant_id, response_id) if request_id_of(response_id) else None
    if stored is None:
        raise _not_found(response_id)
    return stored


def item_id(stored: StoredResponse, index: int, item: Item) -> str:
    """An input item's id: its own, or one made from its place in the conversation."""
    own = getattr(item, "id", None)
    return own if isinstance(own, str) and own else f"msg_{stored.response.id[5:]}_{index}"


def input_items(stored: StoredResponse, query: dict[str, list[str]]) -> bytes:
    """One page of a response's input items, OpenAI's list shape (newest first unless ``order=asc``)."""
    limit_text = (query.get("limit") or ["20"])[0]
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_ITEMS:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_ITEMS}.", code="invalid_limit")
    order = (query.get("order") or ["desc"])[0]
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", code="invalid_order")
    items = [(item_id(stored, i, item), item) for i, item in enumerate(stored.input)]
    if order == "desc":
        items.reverse()
    after = (query.get("after") or [""])[0]
    if after:
        ids = [i for i, _ in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page, more = items[: int(limit_text)], len(items) > int(limit_text)
    data = [_with_id(item, iid) for iid, item in page]
    body = {
        "object": "list",
        "data": data,
        "first_id": page[0][0] if page else None,
        "last_id": page[-1][0] if page else None,
        "has_more": more,
    }
    return encode_wire(body)


def _with_id(item: Item, iid: str) -> Item:
    # OpenAI lists a message with its id, its status and its content as parts.
    if not isinstance(item, MessageItem):
        return item
    content = item.content
    if isinstance(content, str):
        content = [OutputText(text=content) if item.role == "assistant" else InputText(text=content)]
    return MessageItem(role=item.role, content=content, id=iid, status=item.status or "completed")
