"""Which MCP tools a caller may see and call: the one rule the ingress
(listing) and policy (calling) both apply, so a tool is never listed to a
caller who would be refused it, nor callable by one it is hidden from.

Deny by default: a tenant's keys use the tools its ``mcp_tools`` patterns
name, narrowed by the key's own; a tool a server adds later is not offered
until a pattern names it. A tenant may also take only the tools whose
server says they change nothing (``mcp_safety``): "read_only" ones, or
"non_destructive" ones (read-only, or ``destructiveHint: false``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from schemas.control import ApiKey, Tenant
from schemas.errors import PermissionDenied, RecordNotFound
from schemas.mcp import CatalogTool, McpServer, ServerCatalog, tool_name

# The subscription that approves a server needing approval covers this name.
APPROVAL_PREFIX = "mcp:"


def approval_name(server: str) -> str:
    return f"{APPROVAL_PREFIX}{server}"


def named(tenant: Tenant | None, key: ApiKey, name: str) -> bool:
    """Whether the tenant's and the key's patterns both name the tool."""
    if tenant is None or not any(fnmatchcase(name, p) for p in tenant.mcp_tools):
        return False
    return key.mcp_tools is None or any(fnmatchcase(name, p) for p in key.mcp_tools)


def is_read_only(tool: CatalogTool) -> bool:
    return tool.annotations is not None and tool.annotations.readOnlyHint is True


def is_destructive(tool: CatalogTool) -> bool:
    """As MCP reads the hints: a tool that is not read-only is destructive
    unless its server says ``destructiveHint: false``."""
    return not is_read_only(tool) and (tool.annotations is None or tool.annotations.destructiveHint is not False)


def safe_enough(tenant: Tenant | None, tool: CatalogTool) -> bool:
    safety = tenant.mcp_safety if tenant is not None else "any"
    if safety == "read_only":
        return is_read_only(tool)
    return safety != "non_destructive" or not is_destructive(tool)


def may_use(tenant: Tenant | None, key: ApiKey, server: str, tool: CatalogTool) -> bool:
    return named(tenant, key, tool_name(server, tool.name)) and safe_enough(tenant, tool)


def visible_tools(
    tenant: Tenant | None,
    key: ApiKey,
    servers: Mapping[str, McpServer],
    catalogs: Iterable[ServerCatalog],
) -> list[tuple[str, CatalogTool]]:
    """``(server, tool)`` of every tool the caller may call, by server then
    tool name (a stable order: clients cache tool lists)."""
    out = [
        (c.server, t)
        for c in catalogs
        if c.server in servers
        for t in c.tools
        if may_use(tenant, key, c.server, t)
    ]
    return sorted(out, key=lambda st: (st[0], st[1].name))


def check_tool(
    tenant: Tenant | None,
    key: ApiKey,
    server: McpServer | None,
    catalog: ServerCatalog | None,
    tool: str,
) -> CatalogTool:
    """The tool a caller may call, or the error that refuses it. A tool the
    caller may not see is "not found" to it only when no pattern names it
    at all; one named but refused (read-only required) says why."""
    name = tool_name(server.name if server else "?", tool)
    found = None if catalog is None else next((t for t in catalog.tools if t.name == tool), None)
    if server is None or found is None:
        raise RecordNotFound(f"Tool {name!r} does not exist or is not available now.", code="tool_not_found")
    if not named(tenant, key, name):
        raise PermissionDenied(f"Key {key.id!r} may not call tool {name!r}.", code="tool_not_allowed")
    if tenant is not None and not safe_enough(tenant, found):
        if tenant.mcp_safety == "read_only":
            raise PermissionDenied(
                f"Tenant {tenant.id!r} may call read-only tools only; {name!r} is not marked readOnlyHint.",
                code="tool_not_read_only",
            )
        raise PermissionDenied(
            f"Tenant {tenant.id!r} may call non-destructive tools only; {name!r} is neither marked readOnlyHint "
            "nor destructiveHint false.",
            code="tool_destructive",
        )
    return found


def server_named(tenant: Tenant | None, key: ApiKey, server: str) -> bool:
    """Whether any pattern could name a tool of ``server`` (for its prompts
    and resources, which the caller reaches when it may use the server)."""
    probe = tool_name(server, "")
    if tenant is None:
        return False
    pats = [p for p in tenant.mcp_tools if fnmatchcase(probe + "x", p) or p.startswith(probe)]
    if not pats:
        return False
    return key.mcp_tools is None or any(fnmatchcase(probe + "x", p) or p.startswith(probe) for p in key.mcp_tools)
