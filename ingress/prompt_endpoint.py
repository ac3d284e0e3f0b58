"""``POST /apis/<slug>``: a prompt published as a plain REST API. The body
is a JSON object of the prompt's variables; ``?stream=true`` streams the
text as server-sent events, then the answer."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import msgspec

from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import (
    JSON_HEADERS,
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    retry_after,
    send_bytes,
)
from ingress.prompt_call import PromptCall
from schemas.errors import ClientClosed, GatewayError, InvalidRequest
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Failure
from services.apis import prompt_shapes
from services.apis.base import decode_json
from services.prompt_api import lifecycle_headers

PREFIX = "/apis/"
_decode_variables = msgspec.json.Decoder(dict[str, Any]).decode
_TRUE = ("1", "true", "yes")


def slug_of(path: str) -> str | None:
    slug = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
    return slug if slug and "/" not in slug else None


async def serve_prompt_api(gw: Gateway, slug: str, scope: Scope, receive: Receive, send: Send) -> None:
    received_ns, request_id = request_of(scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    stream = query.get("stream", ["false"])[-1].lower() in _TRUE
    call = PromptCall(
        gw,
        slug,
        {},
        request_id=request_id,
        received_ns=received_ns,
        origin="http",
        api_key=header(scope, b"authorization"),
        stream=stream,
        test=(header(scope, b"x-sluice-test") or "").lower() in _TRUE,
        traceparent=header(scope, b"traceparent") or "",
    )
    try:
        raw = await read_body(scope, receive, gw.settings.max_body_bytes, gw.settings.body_timeout_s)
        call.variables = decode_json(_decode_variables, raw or b"{}")
    except ClientDisconnected:
        call.refuse(ClientClosed("The client closed the connection before its body arrived."))
        return
    except GatewayError as exc:
        if isinstance(exc, InvalidRequest) and exc.code == "invalid_request":
            exc.message = f"The body must be a JSON object of the API's variables: {exc.message}"
        await _answer(send, call, call.refuse(exc))
        return
    if not stream:
        await _answer(send, call, await call.run())
        return
    await _stream(call, receive, send)


def _headers(call: PromptCall, base: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = [*base, (b"x-request-id", call.id.encode())]
    if call.plan is not None:
        out += [(k.encode(), v.encode()) for k, v in lifecycle_headers(call.plan.api)]
    return out


async def _answer(send: Send, call: PromptCall, result: ApiAnswer | Failure) -> None:
    if isinstance(result, ApiAnswer):
        await send_bytes(send, 200, prompt_shapes.answer(result), _headers(call, JSON_HEADERS))
    else:
        headers = _headers(call, JSON_HEADERS) + retry_after(result.retry_after_s)
        await send_bytes(send, result.status, prompt_shapes.error(result), headers)


async def _stream(call: PromptCall, receive: Receive, send: Send) -> None:
    """Text as it comes; until the first of it, an error is still a plain
    JSON answer with its status."""
    started = False

    async def on_text(text: str) -> None:
        nonlocal started
        if not started:
            started = True
            await send({"type": "http.response.start", "status": 200, "headers": _headers(call, SSE_HEADERS)})
        await send({"type": "http.response.body", "body": prompt_shapes.sse_delta(text), "more_body": True})

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        call.cancel()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        result = await call.run(on_text)
    finally:
        watcher.cancel()
    if call.cancelled:
        return
    if not started:
        await _answer(send, call, result)
        return
    end = prompt_shapes.sse_answer(result) if isinstance(result, ApiAnswer) else prompt_shapes.sse_error(result)
    await send({"type": "http.response.body", "body": end})
