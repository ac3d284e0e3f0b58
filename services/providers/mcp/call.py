"""An MCP call as one try of the provider stage's walk: the deployment
routing chose (one instance of the server) called through the pool, its
answer a ``CallOutcome`` like a model's.

A tool's price is charged for every call that reached the server and came
back with a result, its own failures (``isError``) included: the server did
the work. A call that never got a result (no connection, a timeout, a
JSON-RPC error) costs nothing. Tools use no tokens: usage is zero.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from schemas.chat import Cost, Usage
from schemas.envelope import Deployment
from schemas.errors import GatewayError, RecordNotFound
from schemas.mcp import McpCall, McpServer, tool_name
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.mcp.pool import McpPool, is_error_result

# Final.finish_reason of an MCP call: the tool said it failed, or it answered.
IS_ERROR = "is_error"
COMPLETED = "completed"


class McpCaller:
    """Calls MCP servers by their current records (``servers``: the stage's mirror)."""

    def __init__(self, pool: McpPool, servers: Mapping[str, McpServer]) -> None:
        self.pool = pool
        self.servers = servers

    async def call(self, dep: Deployment, call: McpCall, progress: CallProgress) -> CallOutcome:
        start_ns = time.time_ns()
        server = self.servers.get(call.server)
        if server is None:
            error = RecordNotFound(f"MCP server {call.server!r} is not registered.", code="tool_not_found")
            raise CallFailed(error, start_ns, 0)
        progress.sent = True
        try:
            result = await self.pool.call(server, dep.base_url, call, server.timeout_s)
        except GatewayError as exc:
            raise CallFailed(exc, start_ns, 0) from exc
        end_ns = time.time_ns()
        tool = call.method == "tools/call"
        return CallOutcome(
            model=tool_name(call.server, call.name),
            usage=Usage(source="reported"),
            cost=Cost(call=server.rule(call.name).price_pico_usd if tool else 0),
            finish_reason=IS_ERROR if tool and is_error_result(result) else COMPLETED,
            message=None,
            start_ns=start_ns,
            first_byte_ns=end_ns,
            end_ns=end_ns,
            tool_result=result,
        )
