"""The mock upstream's MCP server (Streamable HTTP at ``/mcp`` and
``/@<name>/mcp``): a handful of demo tools, one prompt and one resource,
built on the installed SDK's low-level ``Server`` and its session manager,
and counting what it was asked (``GET /mock/mcp/stats``).

Tools: ``echo``, ``slow``, ``fail``, ``secret``, ``lookup``, ``delete_item``,
``echo_args``; prompt ``greeting``; resource ``demo://readme``.
``python -m loadtest.mock_upstream.mcp_server`` serves the same over stdio.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
import msgspec
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

_json = msgspec.json.Encoder()

# Distinct Authorization values kept for the stats (a hostile caller cannot grow them without bound).
AUTHORIZATIONS_KEPT = 50
SLOW_MAX_S = 30.0
# The shapes the gateway's output checks know (services/detectors): an AWS access key id and an email.
SECRET_TEXT = "AWS key AKIAIOSFODNN7EXAMPLE; write to ops@example.com for access"
README = "Sluice demo tools"
README_URI = "demo://readme"


class McpStats(msgspec.Struct):
    # tools/call per tool (known tools only), and per named upstream ("/@<name>/mcp").
    calls: dict[str, int] = {}
    by_upstream: dict[str, int] = {}
    # Sessions opened (initialize handshakes; the 2026 per-request era opens none).
    sessions: int = 0
    # Every JSON-RPC request by method (initialize, tools/list, server/discover...).
    methods: dict[str, int] = {}
    # The arguments each tool last got, as the upstream saw them.
    last_arguments: dict[str, Any] = {}
    # The Authorization header of the last request to /mcp (None: it had none), and
    # every distinct value seen: a caller's own key reaching the upstream shows here.
    last_authorization: str | None = None
    authorizations: list[str] = []


def _schema(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


_ID = {"id": {"type": "string", "description": "The item's id"}}
TOOLS = [
    types.Tool(
        name="echo",
        description="Returns its text",
        input_schema=_schema({"text": {"type": "string"}}, ["text"]),
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    ),
    types.Tool(
        name="slow",
        description="Sleeps, then says how long",
        input_schema=_schema(
            {"seconds": {"type": "number", "default": 2, "minimum": 0, "maximum": SLOW_MAX_S}},
        ),
    ),
    types.Tool(name="fail", description="Always fails (isError)", input_schema=_schema({})),
    types.Tool(name="secret", description="Returns a text holding a credential and an email", input_schema=_schema({})),
    types.Tool(
        name="lookup",
        description="Looks an item up",
        input_schema=_schema(_ID, ["id"]),
        output_schema=_schema(
            {"id": {"type": "string"}, "found": {"type": "boolean"}}, ["id", "found"], additionalProperties=False
        ),
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="delete_item",
        description="Deletes an item",
        input_schema=_schema(_ID, ["id"]),
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    ),
    types.Tool(
        name="echo_args",
        description="Returns the JSON of the arguments it got",
        input_schema=_schema({}, additionalProperties=True),
    ),
]
_SCHEMAS = {t.name: t.input_schema for t in TOOLS}

PROMPT = types.Prompt(
    name="greeting",
    description="Greets someone",
    arguments=[types.PromptArgument(name="name", description="Who to greet", required=True)],
)
RESOURCE = types.Resource(uri=README_URI, name="readme", description="What these tools are", mime_type="text/plain")


def _text(text: str, *, error: bool = False, structured: Any = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error, structured_content=structured)


def _string(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    return value if isinstance(value, str) else None


async def _call(name: str, args: dict[str, Any]) -> types.CallToolResult:
    """One tool's answer. Bad arguments are the tool's error (isError), which MCP
    means for the model to read and correct; an unknown tool is the caller's."""
    if name == "echo":
        text = _string(args, "text")
        return _text(text) if text is not None else _text("text must be a string", error=True)
    if name == "slow":
        seconds = args.get("seconds", 2)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            return _text("seconds must be a number", error=True)
        if not 0 <= seconds <= SLOW_MAX_S:
            return _text(f"seconds must be between 0 and {SLOW_MAX_S:g}", error=True)
        await anyio.sleep(seconds)
        return _text(f"slept {seconds:g}")
    if name == "fail":
        return _text("the tool failed", error=True)
    if name == "secret":
        return _text(SECRET_TEXT)
    if name in ("lookup", "delete_item"):
        item = _string(args, "id")
        if item is None:
            return _text("id must be a string", error=True)
        if name == "delete_item":
            return _text(f"deleted {item}")
        found = {"id": item, "found": True}
        return _text(_json.encode(found).decode(), structured=found)
    if name == "echo_args":
        return _text(_json.encode(args).decode())
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")


