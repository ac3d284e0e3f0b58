"""Routing for an MCP call: a server's instances -> the ones to try, in order.

Each instance of a server is a deployment of its own (``mcp:<server>:<i>``)
so the health board keeps a breaker per instance, as for models. Instances
the last health check found answering come first, those whose breaker
holds calls back last. A call that is not safe to make twice (a tool the
gateway cannot tell is read-only or idempotent) gets one instance and no
retry: a try that timed out may have acted upstream already.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, RecordNotFound
from schemas.mcp import McpCall, McpServer, ServerCatalog
from services.health import HealthBoard
from services.routing import Plan

PROVIDER = "mcp"
# What a stdio server's one deployment names as its URL: the provider stage
# runs the server's command, there is no address.
STDIO_URL = "stdio"


def deployment_name(server: str, index: int) -> str:
    return f"mcp:{server}:{index}"


def deployments(server: McpServer, upstream_name: str) -> list[Deployment]:
    """Every instance of ``server`` as a deployment serving ``upstream_name``
    (a tool's or prompt's name, or a resource's URI)."""
    urls = [STDIO_URL] if server.transport == "stdio" else server.urls
    return [
        Deployment(
            name=deployment_name(server.name, i),
            provider=PROVIDER,
            base_url=url,
            upstream_model=upstream_name,
            timeout_s=server.timeout_s,
        )
        for i, url in enumerate(urls)
    ]


def safe_to_repeat(call: McpCall, server: McpServer, catalog: ServerCatalog | None) -> bool:
    """Whether a second try cannot do what the first did again: reading a
    prompt or a resource, or a tool its rule says is idempotent or its server
    marks read-only or idempotent."""
    if call.method != "tools/call":
        return True
    if server.rule(call.name).idempotent:
        return True
    tool = next((t for t in catalog.tools if t.name == call.name), None) if catalog is not None else None
    hints = tool.annotations if tool is not None else None
    return hints is not None and (hints.readOnlyHint is True or hints.idempotentHint is True)


def plan(
    servers: Mapping[str, McpServer],
    catalogs: Mapping[str, ServerCatalog],
    call: McpCall,
    board: HealthBoard,
    now: float,
    rng: random.Random | None = None,
    pin: str = "",
) -> Plan:
    """The instances to try for ``call``. With ``rng`` the first among equals
    is drawn, so the calls of many callers spread over a server's instances."""
    server = servers.get(call.server)
    if server is None:
        raise RecordNotFound(f"MCP server {call.server!r} does not exist.", code="tool_not_found")
    options = deployments(server, call.name)
    if not options:
        raise RecordNotFound(f"MCP server {call.server!r} has no instance to call.", code="tool_not_found")
    if pin:
        pinned = next((d for d in options if d.name == pin), None)
        if pinned is None:
            raise InvalidRequest(
                f"Deployment {pin[:100]!r} is no instance of MCP server {server.name!r}.", code="unknown_deployment"
            )
        return Plan(server.name, [pinned])
    catalog = catalogs.get(call.server)
    answering = set(catalog.healthy) if catalog is not None else set()
    held_back = {o.name for o in board.options(options, now) if not o.healthy}
    start = rng.randrange(len(options)) if rng is not None else 0
    n = len(options)
    ordered = sorted(
        range(n),
        key=lambda i: (options[i].name in held_back, options[i].base_url not in answering, (i - start) % n),
    )
    candidates = [options[i] for i in ordered]
    safe = safe_to_repeat(call, server, catalog)
    if not safe:
        candidates = candidates[:1]
    # A safe call on a lone instance may try it twice; on several, each once.
    retries = 1 if safe and len(candidates) == 1 else 0
    board.chose(candidates[0].name, now)
    return Plan(server.name, candidates, retries=retries)
