"""One long-lived MCP session with one instance of an upstream server.

A ``Link`` is to an MCP server what a keep-alive connection pool is to an
HTTP upstream: the handshake (``initialize``) is paid once, then every call
of every request rides the same session. It opens when first asked
(``session``), and opens again on the next ask after it ended: the server
restarted, forgot the session, or the connection dropped. Failing to open
backs off (0.5 s doubling to 30 s): while it does, an ask fails at once with
the last reason instead of each call hammering a server that is down.

A stdio server is a child process of this one, and supervised like one:
started with the session, started again (with the same backoff) whenever
it exits, and stopped when the link closes (stdin closed, then SIGTERM,
then SIGKILL: the SDK's shutdown sequence).

The SDK's session lives in anyio task groups that must be entered and left
by one task, so each link has a task of its own that holds the session
open; callers in any task send their requests through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, TextIO

import httpx2
import mcp_types as types
from mcp.client._transport import TransportStreams
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

from schemas.errors import GatewayError, UpstreamUnreachable
from schemas.mcp import McpServer
from services.providers.mcp import errors

log = logging.getLogger("sluice.mcp")
# The SDK's HTTP client logs every request at INFO, and its transport each
# session id it is given: a log line per tool call otherwise.
logging.getLogger("httpx2").setLevel(logging.WARNING)
logging.getLogger("mcp.client.streamable_http").setLevel(logging.WARNING)

# What routing names a stdio server's one instance (it has no address).
STDIO = "stdio"
CLIENT_INFO = types.Implementation(name="sluice", version="0.1.0")
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
# A session that stayed up this long was a good one: its end starts the backoff over.
STEADY_S = 30.0
# Closing waits this long for a session to end, then cancels it: the stage
# stops within it (a stdio child that exits on its stdin's end, as MCP asks,
# takes milliseconds; one that does not gets SIGTERM after 2 s and SIGKILL
# after 2 more from the SDK's shutdown, which a cancel does not cut short).
CLOSE_WAIT_S = 3.0
# Connecting and sending a request's body; reading has no limit here (the
# standalone stream of server notifications is quiet for hours), a call's
# own timeout bounds its answer.
HTTP_TIMEOUT = httpx2.Timeout(30.0, read=None)
LIST_CHANGED = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
    }
)


def instances(server: McpServer) -> list[str]:
    """What a server's instances are called: its URLs, or "stdio"."""
    return [STDIO] if server.transport == "stdio" else list(server.urls)


def credential(server: McpServer) -> str | None:
    """The secret the gateway injects, from this process's environment."""
    if not server.auth_env:
        return None
    value = os.environ.get(server.auth_env)
    if value is None:
        log.warning("MCP server %s: %s is not set; calling it without a credential", server.name, server.auth_env)
    return value


def credential_headers(server: McpServer) -> dict[str, str]:
    value = credential(server)
    if value is None:
        return {}
    header = server.auth_header or "Authorization"
    return {header: f"Bearer {value}" if header.lower() == "authorization" else value}


def identity(server: McpServer, instance: str) -> tuple[Any, ...]:
    """What a session depends on: another value of any of these needs a new one."""
    return (
        server.transport,
        instance,
        tuple(server.command),
        server.cwd,
        tuple(sorted(server.env.items())),
        server.auth_env,
        server.auth_header,
        os.environ.get(server.auth_env) if server.auth_env else None,
    )


def backoff_s(failures: int) -> float:
    return 0.0 if failures <= 0 else min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (failures - 1))