def upstream_of(path: str) -> str | None:
    """The named upstream a path is under ("/@a/mcp" -> "a")."""
    if not path.startswith("/@"):
        return None
    return path[2:].partition("/")[0] or None


class MockMcp:
    """The MCP server and what it counted. ``running()`` must be entered (the
    mock's ASGI lifespan does) before ``handle`` serves anything."""

    def __init__(self, token: str | None = None) -> None:
        # When set, every request needs "Authorization: Bearer <token>".
        self.token = token
        self.stats = McpStats()
        self.server: Server[Any] = Server(
            "sluice-mock-mcp",
            version="1.0.0",
            instructions="Demo tools of Sluice's mock upstream",
            get_tool_input_schema=_SCHEMAS.get,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_read_resource=self._read_resource,
        )
        self.server.middleware.append(self._count_method)
        self._manager: StreamableHTTPSessionManager | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # A session manager runs once: each start (a mock restarted in-process) gets a new one.
        manager = StreamableHTTPSessionManager(app=self.server)
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    def reset(self) -> None:
        self.stats = McpStats()

    async def handle(self, scope: dict, receive: Any, send: Any) -> None:
        """An HTTP request to /mcp or /@<name>/mcp."""
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        seen = auth.decode("latin-1") if auth is not None else None
        self.stats.last_authorization = seen
        kept = self.stats.authorizations
        if seen is not None and seen not in kept and len(kept) < AUTHORIZATIONS_KEPT:
            kept.append(seen)
        if self.token is not None and seen != f"Bearer {self.token}":
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "unauthorized"}}
            return await _answer(send, 401, _json.encode(error), [(b"www-authenticate", b"Bearer")])
        if self._manager is None:  # the lifespan never ran (an app driven without it)
            error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "MCP server not started"}}
            return await _answer(send, 503, _json.encode(error))
        await self._manager.handle_request(scope, receive, send)

    async def _count_method(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is not None:  # a request, not a notification
            methods = self.stats.methods
            methods[ctx.method] = methods.get(ctx.method, 0) + 1
            if ctx.method == "initialize":
                self.stats.sessions += 1
        return await call_next(ctx)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments or {}
        if params.name in _SCHEMAS:
            stats = self.stats
            stats.calls[params.name] = stats.calls.get(params.name, 0) + 1
            stats.last_arguments[params.name] = args
            name = upstream_of(ctx.request.scope["path"]) if ctx.request is not None else None
            if name is not None:
                stats.by_upstream[name] = stats.by_upstream.get(name, 0) + 1
        return await _call(params.name, args)

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[PROMPT])

    async def _get_prompt(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name != PROMPT.name:
            raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")
        who = (params.arguments or {}).get("name")
        if not who:
            raise MCPError(types.INVALID_PARAMS, "Missing required argument: name")
        message = types.PromptMessage(role="user", content=types.TextContent(text=f"Hello, {who}!"))
        return types.GetPromptResult(description=PROMPT.description, messages=[message])

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[RESOURCE])

    async def _read_resource(
        self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != README_URI:
            # MCP's "resource not found".
            raise MCPError(-32002, f"Resource not found: {params.uri}")
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=README_URI, mime_type="text/plain", text=README)]
        )


async def _answer(send: Callable[[dict], Awaitable[None]], status: int, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    server = MockMcp().server
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_serve_stdio)
