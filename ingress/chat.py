"""POST /v1/chat/completions: HTTP in, envelope onto the bus, replies out."""

from __future__ import annotations

import asyncio
import time

import msgspec

from ingress import openai_format as fmt
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
    send_bytes,
    send_error,
    send_gateway_error,
)
from ingress.replies import DISCONNECTED, Disconnected
from schemas import bus, subjects
from schemas.chat import ChatBody
from schemas.envelope import Envelope, Span
from schemas.errors import CLIENT_CLOSED_STATUS, GatewayError, InternalError, InvalidRequest, StageTimeout
from schemas.ids import new_id
from schemas.replies import Cancel, Chunk, Failure, Final

_decode_body = msgspec.json.Decoder(ChatBody).decode
DEADLINE_GRACE_S = 0.25


def parse_body(raw: bytes) -> ChatBody:
    try:
        body = _decode_body(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}.") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json") from exc
    if not body.messages:
        raise InvalidRequest("'messages' must contain at least one message.")
    return body


class _Call:
    """One request's trip through the bus, from the ingress's side."""

    def __init__(self, gw: Gateway, body: ChatBody, received_ns: int, request_id: str) -> None:
        self.gw = gw
        self.body = body
        self.id = request_id
        self.received_ns = received_ns
        self.created = received_ns // 1_000_000_000
        self.deadline_ns = received_ns + int(gw.settings.request_timeout_s * 1e9)
        self.reply_subject, self.queue = gw.replies.open(request_id)
        self.spans: list[Span] = []
        self.expected_seq = 0
        self.last_reply_ns = 0

    async def publish(self, api_key_header: str | None) -> None:
        env = Envelope(
            id=self.id,
            received_at_ns=self.received_ns,
            deadline_ns=self.deadline_ns,
            body=self.body,
            reply=self.reply_subject,
            origin="http",
        )
        headers = {subjects.API_KEY_HEADER: api_key_header} if api_key_header else None
        payload = bus.encode(env)
        self.spans.append(Span("ingress", self.received_ns, time.time_ns()))
        await self.gw.nc.publish(subjects.IN_CHAT, payload, headers=headers)

    async def next_reply(self, timeout_s: float) -> Chunk | Final | Failure | None:
        """The next reply in order; None when the client went away."""
        try:
            async with asyncio.timeout(timeout_s):
                data = await self.queue.get()
        except TimeoutError:
            return Failure.from_error(self.id, StageTimeout("The gateway did not answer in time."))
        if isinstance(data, Disconnected):
            return None
        self.last_reply_ns = time.time_ns()
        reply = bus.decode_reply(data)
        if reply.seq != self.expected_seq:
            return Failure.from_error(
                self.id, InternalError(f"Reply {self.expected_seq} was lost on the bus.", status=502)
            )
        self.expected_seq += 1
        return reply

    def first_timeout(self) -> float:
        # A little past the deadline, so that a stage that gave up at the
        # deadline (e.g. the provider on a slow upstream) can still say why.
        return max(0.0, (self.deadline_ns - time.time_ns()) / 1e9) + DEADLINE_GRACE_S

    def record(self, reply: Final | Failure, **kwargs) -> None:
        # The ingress's own time after the last reply: decode, render, write.
        if self.last_reply_ns:
            self.spans.append(Span("ingress", self.last_reply_ns, time.time_ns()))
        self.gw.record(self.id, self.received_ns, self.body.model, self.body.stream, reply, self.spans, **kwargs)

    async def cancel(self) -> None:
        await self.gw.nc.publish(subjects.CONTROL_CANCEL, bus.encode(Cancel(id=self.id)))

    def close(self) -> None:
        self.gw.replies.close(self.id)


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    received_ns = time.time_ns()
    request_id = new_id(received_ns)
    try:
        body = parse_body(await read_body(scope, receive, gw.settings.max_body_bytes))
    except ClientDisconnected:
        return
    except GatewayError as exc:
        await send_gateway_error(send, exc, [(b"x-request-id", request_id.encode())])
        gw.record(request_id, received_ns, "", False, Failure.from_error(request_id, exc), [])
        return
    call = _Call(gw, body, received_ns, request_id)
    try:
        await call.publish(header(scope, b"authorization"))
        if body.stream:
            await _stream(call, receive, send)
        else:
            await _complete(call, send)
    finally:
        call.close()


def _request_id_header(call: _Call) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", call.id.encode())]


async def _send_failure(call: _Call, send: Send, f: Failure) -> None:
    await send_error(send, f.status, f.type, f.code, f.message, f.retry_after_s, _request_id_header(call))


async def _complete(call: _Call, send: Send) -> None:
    reply = await call.next_reply(call.first_timeout())
    if isinstance(reply, Final) and reply.message is not None:
        payload = fmt.completion(
            call.id, call.created, call.body.model, reply.message, reply.finish_reason, reply.usage
        )
        await send_bytes(send, 200, payload, JSON_HEADERS + _request_id_header(call))
        call.record(reply)
    elif isinstance(reply, Failure):
        if reply.code == StageTimeout.code:
            await call.cancel()
        await _send_failure(call, send, reply)
        call.record(reply)
    else:
        f = Failure.from_error(call.id, InternalError("The pipeline sent an unexpected reply.", status=502))
        await _send_failure(call, send, f)
        call.record(f)


async def _stream(call: _Call, receive: Receive, send: Send) -> None:
    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        call.queue.put_nowait(DISCONNECTED)

    watcher = asyncio.create_task(watch_disconnect())
    try:
        await _relay_stream(call, send)
    finally:
        watcher.cancel()


async def _relay_stream(call: _Call, send: Send) -> None:
    include_usage = bool(call.body.stream_options and call.body.stream_options.include_usage)
    reply = await call.next_reply(call.first_timeout())
    if reply is None:
        await call.cancel()
        call.record(_closed(call), client_disconnected=True, status=CLIENT_CLOSED_STATUS)
        return
    if isinstance(reply, Failure):  # nothing sent yet: a plain JSON error with its status
        await _send_failure(call, send, reply)
        call.record(reply)
        return
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + _request_id_header(call)})
    ttft_ns = time.time_ns() - call.received_ns
    idle = call.gw.settings.stream_idle_timeout_s
    # Replies that arrived together go out in one write: one syscall, and one
    # trip through the server, for a burst of chunks.
    out: list[bytes] = []
    while True:
        if reply is None:
            await call.cancel()
            call.record(_closed(call), ttft_ns=ttft_ns, client_disconnected=True, status=CLIENT_CLOSED_STATUS)
            return
        if isinstance(reply, Chunk):
            out.append(fmt.sse_chunk(call.id, call.created, call.body.model, reply.delta))
            if call.queue.empty():
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                out.clear()
        elif isinstance(reply, Final):
            if include_usage:
                out.append(fmt.sse_usage(call.id, call.created, call.body.model, reply.usage))
            out.append(fmt.SSE_DONE)
            await send({"type": "http.response.body", "body": b"".join(out)})
            call.record(reply, ttft_ns=ttft_ns)
            return
        else:  # Failure after the stream began: an error event, then the end
            if reply.code == StageTimeout.code:
                await call.cancel()
            out.append(fmt.sse_error(reply.type, reply.code, reply.message))
            await send({"type": "http.response.body", "body": b"".join(out)})
            call.record(reply, ttft_ns=ttft_ns)
            return
        reply = await call.next_reply(idle)


def _closed(call: _Call) -> Failure:
    return Failure(
        id=call.id,
        seq=0,
        status=CLIENT_CLOSED_STATUS,
        type="client_closed",
        code="client_closed",
        message="The client closed the connection.",
    )
