"""Relaying a bus session's replies over HTTP: one whole answer (JSON, or
a transcript in text), a stream of server-sent events, in the client API's
shape (its ``Renderer``), or bytes relayed as they come (speech's audio)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from ingress.http import JSON_HEADERS, SSE_HEADERS, Receive, Send, retry_after, send_bytes
from ingress.replies import DISCONNECTED
from ingress.session import BusSession
from ingress.task_answers import Finish
from schemas.errors import StageTimeout
from schemas.replies import Chunk, Failure, Final
from services.apis.base import Renderer

log = logging.getLogger("sluice.ingress.http")

# Called once the answer is rendered, before the client has it (``ingress.conversations.keep``).
Keep = Callable[[Renderer], Awaitable[None]]
JSON = b"application/json"
EVENTS = b"text/event-stream"
AnswerKind = Literal["json", "events", "bytes"]


def answer_kind(media_type: bytes, stream: bool) -> AnswerKind:
    """How an answer of ``media_type`` goes out: server-sent events (a
    stream asked for, or an answer that is events whatever was asked),
    bytes as they come (audio, a transcript's text: any other type, streamed
    or not), or one JSON answer."""
    if media_type.startswith(EVENTS):
        return "events"
    if media_type != JSON:
        return "bytes"
    return "events" if stream else "json"


async def send_failure(call: BusSession, send: Send, fmt: Renderer, f: Failure) -> None:
    headers = JSON_HEADERS + call.id_header + retry_after(f.retry_after_s) + fmt.rate_headers(f.rate)
    await send_bytes(send, f.status, fmt.error(f), headers)


def route_headers(reply: Chunk | Final) -> list[tuple[bytes, bytes]]:
    """Who answered, after how many tries, whether from the cache (a
    stream's first chunk carries the first and the last), who counted
    a token count's tokens (``upstream`` or ``gateway``), and what a whole
    answer cost in pico-USD (the portal's try-it shows it; a stream's
    headers go before its cost is known)."""
    out = []
    if reply.deployment:
        out.append((b"x-sluice-deployment", reply.deployment.encode("latin-1", "replace")))
    if isinstance(reply, Final) and reply.attempts:
        out.append((b"x-sluice-attempts", str(reply.attempts).encode()))
    if isinstance(reply, Final):
        out.append((b"x-sluice-cost-pico-usd", str(reply.cost.total).encode()))
    if isinstance(reply, Final) and reply.count is not None:
        out.append((b"x-sluice-token-count", reply.count.by.encode()))
    if reply.cache:
        out.append((b"x-sluice-cache", reply.cache.encode()))
    return out


async def complete(
    call: BusSession,
    send: Send,
    fmt: Renderer,
    keep: Keep | None = None,
    *,
    finish: Finish | None = None,
) -> None:
    """A non-streamed JSON answer: wait for it, complete it (``finish``: an
    image's bytes or URL), render it."""
    reply = await call.collect()
    if isinstance(reply, Final):
        if finish is not None:
            await finish(reply)
        headers = JSON_HEADERS + call.id_header + fmt.rate_headers(reply.rate) + route_headers(reply)
        body = fmt.final(reply)
        if keep is not None:
            await keep(fmt)
        await send_bytes(send, 200, body, headers)
    elif reply is not None:
        await send_failure(call, send, fmt, reply)


async def _watch_disconnect(call: BusSession, receive: Receive) -> None:
    # The body is read: the next message is the client leaving.
    while (await receive())["type"] != "http.disconnect":
        pass
    call.queue.put_nowait(DISCONNECTED)


async def stream(call: BusSession, receive: Receive, send: Send, fmt: Renderer, keep: Keep | None = None) -> None:
    """A streamed answer, relayed as it comes; the upstream call is cancelled
    when the client goes away (and the provider records what it billed)."""
    watcher = asyncio.create_task(_watch_disconnect(call, receive))
    try:
        await _relay(call, send, fmt, keep)
    finally:
        watcher.cancel()


async def body(call: BusSession, receive: Receive, send: Send, fmt: Renderer, media_type: bytes) -> None:
    """An answer that is not JSON, as ``media_type``. Bytes (speech's audio,
    ``Chunk.data`` then ``Final.data``) go out as they come, so the caller
    hears the start while the upstream still speaks; an answer that carries
    no bytes (a transcript in text, srt or vtt) is what the renderer makes
    of its ``Final``. A failure after the first bytes went out can only cut
    the response short (the connection closes before the body's end, which
    every HTTP client reports as an error, not as a short body); the
    upstream call is cancelled when the client goes away."""
    watcher = asyncio.create_task(_watch_disconnect(call, receive))
    try:
        await _relay_bytes(call, send, fmt, media_type)
    finally:
        watcher.cancel()


async def _first_reply(call: BusSession, send: Send, fmt: Renderer) -> Chunk | Final | None:
    """The answer's first reply; None when the request is over already: the
    client left, or it failed before anything was sent (answered here as a
    plain JSON error with its status)."""
    reply = await call.next_reply(call.first_timeout())
    if reply is None:
        await call.cancel()
        return None
    if isinstance(reply, Failure):
        await send_failure(call, send, fmt, reply)
        call.record(reply)
        return None
    return reply


async def _relay_bytes(call: BusSession, send: Send, fmt: Renderer, media_type: bytes) -> None:
    reply = await _first_reply(call, send, fmt)
    if reply is None:
        return
    rate = call.quota.rate if call.quota is not None else reply.rate if isinstance(reply, Final) else None
    headers = [(b"content-type", media_type), *call.id_header, *fmt.rate_headers(rate), *route_headers(reply)]
    if isinstance(reply, Final):  # whole: with its length and cost
        await send_bytes(send, 200, reply.data or fmt.final(reply), headers)
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    idle = call.gw.settings.stream_idle_timeout_s
    # Slices that arrived together go out in one write (as a stream's chunks).
    out: list[bytes] = []
    while True:
        if reply is None:  # the client left
            await call.cancel()
            return
        if isinstance(reply, Chunk):
            if reply.data:
                out.append(reply.data)
            if out and not call.has_more():
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                out.clear()
        elif isinstance(reply, Final):
            out.append(reply.data)
            await send({"type": "http.response.body", "body": b"".join(out)})
            return
        else:  # the status went out with the first bytes: all that is left is to cut the body short
            if reply.code == StageTimeout.code:
                await call.cancel()
            call.record(reply)
            log.warning("request %s: the answer was cut after its first bytes: %s", call.id, reply.message)
            return
        reply = await call.next_reply(idle)


async def _relay(call: BusSession, send: Send, fmt: Renderer, keep: Keep | None) -> None:
    reply = await _first_reply(call, send, fmt)
    if reply is None:
        return
    rate = call.quota.rate if call.quota is not None else None
    if rate is None and isinstance(reply, Final):
        rate = reply.rate
    headers = SSE_HEADERS + call.id_header + fmt.rate_headers(rate) + route_headers(reply)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    ttft_ns = time.time_ns() - call.received_ns
    idle = call.gw.settings.stream_idle_timeout_s
    # Replies that arrived together go out in one write: one syscall, and one
    # trip through the server, for a burst of chunks.
    out: list[bytes] = []
    while True:
        if reply is None:
            await call.cancel()
            return
        if isinstance(reply, Chunk):
            out.append(fmt.chunk(reply))
            if not call.has_more():
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                out.clear()
        elif isinstance(reply, Final):
            out.append(fmt.end(reply))
            if keep is not None:
                await keep(fmt)
            await send({"type": "http.response.body", "body": b"".join(out)})
            return
        else:  # Failure after the stream began: an error event, then the end
            if reply.code == StageTimeout.code:
                await call.cancel()
            out.append(fmt.stream_error(reply))
            await send({"type": "http.response.body", "body": b"".join(out)})
            call.record(reply, ttft_ns=ttft_ns)
            return
        reply = await call.next_reply(idle)
