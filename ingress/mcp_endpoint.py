"""``/mcp`` and ``/mcp/<tenant>``: MCP's Streamable HTTP transport, served
by the ``mcp`` SDK's low-level Server and its session manager, run from the
ingress's lifespan in stateless mode (any replica serves any request).

Before the SDK sees a request this door authenticates its Sluice key
(``Authorization: Bearer``, by the ingress's own key mirror), keeps a
tenant's endpoint to that tenant's keys, and does the session part of the
protocol itself (``ingress.mcp_sessions``): ``initialize`` opens a session
whose id goes back as ``Mcp-Session-Id``; a request naming one is served
only if it is this key's (else 404, and nothing runs); ``DELETE`` ends it.
A request naming no session is served too, on its key alone (as MCP's
stateless 2026 revision and the bus door are). ``GET`` (a stream for the
server's own messages) is 405: the gateway sends none, and an open stream
per session would be memory per session.

The SDK's DNS-rebinding checks (Host, Origin) are off: every request
carries a key, which a page a browser was lured to does not have, and the
gateway answers under whatever host name it is deployed at.

This module imports the SDK (~50 MB of a process's memory with pydantic,
starlette and httpx2): ``ingress.app`` imports it, and makes and starts the
endpoint, with the first request to ``/mcp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mcp_types as mt
import msgspec
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import ErrorData

from ingress.gateway import Gateway
from ingress.http import ClientDisconnected, Message, Receive, Scope, Send, header, read_body, retry_after
from ingress.mcp_calls import Caller, CallFailed, McpCalls, authenticate, error_of
from ingress.mcp_sessions import McpSessions
from schemas import subjects
from schemas.errors import GatewayError, InvalidRequest, PermissionDenied, RecordNotFound

log = logging.getLogger("sluice.ingress.mcp")
# The SDK's transport logs a line at INFO for each request it ends ("Terminating
# session: None" in stateless mode): one log line per MCP message otherwise.
logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)

PATH = "/mcp"
SESSION_HEADER = b"mcp-session-id"
# Where the door leaves the caller for the SDK's handlers (``ctx.request.scope``).
CALLER = "sluice.mcp_caller"

_json = msgspec.json.Encoder()


class _Peek(msgspec.Struct):
    """Enough of a JSON-RPC message to tell an ``initialize`` and answer by id."""

    method: str = ""
    id: str | int | None = None


_peek = msgspec.json.Decoder(_Peek).decode


def matches(path: str) -> bool:
    return path == PATH or path.startswith(PATH + "/")


def _peeked(body: bytes) -> _Peek:
    try:
        return _peek(body)
    except msgspec.DecodeError:  # the SDK answers it (-32700, -32600)
        return _Peek()


def _package_version() -> str:
    try:
        return version("sluice")
    except PackageNotFoundError:
        return ""


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    request = ctx.request
    caller = request.scope.get(CALLER) if request is not None else None
    if not isinstance(caller, Caller):
        raise MCPError(mt.INTERNAL_ERROR, "The request reached the MCP server without a caller.")
    return caller


def _raised(exc: GatewayError | CallFailed) -> MCPError:
    return MCPError.from_error_data(error_of(exc))


class McpEndpoint:
    """``calls``: the ``McpCalls`` shared with the bus door, if it made them first."""

    def __init__(self, gw: Gateway, calls: McpCalls | None = None) -> None:
        self.gw = gw
        self.calls = calls if calls is not None else McpCalls(gw)
        self.sessions = McpSessions(gw.nc.jetstream(), gw.settings.mcp_session_ttl_s)
        self.server: Server[Any] = Server(
            "sluice",
            version=_package_version(),
            instructions="Sluice, an AI gateway: the tools, prompts and resources of the MCP servers this key may use.",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
        )
        self.manager = StreamableHTTPSessionManager(
            self.server,
            stateless=True,
            # One JSON answer per POST: this server sends no notifications
            # of its own, and an SSE answer costs ~0.7 ms more CPU a call.
            json_response=True,
            security_settings=None,
            max_request_body_size=gw.settings.max_body_bytes,
        )
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Run the SDK's session manager (its task group serves each
        request's server) in a task of its own: an anyio task group is left
        by the task that entered it, and the ingress starts the endpoint
        from the first request's task, which ends long before the shutdown."""
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(running), name="mcp-session-manager")
        await running

    async def _run(self, running: asyncio.Future[None]) -> None:
        try:
            async with self.manager.run():
                running.set_result(None)
                await self._stopping.wait()
        except Exception as exc:
            if not running.done():
                running.set_exception(exc)
            raise
        finally:
            if not running.done():  # cancelled before it ran
                running.cancel()

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._stopping.set()
        await asyncio.gather(self._runner, return_exceptions=True)

    # -- the door

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        gw, method = self.gw, scope["method"]
        tenant_id = scope["path"].rstrip("/")[len(PATH) + 1 :]
        rpc_id: str | int | None = None
        try:
            if tenant_id and tenant_id not in gw.mirrors[subjects.KV_TENANTS].items:
                raise RecordNotFound(f"Unknown request URL: {method} {scope['path']}.", code="unknown_url")
            traceparent = header(scope, subjects.TRACEPARENT_HEADER.encode()) or ""
            caller = authenticate(gw, header(scope, b"authorization"), "http", traceparent)
            if tenant_id and caller.key.tenant_id != tenant_id:
                raise PermissionDenied(
                    f"This MCP endpoint serves tenant {tenant_id!r}; key {caller.key.id!r} is not one of its keys. "
                    f"Use {PATH} instead.",
                    code="wrong_tenant",
                )
            session_id = header(scope, SESSION_HEADER)
            if method == "DELETE":
                if not session_id:
                    raise InvalidRequest("DELETE ends a session: send its Mcp-Session-Id header.", code="no_session")
                await self.sessions.end(session_id, caller.key, caller.secret_sha256)
                return await _send(send, 200, b"{}")
            if method != "POST":
                raise InvalidRequest(
                    f"Method {method} is not allowed on {PATH}: send JSON-RPC messages by POST "
                    "(this server sends no messages of its own, so it opens no GET stream).",
                    status=405,
                    code="method_not_allowed",
                )
            settings = gw.settings
            body = await read_body(scope, receive, settings.max_body_bytes, settings.body_timeout_s)
            peek = _peeked(body)
            rpc_id = peek.id
            if session_id:
                await self.sessions.check(session_id, caller.key, caller.secret_sha256)
            elif peek.method == "initialize" and peek.id is not None:
                session_id = await self.sessions.open(caller.key, caller.secret_sha256)
        except GatewayError as exc:
            return await refuse(send, exc, rpc_id)
        except ClientDisconnected:
            return
        scope[CALLER] = caller
        await _until_done_or_gone(self.manager.handle_request, scope, body, receive, _with_session(send, session_id))

    # -- the SDK's handlers

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListToolsResult:
        return self.calls.list_tools(_caller(ctx))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: mt.CallToolRequestParams
    ) -> mt.CallToolResult:
        try:
            return await self.calls.call_tool(_caller(ctx), params.name, params.arguments)
        except (GatewayError, CallFailed) as exc:
            raise _raised(exc) from None

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListPromptsResult:
        return self.calls.list_prompts(_caller(ctx))

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: mt.GetPromptRequestParams
    ) -> mt.GetPromptResult:
        try:
            return await self.calls.get_prompt(_caller(ctx), params.name, params.arguments)
        except (GatewayError, CallFailed) as exc:
            raise _raised(exc) from None

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: mt.PaginatedRequestParams | None
    ) -> mt.ListResourcesResult:
        return self.calls.list_resources(_caller(ctx))

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: mt.ReadResourceRequestParams
    ) -> mt.ReadResourceResult:
        try:
            return await self.calls.read_resource(_caller(ctx), params.uri)
        except (GatewayError, CallFailed) as exc:
            raise _raised(exc) from None


