"""Just enough ASGI: read a bounded body, send JSON, send OpenAI errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from ingress.body_coding import BodyDecoder, decoder_for
from schemas.errors import GatewayError, InvalidRequest, RequestTimeout, RequestTooLarge
from services.apis.openai_shapes import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_json = msgspec.json.Encoder()
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientDisconnected(Exception):
    pass


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def content_coding(scope: Scope) -> str:
    """The body's ``Content-Encoding``, "" for none (or "identity")."""
    coding = (header(scope, b"content-encoding") or "").strip().lower()
    return "" if coding == "identity" else coding


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float, *, decode: bool = True) -> bytes:
    """The body, at most ``limit`` bytes; a compressed one (``decode``) at
    most ``limit`` bytes once decoded, so a small body that decodes past
    the limit (a decompression bomb) is a 413, found as it decodes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    decoding = decoder_for(content_coding(scope)) if decode else None
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_all(receive, limit, decoding)
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s.") from None


async def _read_all(receive: Receive, limit: int, decoding: BodyDecoder | None = None) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body = message.get("body", b"")
        if decoding is not None:
            body = decoding.feed(body, limit - size)
        size += len(body)
        if size > limit or (decoding is not None and decoding.more_pending()):
            raise RequestTooLarge(
                f"Request body is larger than the limit of {limit} bytes{' once decoded' if decoding else ''}."
            )
        chunks.append(body)
        if not message.get("more_body", False):
            if decoding is not None and not decoding.ended():
                raise InvalidRequest("The compressed request body is cut short.", code="invalid_content_encoding")
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    # With a length, the server sends the body as is instead of chunk-framing it.
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, obj: object, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_bytes(send, status, _json.encode(obj), JSON_HEADERS + (extra or []))


def retry_after(seconds: float | None) -> list[tuple[bytes, bytes]]:
    """The ``retry-after`` header (whole seconds), or none."""
    return [] if seconds is None else [(b"retry-after", str(max(0, round(seconds))).encode())]


async def send_error(
    send: Send,
    status: int,
    type_: str,
    code: str,
    message: str,
    retry_after_s: float | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_json(send, status, error_body(type_, code, message), [*(extra or []), *retry_after(retry_after_s)])


async def send_gateway_error(send: Send, exc: GatewayError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_error(send, exc.status, exc.type.value, exc.code, exc.message, exc.retry_after_s, extra)
