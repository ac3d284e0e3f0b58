"""The ASGI app: a bare router in front of the endpoint modules.

Bare ASGI rather than a framework on the chat path: measured here, Starlette
halves requests per second for a 1 KB JSON POST (DESIGN.md §6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ingress import endpoint, files_endpoint, image_content, models, prompt_endpoint, responses_by_id, ws_relay
from ingress.api_bus import ApiBus
from ingress.batches_endpoint import BatchesEndpoint
from ingress.batches_endpoint import matches as is_batches_path
from ingress.compression import Compression
from ingress.dashboard import plotly_bundle
from ingress.file_sweeper import FileSweeper
from ingress.gateway import Gateway
from ingress.http import Message, Receive, Scope, Send, header, send_bytes, send_gateway_error, send_json
from ingress.jobs import JobRunner
from ingress.mcp_bus import McpBus
from ingress.prompt_bus import PromptBus
from ingress.rest_endpoint import RestDoor
from schemas.errors import GatewayBusy, GatewayError, InternalError, InvalidRequest
from schemas.ids import new_id
from schemas.replies import Failure
from schemas.rest import PATH_PREFIX as SERVICES_PREFIX
from services.apis import docs_page, openapi
from services.apis.table import APIS, BY_PATH
from services.bus import metrics, process
from services.config import GatewaySettings

if TYPE_CHECKING:
    from litestar import Litestar

    from ingress.mcp_calls import McpCalls
    from ingress.mcp_endpoint import McpEndpoint

log = logging.getLogger("sluice.ingress")


# /mcp and /mcp/<tenant> (``ingress.mcp_endpoint.PATH``), told apart here
# without importing that module: it imports the mcp SDK, which the ingress
# loads only with the first MCP request (see ``IngressApp._mcp_endpoint``).
MCP_PATH = "/mcp"


def _is_mcp(path: str) -> bool:
    return path == MCP_PATH or path.startswith(MCP_PATH + "/")


# The admin API (/admin/), the dashboard and the developer portal are
# Litestar apps, each made by its first request (``IngressApp._sub_app``):
# Litestar and the three apps are ~30 MB of an ingress that may never serve
# them. Their paths are told apart here without importing them
# (``ingress.dashboard.app.PREFIX``, ``ingress.portal.views.PREFIX``).
ADMIN_PATH = "/admin/"
DASHBOARD_PATH = "/dashboard"
PORTAL_PATH = "/portal"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _sub_app_of(path: str) -> str:
    """The attribute of ``IngressApp`` whose app serves ``path``, or ""."""
    if path.startswith(ADMIN_PATH):
        return "admin"
    if _under(path, DASHBOARD_PATH):
        return "dashboard"
    return "portal" if _under(path, PORTAL_PATH) else ""


def _admin(gw: Gateway) -> Litestar:
    from ingress.admin import app

    return app.build(gw, gw.store)


def _dashboard(gw: Gateway) -> Litestar:
    from ingress.dashboard import app

    return app.build(gw, gw.store)


def _portal(gw: Gateway) -> Litestar:
    from ingress.portal import app

    return app.build(gw, gw.store)


# Attribute of ``IngressApp`` -> what makes it.
_SUB_APPS: dict[str, Callable[[Gateway], Litestar]] = {"admin": _admin, "dashboard": _dashboard, "portal": _portal}


# Paths served on GET only: another method gets a 405, not a 404.
_GET_PATHS = ("/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


def _id_header(request_id: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-request-id", request_id.encode())]


def _api_of(path: str) -> str:
    api = BY_PATH.get(path)
    return api.name if api is not None else ""


async def _refuse(gw: Gateway, send: Send, request_id: str, received_ns: int, path: str, error: GatewayError) -> None:
    """Answer with the error, and record the request as refused."""
    await send_gateway_error(send, error, _id_header(request_id))
    gw.record(request_id, received_ns, _api_of(path), "", False, Failure.from_error(request_id, error), [])


async def _serve_docs(gw: Gateway, scope: Scope, path: str, send: Send) -> None:
    """Generated per request from the current prompts: a published API, or a
    label move, shows at once."""
    doc = openapi.document(APIS, gw.prompt_book.published())
    if path == "/openapi.json":
        return await send_json(send, 200, doc)
    host = header(scope, b"host") or "127.0.0.1:8080"
    page = docs_page.render(doc, f"http://{host}").encode()
    await send_bytes(send, 200, page, [(b"content-type", b"text/html; charset=utf-8")])


class IngressApp:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.gw: Gateway | None = None
        self.admin: Litestar | None = None
        self.dashboard: Litestar | None = None
        self.portal: Litestar | None = None
        self.rest: RestDoor | None = None
        self.prompt_bus: PromptBus | None = None
        self.api_bus: ApiBus | None = None
        self.jobs: JobRunner | None = None
        self.file_sweeper: FileSweeper | None = None
        self.batches: BatchesEndpoint | None = None
        # MCP's doors: /mcp's endpoint is made with its first request; the
        # bus door listens from the start and makes its part with its first
        # message. Both share one McpCalls (``_mcp_calls``).
        self.mcp: McpEndpoint | None = None
        self.mcp_bus: McpBus | None = None
        self._calls: McpCalls | None = None
        self._mcp_starting = asyncio.Lock()
        self._sub_app_building = asyncio.Lock()
        # Model and prompt-API requests this process holds now (see ``max_in_flight``).
        self.in_flight = 0
        self.compression = Compression()
        # Set on SIGTERM: every answer closes its connection (see ``python -m ingress``).
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gw
        assert gw is not None, "lifespan not run"
        if sub := _sub_app_of(scope["path"]):
            app = getattr(self, sub) or await self._sub_app(sub, send)
            if app is not None:
                await app(scope, receive, send)  # type: ignore[arg-type]
            return
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        scope["sluice.received_ns"], scope["sluice.request_id"] = received_ns, request_id
        path, method = scope["path"].rstrip("/"), scope["method"]
        api = BY_PATH.get(path)
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            if self.draining and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            if _is_mcp(path):
                return await self._mcp(scope, receive, tracked_send)
            if scope["path"].startswith(SERVICES_PREFIX):
                # As the service wrote it: the caller's Accept-Encoding went to the service.
                return await self._rest(scope, receive, tracked_send)
            if files_endpoint.matches(path):
                # As kept: a file's content goes with its length (a client checks it against the file's bytes).
                return await self._files(scope, receive, tracked_send)
            # Compressed as the client asks (ingress.compression).
            answer = self.compression.wrap(scope, tracked_send)
            if is_batches_path(path):
                return await self._batches(scope, receive, answer)
            slug = prompt_endpoint.slug_of(path)
            if method == "POST" and (api is not None or slug is not None):
                if self.in_flight >= self.settings.max_in_flight:
                    busy = GatewayBusy(
                        "This gateway process holds as many requests as it may; retry shortly.", retry_after_s=1
                    )
                    return await _refuse(gw, answer, request_id, received_ns, path, busy)
                self.in_flight += 1
                try:
                    if api is not None:
                        return await endpoint.serve_api(gw, api, scope, receive, answer)
                    assert slug is not None
                    return await prompt_endpoint.serve_prompt_api(gw, slug, scope, receive, answer)
                finally:
                    self.in_flight -= 1
            if image_content.matches(path):
                return await image_content.serve(gw, scope, answer)
            if responses_by_id.matches(path):
                return await responses_by_id.serve_response_by_id(gw, scope, answer)
            if path == "/v1/models" and method == "GET":
                return await models.list_models(gw, scope, answer)
            if path in ("/openapi.json", "/docs") and method == "GET":
                return await _serve_docs(gw, scope, path, answer)
            if path == "/healthz" and method == "GET":
                status = {"status": "ok" if gw.nc.is_connected else "degraded", "nats": gw.nc.is_connected}
                return await send_json(answer, 200, status, _id_header(request_id))
            if path == "/metrics" and method == "GET":
                metrics.flush()  # this process's own, up to now
                return await send_bytes(
                    answer, 200, metrics.exposition(), [(b"content-type", metrics.CONTENT_TYPE.encode())]
                )
            if path == "/readyz" and method == "GET":
                ready, report = gw.ready()
                return await send_json(answer, 200 if ready else 503, report, _id_header(request_id))
            if api is not None or slug is not None or path in _GET_PATHS:
                error: GatewayError = InvalidRequest(
                    f"Method {method} is not allowed on {path}.", status=405, code="method_not_allowed"
                )
            else:
                error = InvalidRequest(f"Unknown request URL: {method} {path}.", status=404, code="unknown_url")
            await _refuse(gw, answer, request_id, received_ns, path, error)
        except Exception:
            # A bug, not the caller's fault: still one JSON answer with the id, and a row.
            log.exception("unhandled error on %s %s (request %s)", method, path, request_id)
            error = InternalError(f"The gateway failed on this request; its id is {request_id}.")
            if not started:
                await send_gateway_error(send, error, _id_header(request_id))
            gw.record(request_id, received_ns, _api_of(path), "", False, Failure.from_error(request_id, error), [])

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        """MCP's messages come by POST: each holds a slot of ``max_in_flight``
        as a model request does (a tool call may wait on its upstream as long)."""
        mcp = self.mcp if self.mcp is not None else await self._mcp_endpoint()
        if scope["method"] != "POST":
            return await mcp.serve(scope, receive, send)
        if self.in_flight >= self.settings.max_in_flight:
            from ingress.mcp_endpoint import refuse  # loaded with the endpoint above

            busy = GatewayBusy("This gateway process holds as many requests as it may; retry shortly.", retry_after_s=1)
            return await refuse(send, busy)
        self.in_flight += 1
        try:
            await mcp.serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _rest(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A call to a REST service holds a slot of ``max_in_flight`` as a model request does."""
        assert self.rest is not None, "lifespan not run"
        if self.in_flight >= self.settings.max_in_flight:
            busy = GatewayBusy("This gateway process holds as many requests as it may; retry shortly.", retry_after_s=1)
            return await self.rest.serve(scope, receive, send, busy=busy)
        self.in_flight += 1
        try:
            await self.rest.serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _files(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A Files API call holds a slot of ``max_in_flight`` as a model
        request does: an upload or a download streams for as long as its
        file takes, and each holds its window of slices."""
        assert self.gw is not None, "lifespan not run"
        if self.in_flight >= self.settings.max_in_flight:
            busy = GatewayBusy("This gateway process holds as many requests as it may; retry shortly.", retry_after_s=1)
            return await files_endpoint.serve_files(self.gw, scope, receive, send, busy=busy)
        self.in_flight += 1
        try:
            await files_endpoint.serve_files(self.gw, scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _batches(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A Batch API call holds a slot of ``max_in_flight`` as a Files API
        call does: a create reads its whole input file, twice."""
        assert self.batches is not None, "lifespan not run"
        if self.in_flight >= self.settings.max_in_flight:
            busy = GatewayBusy("This gateway process holds as many requests as it may; retry shortly.", retry_after_s=1)
            return await self.batches.serve(scope, receive, send, busy=busy)
        self.in_flight += 1
        try:
            await self.batches.serve(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _sub_app(self, name: str, send: Send) -> Litestar | None:
        """The admin API's, the dashboard's or the portal's app (``name`` is
        its attribute), made by its first request; None, answered with a
        500 and logged, if it cannot be made (a broken install: the next
        request tries again). Made in a thread: a build takes a good part of
        a second, which the event loop (every other request of this process)
        should not wait. The lock keeps two first requests from making two."""
        async with self._sub_app_building:
            app = getattr(self, name)
            if app is None:
                assert self.gw is not None, "lifespan not run"
                try:
                    app = await asyncio.to_thread(_SUB_APPS[name], self.gw)
                except Exception:
                    log.exception("the %s could not be made", name)
                    await send_gateway_error(send, InternalError(f"The {name} cannot start: see the ingress log."))
                    return None
                setattr(self, name, app)
            return app

    async def _mcp_endpoint(self) -> McpEndpoint:
        """/mcp's endpoint, made and started by the first request. The SDK
        is imported here, not at the top: ~50 MB of the process's memory an
        ingress nobody asks for MCP should not hold. The lock keeps two
        first requests from making two (each would run a session manager)."""
        async with self._mcp_starting:
            if self.mcp is None:
                from ingress.mcp_endpoint import McpEndpoint

                assert self.gw is not None, "lifespan not run"
                endpoint = McpEndpoint(self.gw, self._mcp_calls())
                await endpoint.start()
                self.mcp = endpoint
            return self.mcp

    def _mcp_calls(self) -> McpCalls:
        """What both MCP doors answer with, made by the first of them used
        (imported here for the reason ``_mcp_endpoint`` gives)."""
        if self._calls is None:
            from ingress.mcp_calls import McpCalls

            assert self.gw is not None, "lifespan not run"
            self._calls = McpCalls(self.gw)
        return self._calls

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.gw is not None, "lifespan not run"
        if scope["path"].rstrip("/") != ws_relay.PATH:
            await send({"type": "websocket.close", "code": 1008, "reason": "unknown_url"})
            return
        await ws_relay.serve_websocket(self.gw, scope, receive, send)

    async def serving(self) -> None:
        """The server listens now (see ``python -m ingress``)."""
        assert self.gw is not None, "lifespan not run"
        await self.gw.serving()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    plotly_bundle.check()  # the pages' charts: a broken install is said at start
                    self.gw = Gateway(await process.connect("ingress"), self.settings)
                    metrics.sample(metrics.HTTP_IN_FLIGHT, lambda: self.in_flight)
                    self.gw.in_flight = lambda: self.in_flight
                    await self.gw.start()
                    self.prompt_bus = PromptBus(self.gw)
                    await self.prompt_bus.start()
                    self.api_bus = ApiBus(self.gw)
                    await self.api_bus.start()
                    self.jobs = JobRunner(self.gw)
                    await self.jobs.start()
                    self.gw.queue_job = self.jobs.intake.queue
                    self.batches = BatchesEndpoint(self.gw, self.jobs.batches)
                    self.file_sweeper = FileSweeper(self.gw)
                    self.file_sweeper.start()
                    self.mcp_bus = McpBus(self.gw, self._mcp_calls)
                    await self.mcp_bus.start()
                    self.rest = RestDoor(self.gw)
                except Exception as exc:
                    log.exception("ingress start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.jobs is not None:
                    await self.jobs.stop()
                if self.file_sweeper is not None:
                    await self.file_sweeper.stop()
                if self.prompt_bus is not None:
                    await self.prompt_bus.stop()
                if self.api_bus is not None:
                    await self.api_bus.stop()
                if self.mcp_bus is not None:
                    await self.mcp_bus.stop()
                async with self._mcp_starting:  # not while a first request is starting it
                    if self.mcp is not None:
                        await self.mcp.stop()
                if self.gw is not None:
                    await self.gw.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
