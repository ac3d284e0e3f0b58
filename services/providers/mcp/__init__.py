"""The provider stage's MCP adapter: long-lived sessions with upstream MCP
servers (``link``, ``pool``), a call as one try of a request's walk
(``call``), and the catalog of what each server offers (``catalog``,
``keeper``). Nothing here knows of NATS."""

from services.providers.mcp.call import COMPLETED, IS_ERROR, McpCaller
from services.providers.mcp.keeper import REFRESH_S, CatalogKeeper
from services.providers.mcp.link import STDIO, Link, instances
from services.providers.mcp.pool import McpPool

__all__ = ["COMPLETED", "IS_ERROR", "REFRESH_S", "STDIO", "CatalogKeeper", "Link", "McpCaller", "McpPool", "instances"]
