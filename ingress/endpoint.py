"""What every API endpoint does around its own parsing and rendering: read
the body, answer bad input in the API's error shape (and record it), publish,
relay the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from ingress import call as relay
from ingress.call import Call, Format, client_closed
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
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.errors import GatewayError, InvalidRequest
from schemas.replies import Failure

T = TypeVar("T")


class Parsed(msgspec.Struct):
    model: str
    stream: bool = False
    body: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None
    # The client's own body, when it holds more than ``body`` (pass-through).
    raw: bytes = b""


def decode_json(decoder: Callable[[bytes], T], raw: bytes) -> T:
    """A request body, or an InvalidRequest that says what is wrong with it."""
    try:
        return decoder(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid UTF-8: {exc}.", code="invalid_json") from exc
    except RecursionError as exc:
        raise InvalidRequest("The JSON body of your request is nested too deeply.", code="invalid_json") from exc


def request_of(scope: Scope) -> tuple[int, str]:
    """When the request arrived and its id, as the app stamped them on the scope."""
    return scope["sluice.received_ns"], scope["sluice.request_id"]


async def serve(
    gw: Gateway,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    api: str,
    parse: Callable[[bytes], Parsed],
    make_format: Callable[[Call], Format],
    error_body: Callable[[Failure], bytes],
    api_key_header: str | None,
) -> None:
    received_ns, request_id = request_of(scope)
    call: Call | None = None
    try:
        settings = gw.settings
        parsed = parse(await read_body(scope, receive, settings.max_body_bytes, settings.body_timeout_s))
        call = Call(gw, api, parsed.model, parsed.stream, received_ns, request_id)
        pin = header(scope, b"x-sluice-deployment") or ""
        cache_control = (header(scope, b"cache-control") or "")[:256]
        await call.publish(
            api_key_header, parsed.body, parsed.embeddings, pin=pin, cache_control=cache_control, raw=parsed.raw
        )
    except ClientDisconnected:  # gone before its body arrived: nothing to answer, still a row
        gw.record(request_id, received_ns, api, "", False, client_closed(request_id), [], client_disconnected=True)
        if call is not None:
            call.close()
        return
    except GatewayError as exc:
        failure = Failure.from_error(request_id, exc)
        headers = [*JSON_HEADERS, (b"x-request-id", request_id.encode()), *retry_after(exc.retry_after_s)]
        await send_bytes(send, exc.status, error_body(failure), headers)
        gw.record(request_id, received_ns, api, call.model if call else "", False, failure, [])
        if call is not None:
            call.close()
        return
    try:
        fmt = make_format(call)
        if parsed.stream:
            await relay.stream(call, receive, send, fmt)
        else:
            await relay.complete(call, send, fmt)
    finally:
        call.close()
