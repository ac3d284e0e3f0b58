"""The provider stage's MCP adapter: long-lived sessions with upstream MCP
servers (``link``, ``pool``), a call as one try of a request's walk
(``call``), and the catalog of what each server offers (``catalog``,
``keeper``). Nothing here knows of NATS.

The submodules import the ``mcp`` SDK (with pydantic and httpx2, ~50 MB of
a process's memory), so this package imports none of them itself: a name
below is loaded when first asked for, and a provider with no MCP server
registered never loads the SDK (``workers.provider.McpSide``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.providers.mcp.call import COMPLETED, IS_ERROR, McpCaller
    from services.providers.mcp.keeper import REFRESH_S, CatalogKeeper
    from services.providers.mcp.link import STDIO, Link, instances
    from services.providers.mcp.pool import McpPool

# name -> the submodule that defines it
_WHERE = {
    "COMPLETED": "call",
    "IS_ERROR": "call",
    "McpCaller": "call",
    "REFRESH_S": "keeper",
    "CatalogKeeper": "keeper",
    "STDIO": "link",
    "Link": "link",
    "instances": "link",
    "McpPool": "pool",
}

__all__ = ["COMPLETED", "IS_ERROR", "REFRESH_S", "STDIO", "CatalogKeeper", "Link", "McpCaller", "McpPool", "instances"]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{where}"), name)
