"""``/services/<slug>[/v<N>]/<path>``: a call to a REST service published
through the gateway, relayed as it comes.

The door checks what it can alone, before it reads the body: the caller's
gateway key, then by policy's own rules (``services.rest_policy``) a path
safe to put behind an instance's base URL, the service and its lifecycle,
the method and the headers passed on (``services.rest_door``); then the
body within the service's cap. It matches the route template for the row
(``services.openapi_routes``) and publishes an envelope of api "rest"
through a ``BusSession``, as every door does. Policy checks the key again (and approval, limits, budget), routing
picks an instance, the provider stage's HTTP adapter calls it.

The service gets the proxy headers (``x-forwarded-for``, ``-proto``,
``-host``) the door makes from the caller's connection
(``services.forwarded``): the caller's own pass on only from a proxy the
ingress trusts, with that proxy's address appended.

The answer is relayed as its replies come: the first ``Chunk.head`` (or
``Final.rest.head``, for an answer that fit in one reply) becomes the
response's status and headers, and each ``data`` a part of its body, sent
at once. An answer that came whole in the ``Final`` also says what it cost
(``x-sluice-cost-pico-usd``, as a model's answer does: the portal's try-it
shows it); a streamed one's head goes out before its cost is known, and
HTTP/1.1 clients do not read trailers, so it has none (its row has it).

A download of any size or a stream of server-sent events passes through
without any process holding it: the door paces the provider
(``services.flow_window``: at most ``flow_window.WINDOW`` sent past what
the door wrote to the client's socket), so a client that reads slowly
slows the service down rather than fill the ingress. The request's deadline
bounds the wait for the head only; after it, each wait for the next part
is bounded by the service's read timeout, and so is each write to a client
that stopped reading (then the call is cancelled and the response cut).
``MAX_BACKLOG`` still cuts a provider that does not pace (one that predates
it). A failure before the head is an OpenAI-shaped JSON error with its
status; after it, the status is gone, so the response is cut (the
connection closes before the body's end, which every HTTP client reports
as an error rather than a short body). A client that leaves cancels the
call upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import quote

import msgspec

from ingress.endpoint import request_of
from ingress.gateway import Gateway
from ingress.http import JSON_HEADERS, ClientDisconnected, Receive, Scope, Send, header, read_body, retry_after
from ingress.http import send_bytes as send_whole
from ingress.http_relay import route_headers
from ingress.peer import peer_of, trusted_proxies
from ingress.replies import DISCONNECTED
from ingress.session import DEADLINE_GRACE_S, BusSession
from schemas.control import ApiKey
from schemas.errors import ClientClosed, GatewayError, StageTimeout, UpstreamError
from schemas.replies import Chunk, Failure, Final
from schemas.rest import RestCall, RestHead, RestResult, RestService, service_key, service_model
from services import flow_window, policy, rest_door, rest_policy
from services.apis import rate_headers
from services.apis.openai_shapes import error_body
from services.forwarded import Proxies, replace_proxy_headers
from services.openapi_routes import RouteTables

log = logging.getLogger("sluice.ingress.rest")

# Body parts that arrived together go out in one write, up to this much: a
# burst costs one trip through the server, and a backlog is never joined whole.
FLUSH_BYTES = 256 * 1024
# Replies waiting while the client does not read. A paced provider sends
# at most a window of them (16 slices of 64 KB); one that does not pace
# (older than flow control) would have the ingress hold what a slow reader
# has not read: past this many (64 MB of a download) the call is cancelled
# and the response cut, rather than held for it.
MAX_BACKLOG = 1024
# A write to a client that stopped reading waits this much longer than the
# service's read timeout: the provider, whose window has stayed shut as
# long, ends the call first and its row says why (slow_reader).
WRITE_GRACE_S = 1.0
# What an envelope holds besides the body (headers, path, slip, spans): a
# body may take the rest of what nats-server takes in one message.
ENVELOPE_ROOM = 128 * 1024

_json = msgspec.json.Encoder()
NewSession = Callable[..., BusSession]


def head_of(reply: Chunk | Final) -> RestHead | None:
    if isinstance(reply, Chunk):
        return reply.head
    return reply.rest.head if reply.rest is not None else None


class RestDoor:
    """What every REST call of this process shares: the gateway, and each
    service's route table (compiled once per version of its document)."""

    def __init__(self, gw: Gateway, new_session: NewSession = BusSession, proxies: Proxies | None = None) -> None:
        self.gw = gw
        self.routes = RouteTables()
        self.new_session = new_session
        # Peers whose proxy headers are a chain to append to (else replaced).
        self.proxies = proxies if proxies is not None else trusted_proxies()

    async def serve(self, scope: Scope, receive: Receive, send: Send, *, busy: GatewayError | None = None) -> None:
        """Serve one call; ``busy``: the process holds all it may, the call is refused with it."""
        exchange = RestExchange(self, scope, receive, send)
        if busy is not None:
            exchange.call.service = rest_door.slug_of(exchange.raw_path) or ""
            await exchange.refuse(busy)
            return
        await exchange.serve()

    def body_cap(self, service: RestService) -> int:
        """The service's cap on request bodies, within what one bus message carries."""
        return max(0, min(service.max_request_bytes, self.gw.nc.max_payload - ENVELOPE_ROOM))


