"""``/v1/ws``: one WebSocket connection carries many concurrent requests.

The client authenticates once (the upgrade's ``Authorization`` header, or a
first message ``{"type": "auth", "api_key": ...}``), then sends JSON text
messages, each tagged with its own ``id``:

* ``{"type": "request", "id": "a", "api": "chat" | "messages" | "count_tokens" | "embeddings" | "responses"
  | "images" | "moderations" | "rerank" | "speech", "body": {...}}``
* ``{"type": "request", "id": "b", "api": "prompt", "slug": "summarize", "variables": {...}, "stream": true}``
* ``{"type": "cancel", "id": "a"}`` (the upstream call is cancelled too)

and receives, tagged with the same ``id``: ``event`` messages (a stream's
events, as its API's server-sent events would carry them) then ``done``;
or one ``response`` (``status`` and ``body``, an answer or an error, and
``request_id``, the gateway's id of the request, as HTTP's ``x-request-id``);
``cancelled`` after a cancel. Each request is its own bus session, so
limits, budgets and analytics are those of HTTP (origin "ws").

An image (``images``: generations) comes back as its ``b64_json`` or a URL
at the address the connection was opened to; ``rerank`` is Cohere's and
Jina's v1 shape. ``speech`` is served as events only (``stream_format``
"sse": base64 audio in ``speech.audio.delta`` events), since a ``response``
carries JSON. Uploads (image edits, transcriptions) are HTTP's alone: only
that door stores and names files (``ingress.uploads``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from ingress import conversations, http_relay, public_url, task_answers
from ingress.gateway import Gateway
from ingress.http import Receive, Scope, Send, header
from ingress.peer import trusted_proxies
from ingress.prompt_call import PromptCall
from ingress.replies import DISCONNECTED
from ingress.session import BusSession
from ingress.uploads import refuse_refs
from ingress.ws_outbox import Outbox
from schemas.errors import GatewayError, InternalError, InvalidRequest, SlowReader, StageTimeout
from schemas.ids import new_id
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Chunk, Failure, Final
from services import policy
from services.apis import prompt_shapes
from services.apis.base import ClientApi, RequestView, decode_json
from services.apis.table import APIS

log = logging.getLogger("sluice.ingress.ws")
PATH = "/v1/ws"
WsApi = Literal[
    "chat", "messages", "count_tokens", "embeddings", "responses", "images", "moderations", "rerank", "speech", "prompt"
]


def _by_name() -> dict[str, ClientApi]:
    """The rows a message may name: JSON bodies (uploads are HTTP's); where
    two paths share a name (rerank's /v1 and /v2), the first in the table."""
    rows: dict[str, ClientApi] = {}
    for api in APIS:
        if api.parse_form is None:
            rows.setdefault(api.name, api)
    return rows


BY_NAME = _by_name()
AUTH_TIMEOUT_S = 10.0
# How long requests still in flight get to stop when the connection closes.
CLOSE_GRACE_S = 2.0


class Incoming(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["auth", "request", "cancel"]
    id: str = ""
    api_key: str = ""
    api: WsApi = "chat"
    body: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    slug: str = ""
    variables: dict[str, Any] = {}
    stream: bool = False
    test: bool = False


_decode_incoming = msgspec.json.Decoder(Incoming).decode
_json = msgspec.json.Encoder()


def _tagged(kind: str, client_id: str, **fields: Any) -> bytes:
    return _json.encode({"type": kind, "id": client_id, **fields})


def response(request_id: str, status: int, body: bytes, gateway_id: str = "") -> bytes:
    """``gateway_id``: the gateway's own id of the request (HTTP's ``x-request-id``),
    which names its row, also when the body is an error that carries none."""
    ours = b',"request_id":' + _json.encode(gateway_id) if gateway_id else b""
    head = b'{"type":"response","id":' + _json.encode(request_id) + ours
    return head + b',"status":%d,"body":' % status + body + b"}"


def events_of(request_id: str, frames: bytes) -> list[bytes]:
    """Server-sent events, as the API's renderer wrote them, as tagged messages."""
    out = []
    tag = _json.encode(request_id)
    for block in frames.split(b"\n\n"):
        event, data = b"message", b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                event = line[7:]
            elif line.startswith(b"data: "):
                data = line[6:]
        if data == b"[DONE]" or not data:
            continue
        out.append(b'{"type":"event","id":' + tag + b',"event":"' + event + b'","data":' + data + b"}")
    return out


class Connection:
    def __init__(self, gw: Gateway, send: Send, api_key: str, traceparent: str = "", public_base: str = "") -> None:
        self.gw = gw
        self.api_key = api_key
        # Where an image's URL points: the address the connection was opened to.
        self.public_base = public_base
        # The upgrade request's W3C trace context: every request on the socket is in that trace.
        self.traceparent = traceparent
        self.outbox = Outbox(self._send_text, gw.settings.ws_max_waiting_bytes, self._overflow)
        self._ws_send = send
        # client id -> (when it began, its task, how to stop it)
        self.running: dict[str, tuple[int, asyncio.Task[None], Any]] = {}

    async def _send_text(self, data: bytes) -> None:
        await self._ws_send({"type": "websocket.send", "text": data.decode()})

    def _overflow(self) -> tuple[str, bytes] | None:
        live = [(began, rid) for rid, (began, _, stop) in self.running.items() if stop is not None]
        if not live:
            return None
        _, victim = min(live)
        began, task, stop = self.running[victim]
        self.running[victim] = (began, task, None)
        stop()
        error = SlowReader(
            f"More than {self.outbox.limit} bytes waited for this connection's reader: its oldest request "
            "was ended so the gateway does not buffer without bound. Read faster, or spread the requests."
        )
        return victim, response(victim, error.status, prompt_shapes.error(Failure.from_error(victim, error)))

    def start(self, msg: Incoming) -> None:
        rid = msg.id
        if not rid or len(rid) > 128:
            self.outbox.put(rid, response(rid, 400, _bad("Each request needs an 'id' of 1-128 characters.")))
            return
        if rid in self.running:
            self.outbox.put(rid, response(rid, 400, _bad(f"Request {rid!r} is still in flight on this connection.")))
            return
        if len(self.running) >= self.gw.settings.ws_max_in_flight:
            message = f"At most {self.gw.settings.ws_max_in_flight} requests may be in flight on one connection."
            self.outbox.put(rid, response(rid, 429, _bad(message, "too_many_requests")))
            return
        self.outbox.forget(rid)
        holder: dict[str, Any] = {}
        task = asyncio.create_task(self._guarded(rid, msg, holder))
        self.running[rid] = (time.monotonic_ns(), task, lambda: _stop(holder))
        task.add_done_callback(lambda _: self.running.pop(rid, None))

    def cancel(self, rid: str) -> None:
        entry = self.running.get(rid)
        if entry is None or entry[2] is None:
            return
        began, task, stop = entry
        self.running[rid] = (began, task, None)
        stop()
        self.outbox.end(rid, _tagged("cancelled", rid))

    async def close(self) -> None:
        for rid in list(self.running):
            entry = self.running.get(rid)
            if entry is not None and entry[2] is not None:
                entry[2]()
        tasks = [task for _, task, _ in self.running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_GRACE_S)
        self.outbox.close()

    async def _guarded(self, rid: str, msg: Incoming, holder: dict[str, Any]) -> None:
        try:
            await self._serve(rid, msg, holder)
        except Exception:  # a bug: this request still gets an answer, the others go on
            log.exception("WebSocket request %r failed", rid)
            error = InternalError("The gateway failed on this request.")
            self.outbox.put(rid, response(rid, error.status, prompt_shapes.error(Failure.from_error("", error))))

    async def _serve(self, rid: str, msg: Incoming, holder: dict[str, Any]) -> None:
        received_ns = time.time_ns()
        if msg.api == "prompt":
            await self._prompt(rid, msg, holder, received_ns)
            return
        api = BY_NAME.get(msg.api)
        if api is None:  # a name the table has no JSON row for (yet)
            self.outbox.put(rid, response(rid, 400, _bad(f"'api' {msg.api!r} is not served on the WebSocket.")))
            return
        try:
            parsed = api.parse(bytes(msg.body))
            refuse_refs(parsed.task)
            kind = http_relay.answer_kind(api.media_type(parsed), parsed.stream)
            if kind == "bytes":
                raise InvalidRequest("This request's answer is not JSON: ask for it as events, or over HTTP.")
        except GatewayError as exc:
            self.outbox.put(rid, response(rid, exc.status, api.error_body(Failure.from_error(rid, exc))))
            return
        session = BusSession(
            self.gw, api.name, parsed.model, parsed.stream, received_ns, new_id(received_ns), origin="ws"
        )
        holder["session"] = session
        try:
            parsed, caller = await conversations.resume(self.gw, api, parsed, self.api_key)
            await session.publish(
                self.api_key,
                parsed.body,
                parsed.embeddings,
                raw=parsed.raw,
                traceparent=self.traceparent,
                task=parsed.task,
            )
            fmt = api.renderer(RequestView(session.id, session.created, session.model, parsed))
            if kind == "json":
                whole = await session.collect()
                if isinstance(whole, Final):
                    finish = task_answers.finisher(self.gw, parsed.task, lambda: self.public_base)
                    if finish is not None:
                        await finish(whole)
                    body = fmt.final(whole)
                    await conversations.keep(self.gw, api, parsed, fmt, caller)
                    self.outbox.put(rid, response(rid, 200, body, session.id))
                elif whole is not None:
                    self.outbox.put(rid, response(rid, whole.status, fmt.error(whole), session.id))
                return
            await self._relay(rid, session, fmt, lambda: conversations.keep(self.gw, api, parsed, fmt, caller))
        except GatewayError as exc:
            body = api.error_body(Failure.from_error(session.id, exc))
            self.outbox.put(rid, response(rid, exc.status, body, session.id))
        finally:
            session.close()

    async def _relay(self, rid: str, session: BusSession, fmt: Any, keep: Callable[[], Awaitable[None]]) -> None:
        reply = await session.next_reply(session.first_timeout())
        started = False
        while True:
            if reply is None:  # cancelled, or dropped for a slow reader
                await session.cancel()
                return
            if isinstance(reply, Chunk):
                started = True
                for message in events_of(rid, fmt.chunk(reply)):
                    self.outbox.put(rid, message)
            elif isinstance(reply, Final):
                frames = fmt.end(reply)
                await keep()
                for message in events_of(rid, frames):
                    self.outbox.put(rid, message)
                self.outbox.put(rid, _tagged("done", rid, request_id=session.id))
                return
            else:
                if reply.code == StageTimeout.code:
                    await session.cancel()
                session.record(reply)
                if not started:
                    self.outbox.put(rid, response(rid, reply.status, fmt.error(reply)))
                else:
                    for message in events_of(rid, fmt.stream_error(reply)):
                        self.outbox.put(rid, message)
                    self.outbox.put(rid, _tagged("done", rid, request_id=session.id))
                return
            reply = await session.next_reply(self.gw.settings.stream_idle_timeout_s)

    async def _prompt(self, rid: str, msg: Incoming, holder: dict[str, Any], received_ns: int) -> None:
        call = PromptCall(
            self.gw,
            msg.slug,
            msg.variables,
            request_id=new_id(received_ns),
            received_ns=received_ns,
            origin="ws",
            api_key=self.api_key,
            stream=msg.stream,
            test=msg.test,
            traceparent=self.traceparent,
        )
        holder["call"] = call

        async def on_text(text: str) -> None:
            for message in events_of(rid, prompt_shapes.sse_delta(text)):
                self.outbox.put(rid, message)

        result = await call.run(on_text if msg.stream else None)
        if call.cancelled:
            return
        if isinstance(result, ApiAnswer):
            self.outbox.put(rid, response(rid, 200, prompt_shapes.answer(result), call.id))
        else:
            self.outbox.put(rid, response(rid, result.status, prompt_shapes.error(result), call.id))


def _stop(holder: dict[str, Any]) -> None:
    """End a request from outside: its relay sees the client gone and cancels upstream."""
    if "call" in holder:
        holder["call"].cancel()
    elif "session" in holder:
        holder["session"].queue.put_nowait(DISCONNECTED)


def _bad(message: str, code: str = "invalid_request") -> bytes:
    error = InvalidRequest(message, code=code)
    return prompt_shapes.error(Failure.from_error("", error))


async def serve_websocket(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    api_key = header(scope, b"authorization")
    try:
        if api_key is None:
            api_key = await asyncio.wait_for(_first_auth(receive), AUTH_TIMEOUT_S)
        key = policy.authenticate(api_key, gw.keys.by_hash, time.time_ns() // 1_000_000)
    except (GatewayError, TimeoutError) as exc:
        error = exc if isinstance(exc, GatewayError) else InvalidRequest("No auth message came in time.")
        body = prompt_shapes.error(Failure.from_error("", error))
        await send({"type": "websocket.send", "text": response("", error.status, body).decode()})
        await send({"type": "websocket.close", "code": 1008, "reason": error.code})
        return
    except _Gone:
        return
    base = public_url.public_base(scope, trusted_proxies())
    conn = Connection(gw, send, api_key or "", header(scope, b"traceparent") or "", base)
    writer = asyncio.create_task(conn.outbox.run())
    conn.outbox.put("", _json.encode({"type": "ready", "key_id": key.id}))
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
            raw = event.get("text") or event.get("bytes") or b""
            try:
                msg = decode_json(_decode_incoming, raw.encode() if isinstance(raw, str) else raw)
            except GatewayError as exc:
                conn.outbox.put("", response("", exc.status, _bad(exc.message, exc.code)))
                continue
            if msg.type == "request":
                conn.start(msg)
            elif msg.type == "cancel":
                conn.cancel(msg.id)
    finally:
        await conn.close()
        writer.cancel()


class _Gone(Exception):
    pass


async def _first_auth(receive: Receive) -> str:
    event = await receive()
    if event["type"] == "websocket.disconnect":
        raise _Gone
    raw = event.get("text") or event.get("bytes") or b""
    msg = decode_json(_decode_incoming, raw.encode() if isinstance(raw, str) else raw)
    if msg.type != "auth" or not msg.api_key:
        raise InvalidRequest('Authenticate first: {"type": "auth", "api_key": "<key>"}, or an Authorization header.')
    return msg.api_key if msg.api_key.lower().startswith("bearer ") else f"Bearer {msg.api_key}"