async def _until_done_or_gone(handle: Any, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Let the SDK answer the request, with the body this door already
    read; cancel it if the client leaves first. Answers are plain JSON
    (``json_response``), so the SDK itself listens for no disconnect (its
    SSE answers did, at ~0.7 ms of CPU a call): a call in flight is
    cancelled here, and with it the request on the bus."""
    gone = asyncio.Event()
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    answering = asyncio.ensure_future(handle(scope, replayed, send))
    watching = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((answering, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not answering.done():
            gone.set()
            answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering


def _with_session(send: Send, session_id: str | None) -> Send:
    """``send`` that tells the client its session on the answer's headers."""
    if not session_id:
        return send
    value = session_id.encode()

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", ()) if h[0].lower() != SESSION_HEADER]
            message = {**message, "headers": [*headers, (SESSION_HEADER, value)]}
        await send(message)

    return sending


async def refuse(send: Send, error: GatewayError, rpc_id: str | int | None = None) -> None:
    """Answer the HTTP request with the error, before the SDK saw it."""
    extra = retry_after(error.retry_after_s)
    if error.status == 405:
        extra.append((b"allow", b"POST, DELETE"))
    await _send_rpc_error(send, error.status, error_of(error), rpc_id, extra)


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_rpc_error(
    send: Send, status: int, error: ErrorData, rpc_id: str | int | None, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON-RPC error as the whole HTTP answer (the SDK's client reads its message at any status)."""
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": error.model_dump(mode="json", exclude_none=True)}
    await _send(send, status, _json.encode(body), extra)