class RestExchange:
    """One call, from its request line to the last byte of its answer."""

    def __init__(self, door: RestDoor, scope: Scope, receive: Receive, send: Send) -> None:
        self.door = door
        self.gw = door.gw
        self.scope, self.receive, self.send = scope, receive, send
        self.received_ns, self.id = request_of(scope)
        # As the caller encoded it: it goes upstream so (an upstream decodes its own paths).
        raw = scope.get("raw_path") or quote(scope["path"]).encode()
        self.raw_path: str = raw.decode("latin-1")
        # Filled in as the checks pass: a refused call's row says as much as was known.
        self.call = RestCall(service="", method=scope["method"][:16])
        self.service: RestService | None = None
        self.key: ApiKey | None = None
        # On every answer: the request id, and a deprecated service's lifecycle.
        self.headers: list[tuple[bytes, bytes]] = [(b"x-request-id", self.id.encode())]
        # Bounds each write of the body (``_write``).
        self._stall: asyncio.Timeout | None = None
        # The answer's status and the body bytes written to the client: the
        # row of a call cut after its head, if no stage recorded it.
        self._status = 0
        self._relayed = 0

    @property
    def model(self) -> str:
        return service_model(self.call.service, self.call.version) if self.call.service else ""

    async def serve(self) -> None:
        try:
            authorization = self._admit()
            assert self.service is not None
            # Sent on as the caller wrote it (its Content-Encoding too): the service reads it.
            self.call.body = await read_body(
                self.scope,
                self.receive,
                self.door.body_cap(self.service),
                self.gw.settings.body_timeout_s,
                decode=False,
            )
        except ClientDisconnected:  # gone before its body arrived: nothing to answer, still a row
            self._record(self._failure(ClientClosed("The client closed the connection.")), client_disconnected=True)
            return
        except GatewayError as exc:
            await self.refuse(exc)
            return
        session = self._session()
        try:
            try:
                await session.publish(
                    authorization,
                    rest=self.call,
                    traceparent=header(self.scope, b"traceparent") or "",
                    flow_window=flow_window.WINDOW,
                )
            except GatewayError as exc:
                await self.refuse(exc)
                return
            watcher = asyncio.create_task(self._watch_disconnect(session))
            try:
                await self._relay(session)
            finally:
                watcher.cancel()
        finally:
            session.close()

    def _admit(self) -> str | None:
        """Every check the door makes before it reads the body; the caller's
        key header as policy reads it."""
        scope, gw, raw_path = self.scope, self.gw, self.raw_path
        self.call.service = rest_door.slug_of(raw_path) or ""
        # The key first: who may not call learns nothing of what exists.
        authorization = rest_door.gateway_key(lambda name: header(scope, name))
        self.key = policy.authenticate(authorization, gw.keys.by_hash, time.time_ns() // 1_000_000)
        services = gw.rest_services.items
        query = scope.get("query_string", b"").decode("latin-1")
        target = rest_door.target_of(raw_path, query, rest_door.has_version_in(services))
        self.call.version, self.call.path = target.version, target.path_and_query
        service = services.get(service_key(target.slug, target.version))
        if service is not None:
            self.service = service
            self.headers += rest_door.lifecycle_headers(service)
            self.call.route = self.door.routes.for_service(service.key, service.openapi).match(target.path)
        # Policy's own rule (a draft 404, retired 410, a method it does not take 405), applied here too.
        service = rest_policy.find_service(self.call, services)
        peer, scheme = peer_of(scope)
        self.call.headers = replace_proxy_headers(
            rest_door.forwarded_headers(service, scope["headers"]),
            peer,
            scheme,
            header(scope, b"host") or "",
            trusted=self.door.proxies.trusts(peer),
        )
        return authorization

    def _session(self) -> BusSession:
        assert self.service is not None and self.key is not None
        service, settings = self.service, self.gw.settings
        # A service may take longer to answer than a model request is given.
        timeout_s = max(settings.request_timeout_s, service.connect_timeout_s + service.read_timeout_s)
        session = self.door.new_session(
            self.gw,
            "rest",
            self.model,
            False,
            self.received_ns,
            self.id,
            deadline_ns=self.received_ns + int(timeout_s * 1e9),
        )
        session.key_id, session.tenant_id = self.key.id, self.key.tenant_id
        return session

    async def _watch_disconnect(self, session: BusSession) -> None:
        # The body is read: the next message is the client leaving.
        while (await self.receive())["type"] != "http.disconnect":
            pass
        session.queue.put_nowait(DISCONNECTED)

    async def _relay(self, session: BusSession) -> None:
        reply = await session.next_reply(session.first_timeout())
        if reply is None:
            await session.cancel()
            return
        if isinstance(reply, Failure):  # nothing sent yet: a plain JSON error with its status
            await self._send_failure(reply)
            session.record(reply)
            return
        head = head_of(reply)
        if head is None:
            # The provider stage's protocol says otherwise: end it, say so (the stage records its row).
            log.error("request %s: the REST answer's first reply carried no head", self.id)
            await session.cancel()
            await self._send_failure(
                Failure.from_error(self.id, UpstreamError("The service's answer came without its status.", status=502))
            )
            return
        assert self.service is not None
        headers = rest_door.answer_headers(head.headers) + self.headers + route_headers(reply)
        await self.send({"type": "http.response.start", "status": head.status, "headers": headers})
        self._status = head.status
        try:
            async with asyncio.timeout(None) as self._stall:
                await self._relay_body(session, reply)
        except TimeoutError:
            if self._stall is None or not self._stall.expired():
                raise
            await session.cancel()
            log.warning("request %s: the client stopped reading; the REST answer was cut", self.id)

    async def _relay_body(self, session: BusSession, reply: Chunk | Final | Failure | None) -> None:
        """The body, from the head's reply on, each part written as it comes
        (those that came together in one write)."""
        assert self.service is not None
        idle = max(self.gw.settings.stream_idle_timeout_s, self.service.read_timeout_s) + DEADLINE_GRACE_S
        pending: list[bytes] = []
        size = 0
        while True:
            if reply is None:  # the client left
                await session.cancel()
                return
            if isinstance(reply, Final):
                pending.append(reply.data)
                await self._write({"type": "http.response.body", "body": b"".join(pending)})
                return
            if isinstance(reply, Failure):
                # The status went out with the head: all that is left is to cut the body short.
                await self._flush(pending, session)
                if reply.code == StageTimeout.code:
                    await session.cancel()
                if reply.rest is None:  # made here (no stage sent it): what this door relayed
                    reply.rest = RestResult(status=self._status, response_bytes=self._relayed)
                session.record(reply)
                log.warning("request %s: the REST answer was cut after its head: %s", self.id, reply.message)
                return
            if reply.data:
                pending.append(reply.data)
                size += len(reply.data)
            if size >= FLUSH_BYTES or not session.has_more():
                await self._flush(pending, session)
                size = 0
                if session.queue.qsize() > MAX_BACKLOG:
                    await session.cancel()
                    log.warning("request %s: the client read too slowly; the REST answer was cut", self.id)
                    return
            reply = await session.next_reply(idle)

    async def _flush(self, pending: list[bytes], session: BusSession) -> None:
        """Write what is pending; the provider may send as much more."""
        if pending:
            body = b"".join(pending) if len(pending) > 1 else pending[0]
            pending.clear()
            await self._write({"type": "http.response.body", "body": body, "more_body": True})
            self._relayed += len(body)
            await session.wrote(len(body))

    async def _write(self, message: dict[str, object]) -> None:
        """A write of the body, within the service's read timeout: the
        server's ``send`` waits while the client's socket is full."""
        assert self.service is not None and self._stall is not None
        loop = asyncio.get_running_loop()
        self._stall.reschedule(loop.time() + self.service.read_timeout_s + WRITE_GRACE_S)
        await self.send(message)
        self._stall.reschedule(None)

    async def _send_failure(self, failure: Failure, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = JSON_HEADERS + self.headers + retry_after(failure.retry_after_s) + rate_headers.openai(failure.rate)
        body = _json.encode(error_body(failure.type, failure.code, failure.message))
        await send_whole(self.send, failure.status, body, headers + (extra or []))

    def _failure(self, exc: GatewayError) -> Failure:
        key = self.key
        return Failure.from_error(self.id, exc, key_id=key.id if key else "", tenant_id=key.tenant_id if key else "")

    async def refuse(self, exc: GatewayError) -> None:
        """Answer an error of the door's own, and record the call as refused."""
        failure = self._failure(exc)
        allow = []
        if exc.status == 405 and self.service is not None:
            allow = [(b"allow", rest_door.allowed_methods(self.service).encode())]
        await self._send_failure(failure, allow)
        self._record(failure)

    def _record(self, failure: Failure, *, client_disconnected: bool = False) -> None:
        self.gw.record(
            self.id,
            self.received_ns,
            "rest",
            self.model,
            False,
            failure,
            [],
            client_disconnected=client_disconnected,
            rest=self.call,
        )
