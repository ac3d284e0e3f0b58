"""What every client API's HTTP endpoint does around its own parsing and
rendering: read the body, answer bad input in the API's error shape (and
record it), open a bus session, relay the answer."""

from __future__ import annotations

from ingress import conversations, http_relay, responses_background
from ingress.gateway import Gateway
from ingress.http import (
    JSON_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    retry_after,
    send_bytes,
)
from ingress.session import BusSession, client_closed
from schemas.errors import GatewayError
from schemas.replies import Failure
from services.apis.base import ClientApi, RequestView


def request_of(scope: Scope) -> tuple[int, str]:
    """When the request arrived and its id, as the app stamped them on the scope."""
    return scope["sluice.received_ns"], scope["sluice.request_id"]


async def serve_api(gw: Gateway, api: ClientApi, scope: Scope, receive: Receive, send: Send) -> None:
    received_ns, request_id = request_of(scope)
    session: BusSession | None = None
    try:
        settings = gw.settings
        parsed = api.parse(await read_body(scope, receive, settings.max_body_bytes, settings.body_timeout_s))
        key_header = api.api_key(lambda name: header(scope, name))
        session = BusSession(gw, api.name, parsed.model, parsed.stream, received_ns, request_id)
        parsed, caller = await conversations.resume(gw, api, parsed, key_header)
        if caller is not None and parsed.responses is not None and parsed.responses.background:
            traceparent = header(scope, b"traceparent") or ""
            queued = await responses_background.submit(gw, parsed, caller, request_id, session.created, traceparent)
            await send_bytes(send, 200, queued, [*JSON_HEADERS, (b"x-request-id", request_id.encode())])
            session.close()
            return
        await session.publish(
            key_header,
            parsed.body,
            parsed.embeddings,
            pin=header(scope, b"x-sluice-deployment") or "",
            cache_control=(header(scope, b"cache-control") or "")[:256],
            raw=parsed.raw,
            traceparent=header(scope, b"traceparent") or "",
            dropped=parsed.dropped,
            anthropic_beta=api.anthropic_beta(lambda name: header(scope, name)),
        )
    except ClientDisconnected:  # gone before its body arrived: nothing to answer, still a row
        gw.record(request_id, received_ns, api.name, "", False, client_closed(request_id), [], client_disconnected=True)
        if session is not None:
            session.close()
        return
    except GatewayError as exc:
        failure = Failure.from_error(request_id, exc)
        headers = [*JSON_HEADERS, (b"x-request-id", request_id.encode()), *retry_after(exc.retry_after_s)]
        await send_bytes(send, exc.status, api.error_body(failure), headers)
        gw.record(request_id, received_ns, api.name, session.model if session else "", False, failure, [])
        if session is not None:
            session.close()
        return
    try:
        renderer = api.renderer(RequestView(session.id, session.created, session.model, parsed))
        keep = None if caller is None else lambda fmt: conversations.keep(gw, api, parsed, fmt, caller)
        if parsed.stream:
            await http_relay.stream(session, receive, send, renderer, keep)
        else:
            await http_relay.complete(session, send, renderer, keep)
    finally:
        session.close()