def _errlog() -> TextIO:
    """Where a stdio server's stderr goes: this process's (its log file)."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.__stderr__ or sys.stderr
    return sys.stderr


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """A failed open no caller waited for is not an error to report at exit."""
    if not fut.cancelled():
        fut.exception()


class _Watched(JSONRPCDispatcher):
    """The SDK's dispatcher, telling when its receive loop ends (a stdio
    child exited, a stream closed): the session is over then, though
    nothing raises in the task that holds it."""

    def __init__(self, streams: TransportStreams, ended: asyncio.Event) -> None:
        super().__init__(*streams)
        self._ended = ended

    async def run(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().run(*args, **kwargs)
        finally:
            self._ended.set()


class Link:
    def __init__(self, server: McpServer, instance: str, on_list_changed: Callable[[str], None] | None = None) -> None:
        self.server = server
        self.instance = instance
        self.ident = identity(server, instance)
        # A stdio server runs whether or not anyone calls it: it is restarted
        # when it exits. An HTTP session opens again when next asked.
        self.supervised = server.transport == "stdio"
        self.on_list_changed = on_list_changed
        # Sessions opened so far (each one an initialize handshake).
        self.opened = 0
        self._task: asyncio.Task[None] | None = None
        # The session being opened or open; None when there is none.
        self._ready: asyncio.Future[ClientSession] | None = None
        self._want = asyncio.Event()  # someone asked for a session
        self._wake = asyncio.Event()  # the open session should end (or did)
        self._stopped = asyncio.Event()
        self._closing = False
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: GatewayError | None = None
        # The last HTTP status the server answered (a 401 says more than the SDK's stand-in error).
        self._http_status = 0

    async def session(self) -> ClientSession:
        """The open session, opened first if there is none; raises the
        ``GatewayError`` that kept it from opening."""
        if self._closing:
            raise UpstreamUnreachable(f"MCP server {self.server.name!r} ({self.instance}) is being closed.")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"mcp-{self.server.name}-{self.instance}")
        if self._ready is None:
            if self._last_error is not None and time.monotonic() < self._retry_at:
                raise errors.copy(self._last_error)
            self._ready = self._future()
            self._want.set()
        try:
            return await asyncio.shield(self._ready)
        except GatewayError as exc:
            raise errors.copy(exc) from None

    def reset(self, session: ClientSession) -> None:
        """End ``session`` (the server forgot it, or it broke): the next ask opens another."""
        ready = self._ready
        if ready is not None and ready.done() and not ready.exception() and ready.result() is session:
            self._ready = None
            self._wake.set()

    async def close(self) -> None:
        self._closing = True
        for event in (self._want, self._wake, self._stopped):
            event.set()
        task = self._task
        if task is None or task.done():
            return
        if self._ready is not None and not self._ready.done():
            task.cancel()  # still opening: nothing to wind down politely
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_WAIT_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    def _future(self) -> asyncio.Future[ClientSession]:
        fut: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieved)
        return fut

    async def _run(self) -> None:
        try:
            while not self._closing:
                await self._want.wait()
                self._want.clear()
                if self._closing:
                    break
                ready = self._ready if self._ready is not None and not self._ready.done() else self._future()
                self._ready = ready
                started = time.monotonic()
                error = await self._connect(ready)
                if self._ready is ready:
                    self._ready = None
                opened = ready.done() and not ready.exception()
                if not ready.done():
                    ready.set_exception(error or self._closed_error())
                if error is not None:
                    self._last_error = error
                steady = opened and time.monotonic() - started >= STEADY_S
                self._failures = 0 if steady or (opened and not self.supervised) else self._failures + 1
                self._retry_at = time.monotonic() + backoff_s(self._failures)
                if self._closing or not self.supervised:
                    continue
                delay = max(BACKOFF_BASE_S, backoff_s(self._failures))
                log.warning(
                    "MCP server %s (stdio) %s: %s; starting it again in %.1f s",
                    self.server.name,
                    "ended" if opened else "did not start",
                    error.message if error else "closed",
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                if self._ready is None:
                    self._ready = self._future()
                self._want.set()
        finally:
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(self._closed_error())

    async def _connect(self, ready: asyncio.Future[ClientSession]) -> GatewayError | None:
        """Open a session, hand it to ``ready``, hold it until it should end;
        what ended it (None: the link closed it)."""
        server, instance = self.server, self.instance
        wake = self._wake = asyncio.Event()
        self._http_status = 0
        try:
            async with AsyncExitStack() as stack:
                streams = await stack.enter_async_context(await self._transport(stack))
                session = ClientSession(
                    dispatcher=_Watched(streams, wake), message_handler=self._on_message, client_info=CLIENT_INFO
                )
                await stack.enter_async_context(session)
                try:
                    await asyncio.wait_for(session.initialize(), server.timeout_s)
                except TimeoutError:
                    return errors.timed_out(server.name, "initialize", server.timeout_s)
                if ready.done():  # cancelled meanwhile
                    return None
                ready.set_result(session)
                self.opened += 1
                await wake.wait()
                if self._closing:
                    return None
                return UpstreamUnreachable(f"The session with MCP server {server.name!r} ({instance}) ended.")
        except GatewayError as exc:
            return exc
        except Exception as exc:
            return errors.unreachable(server.name, instance, errors.describe(exc), self._http_status)

    async def _transport(self, stack: AsyncExitStack) -> AbstractAsyncContextManager[TransportStreams]:
        server = self.server
        if server.transport == "stdio":
            if not server.command:
                raise UpstreamUnreachable(f"MCP server {server.name!r} has no command to run.")
            env = dict(server.env)
            secret = credential(server)
            if secret is not None:
                env[server.auth_env] = secret
            params = StdioServerParameters(
                command=server.command[0], args=server.command[1:], env=env, cwd=server.cwd or None
            )
            return stdio_client(params, errlog=_errlog())
        client = httpx2.AsyncClient(
            headers=credential_headers(server),
            timeout=HTTP_TIMEOUT,
            event_hooks={"response": [self._saw]},
        )
        await stack.enter_async_context(client)
        return streamable_http_client(self.instance, http_client=client)

    async def _saw(self, response: httpx2.Response) -> None:
        self._http_status = response.status_code

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            log.debug("MCP server %s (%s): %r", self.server.name, self.instance, message)
            return
        if getattr(message, "method", None) in LIST_CHANGED and self.on_list_changed is not None:
            self.on_list_changed(self.server.name)

    def _closed_error(self) -> GatewayError:
        return UpstreamUnreachable(f"The session with MCP server {self.server.name!r} ({self.instance}) was closed.")
