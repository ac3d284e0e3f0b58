"""The provider stage's sessions with upstream MCP servers, one ``Link`` per
(server, instance), and what it asks of them: a call (a tool, a prompt, a
resource) and a server's whole listing.

A call's answer is the upstream's result as it sent it (JSON bytes of the
result object): the gateway validates it against the protocol (the SDK
does) but does not rebuild it, so a field a newer server adds reaches the
caller too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import mcp_types as types
import msgspec
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED
from pydantic import TypeAdapter, ValidationError

from schemas.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamUnreachable
from schemas.mcp import McpCall, McpServer, ServerCatalog
from services.providers.mcp import catalog, errors
from services.providers.mcp.link import Link, identity, instances

T = TypeVar("T")
log = logging.getLogger("sluice.mcp")

# The result as the server sent it (the SDK still checks it against the protocol).
_RAW_RESULT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode
# Pages of one listing a server may send (a cursor that never ends cannot hang a refresh).
PAGES_MAX = 50


def request_of(call: McpCall) -> types.CallToolRequest | types.GetPromptRequest | types.ReadResourceRequest:
    """The JSON-RPC request of a call; its arguments must be a JSON object
    (a prompt's, of strings)."""
    if call.method == "resources/read":
        return types.ReadResourceRequest(params=types.ReadResourceRequestParams(uri=call.name))
    try:
        arguments = _decode_object(call.arguments or b"{}")
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The arguments of {call.method} {call.name!r} must be a JSON object: {exc}.") from None
    try:
        if call.method == "prompts/get":
            return types.GetPromptRequest(params=types.GetPromptRequestParams(name=call.name, arguments=arguments))
        return types.CallToolRequest(params=types.CallToolRequestParams(name=call.name, arguments=arguments))
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid {call.method} request: {errors.said(str(exc))}") from None


def is_error_result(result: bytes) -> bool:
    """A tool's own failure (``isError: true``): an answer, not an error."""
    try:
        doc = _decode_object(result)
    except msgspec.DecodeError:
        return False
    return doc.get("isError") is True


class McpPool:
    def __init__(self, on_list_changed: Callable[[str], None] | None = None) -> None:
        self._links: dict[tuple[str, str], Link] = {}
        # A server announced its tools, prompts or resources changed (by name).
        self.on_list_changed = on_list_changed
        self._retiring: set[asyncio.Task[None]] = set()

    def links(self, server: str) -> list[Link]:
        return [link for (name, _), link in self._links.items() if name == server]

    def link(self, server: McpServer, instance: str) -> Link:
        key = (server.name, instance)
        link = self._links.get(key)
        if link is not None and link.ident != identity(server, instance):
            self._retire(self._links.pop(key))
            link = None
        if link is None:
            link = self._links[key] = Link(server, instance, self._list_changed)
        link.server = server  # timeouts and the like apply at once
        return link

    def sync(self, server: McpServer) -> None:
        """Close the sessions ``server``'s record no longer describes (an
        instance removed, another command, credential or header)."""
        current = set(instances(server))
        for key in [k for k in self._links if k[0] == server.name]:
            link = self._links[key]
            if key[1] not in current or link.ident != identity(server, key[1]):
                self._retire(self._links.pop(key))

    def forget(self, name: str) -> None:
        """Close every session with a server that is no longer registered."""
        for key in [k for k in self._links if k[0] == name]:
            self._retire(self._links.pop(key))

    async def call(self, server: McpServer, instance: str, call: McpCall, timeout_s: float | None = None) -> bytes:
        """``call`` at one instance of ``server``: the result's JSON."""
        request = request_of(call)

        async def ask(session: ClientSession) -> dict[str, Any]:
            return await session.send_request(request, _RAW_RESULT)

        result = await self._ask(server, instance, call.method, ask, timeout_s or server.timeout_s)
        return _encode(result)

    async def listing(self, server: McpServer, now_ms: int = 0) -> ServerCatalog:
        """What ``server`` offers, from every instance at once: the first (in
        the record's order) that answered gives the lists, all that did are
        ``healthy``, and ``error`` says why the others did not."""
        names = instances(server)
        answers = await asyncio.gather(*(self._list(server, i) for i in names), return_exceptions=True)
        healthy, failed, found = [], [], None
        for instance, answer in zip(names, answers, strict=True):
            if isinstance(answer, GatewayError):
                failed.append(f"{instance}: {answer.message}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                healthy.append(instance)
                found = found or answer
        listed = found or catalog.Listing()
        return catalog.server_catalog(server.name, listed, healthy, "; ".join(failed), now_ms)

    async def aclose(self) -> None:
        for key in list(self._links):
            self._retire(self._links.pop(key))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _list(self, server: McpServer, instance: str) -> catalog.Listing:
        async def ask(session: ClientSession) -> catalog.Listing:
            caps = session.server_capabilities

            def offers(part: str) -> bool:  # a server lists only what it says it has
                return caps is None or getattr(caps, part) is not None

            tools = await _pages(session.list_tools, "tools") if offers("tools") else []
            prompts = await _pages(session.list_prompts, "prompts") if offers("prompts") else []
            resources = await _pages(session.list_resources, "resources") if offers("resources") else []
            return catalog.Listing(tools, prompts, resources)

        return await self._ask(server, instance, "listing", ask, server.timeout_s)

    async def _ask(
        self,
        server: McpServer,
        instance: str,
        method: str,
        ask: Callable[[ClientSession], Awaitable[T]],
        timeout_s: float,
    ) -> T:
        """``ask`` on the instance's session, within ``timeout_s``. A session
        the server forgot is opened again once (the request never ran)."""
        if instance not in instances(server):
            raise UpstreamUnreachable(
                f"{instance[:200]!r} is not an instance of MCP server {server.name!r} (any more)."
            )
        link = self.link(server, instance)
        for again in (True, False):
            session = await link.session()
            try:
                async with asyncio.timeout(timeout_s):
                    return await ask(session)
            except TimeoutError:
                raise errors.timed_out(server.name, method, timeout_s) from None
            except MCPError as exc:
                if again and errors.stale_session(exc):
                    link.reset(session)
                    continue
                if exc.code == CONNECTION_CLOSED:
                    link.reset(session)
                raise errors.from_mcp_error(server.name, method, exc) from None
            except ValidationError as exc:
                raise UpstreamError(
                    f"MCP server {server.name!r} answered {method} with an invalid result: {errors.said(str(exc))}"
                ) from None
            except RuntimeError as exc:  # a result the SDK refuses (e.g. one that asks for input)
                raise UpstreamError(f"MCP server {server.name!r} ({method}): {errors.said(str(exc))}") from None
        raise AssertionError("unreachable")

    def _list_changed(self, name: str) -> None:
        if self.on_list_changed is not None:
            self.on_list_changed(name)

    def _retire(self, link: Link) -> None:
        task = asyncio.get_running_loop().create_task(link.close(), name=f"mcp-close-{link.server.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _pages(fetch: Callable[..., Awaitable[Any]], field: str) -> list[Any]:
    out: list[Any] = []
    cursor: str | None = None
    for _ in range(PAGES_MAX):
        page = await fetch(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        out += getattr(page, field)
        cursor = page.next_cursor
        if not cursor:
            break
    return out
