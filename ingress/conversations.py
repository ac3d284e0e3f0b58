"""Every front door's side of an API whose answers are kept (the Responses
API): before a request is published, the conversation it continues is read
and put before its input; once its answer is rendered, and before the
client has it (so its next request finds it), the answer is stored.

The ingress knows the caller's tenant here from its own copy of the keys;
policy still checks the key as for any request.
"""

from __future__ import annotations

import logging
import time

from ingress.gateway import Gateway
from schemas.control import ApiKey
from schemas.errors import GatewayError
from services import policy
from services.apis.base import ClientApi, Parsed, Renderer
from services.apis.responses import request_id_of

log = logging.getLogger("sluice.ingress.conversations")


async def resume(
    gw: Gateway, api: ClientApi, parsed: Parsed, key_header: str | None, key_id: str = ""
) -> tuple[Parsed, ApiKey | None]:
    """The request with its conversation, and the key that asked (None for
    an API that keeps nothing): by its header, or by its id (a durable job's).
    Raises 401 for a bad key, 404 for a previous response this tenant does not have."""
    if api.conversation is None:
        return parsed, None
    now_ms = time.time_ns() // 1_000_000
    if key_id:
        key = policy.key_by_id(key_id, gw.keys.mirror.items, now_ms)
    else:
        key = policy.authenticate(key_header, gw.keys.by_hash, now_ms)
    earlier = None
    if parsed.previous_id and request_id_of(parsed.previous_id) is not None:
        earlier = await gw.responses.get(key.tenant_id, parsed.previous_id)
    return api.conversation.resume(parsed, earlier), key


async def keep(gw: Gateway, api: ClientApi, parsed: Parsed, renderer: Renderer, key: ApiKey | None) -> None:
    """Store the rendered answer. A store that fails is logged: the client
    still gets its answer (it cannot be continued by id)."""
    if api.conversation is None or key is None:
        return
    record = api.conversation.keep(parsed, renderer, key.tenant_id, key.id)
    if record is None:
        return
    try:
        await gw.responses.put(record)
    except GatewayError as exc:
        log.warning("response %s was not stored: %s", record.response.id, exc.message)
