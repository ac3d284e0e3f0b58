"""What every client API's HTTP endpoint does around its own parsing and
rendering: read the body, answer bad input in the API's error shape (and
record it), open a bus session, relay the answer.

A row that takes multipart/form-data (an image edit, an audio upload)
checks the caller's key before it reads a byte of the body (a 25 MB upload
is not stored for someone who may not send it), then keeps each file in
the object store as it streams in (``ingress.uploads``) and deletes them
when the request ends. The answer goes out as its API's media type: JSON
(an image first gets its bytes or URL, ``ingress.task_answers``), a
transcript's text, speech's audio as it comes, or server-sent events."""

from __future__ import annotations

import time

from ingress import conversations, http_relay, multipart, public_url, responses_background, task_answers
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
from ingress.peer import trusted_proxies
from ingress.session import BusSession, client_closed
from ingress.uploads import Uploads, refuse_refs
from schemas.control import ApiKey
from schemas.errors import GatewayError
from schemas.replies import Failure
from services import policy
from services.apis.base import ClientApi, Parsed, RequestView


def request_of(scope: Scope) -> tuple[int, str]:
    """When the request arrived and its id, as the app stamped them on the scope."""
    return scope["sluice.received_ns"], scope["sluice.request_id"]


async def serve_api(gw: Gateway, api: ClientApi, scope: Scope, receive: Receive, send: Send) -> None:
    uploads: Uploads | None = None
    try:
        if api.parse_form is not None:
            uploads = Uploads(gw.blobs, gw.settings.max_upload_bytes)
        await _serve(gw, api, scope, receive, send, uploads)
    finally:
        if uploads is not None:
            await uploads.discard()


async def _read(
    gw: Gateway, api: ClientApi, scope: Scope, receive: Receive, uploads: Uploads | None
) -> tuple[Parsed, ApiKey | None]:
    """The request, from its JSON body or, for a form row, its form (and
    then the caller's key, checked first)."""
    settings = gw.settings
    if uploads is None or api.parse_form is None:
        parsed = api.parse(await read_body(scope, receive, settings.max_body_bytes, settings.body_timeout_s))
        refuse_refs(parsed.task)
        return parsed, None
    key = _caller(gw, api, scope)
    uploads.tenant_id = key.tenant_id
    form = await multipart.read_form(
        scope, receive, uploads.store, max_field_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    parsed = api.parse_form(form)
    uploads.check(parsed.task)
    return parsed, key


def _caller(gw: Gateway, api: ClientApi, scope: Scope) -> ApiKey:
    """The caller's key, checked at the door (policy checks it again, with its subscriptions and limits)."""
    key_header = api.api_key(lambda name: header(scope, name))
    return policy.authenticate(key_header, gw.keys.by_hash, time.time_ns() // 1_000_000)


async def _serve(
    gw: Gateway, api: ClientApi, scope: Scope, receive: Receive, send: Send, uploads: Uploads | None
) -> None:
    received_ns, request_id = request_of(scope)
    session: BusSession | None = None
    try:
        parsed, key = await _read(gw, api, scope, receive, uploads)
        key_header = api.api_key(lambda name: header(scope, name))
        session = BusSession(gw, api.name, parsed.model, parsed.stream, received_ns, request_id)
        if key is not None:  # checked at the door: a row made here says whose it was
            session.key_id, session.tenant_id = key.id, key.tenant_id
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
            task=parsed.task,
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
        media_type = api.media_type(parsed)
        kind = http_relay.answer_kind(media_type, parsed.stream)
        if kind == "events":
            await http_relay.stream(session, receive, send, renderer, keep)
        elif kind == "bytes":
            await http_relay.body(session, receive, send, renderer, media_type)
        else:
            finish = task_answers.finisher(gw, parsed.task, lambda: public_url.public_base(scope, trusted_proxies()))
            await http_relay.complete(session, send, renderer, keep, finish=finish)
    finally:
        session.close()
