"""Which tools a tenant's keys see and call, by patterns and by what their server says of them."""

from __future__ import annotations

import pytest

from schemas.control import ApiKey, Tenant
from schemas.errors import PermissionDenied, RecordNotFound
from schemas.mcp import CatalogTool, McpSafety, McpServer, ServerCatalog, ToolAnnotations
from services import mcp_access

SERVER = McpServer(name="files", urls=["http://127.0.0.1:1/mcp"])
TOOLS = [
    CatalogTool(name="read", annotations=ToolAnnotations(readOnlyHint=True)),
    CatalogTool(name="append", annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False)),
    CatalogTool(name="delete", annotations=ToolAnnotations(destructiveHint=True)),
    # No hints: MCP reads it as neither read-only nor safe.
    CatalogTool(name="bare"),
]
CATALOG = ServerCatalog(server="files", tools=TOOLS)
KEY = ApiKey(id="k", tenant_id="t")


def visible(tenant: Tenant, key: ApiKey = KEY) -> list[str]:
    return [t.name for _, t in mcp_access.visible_tools(tenant, key, {"files": SERVER}, [CATALOG])]


@pytest.mark.parametrize(
    ("safety", "seen"),
    [
        ("any", ["append", "bare", "delete", "read"]),
        ("non_destructive", ["append", "read"]),
        ("read_only", ["read"]),
    ],
)
def test_a_tenants_safety_keeps_the_tools_their_hints_allow(safety: McpSafety, seen: list[str]) -> None:
    tenant = Tenant(id="t", mcp_tools=["files__*"], mcp_safety=safety)
    assert visible(tenant) == seen
    for tool in {"append", "bare", "delete", "read"} - set(seen):
        with pytest.raises(PermissionDenied) as refused:
            mcp_access.check_tool(tenant, KEY, SERVER, CATALOG, tool)
        assert refused.value.code == ("tool_not_read_only" if safety == "read_only" else "tool_destructive")
    for tool in seen:
        assert mcp_access.check_tool(tenant, KEY, SERVER, CATALOG, tool).name == tool


def test_nothing_is_offered_by_default_and_a_key_narrows_its_tenant() -> None:
    assert visible(Tenant(id="t")) == []
    tenant = Tenant(id="t", mcp_tools=["files__*"])
    narrow = ApiKey(id="n", tenant_id="t", mcp_tools=["files__read", "other__*"])
    assert visible(tenant, narrow) == ["read"]
    with pytest.raises(PermissionDenied) as refused:
        mcp_access.check_tool(tenant, narrow, SERVER, CATALOG, "delete")
    assert refused.value.code == "tool_not_allowed"
    with pytest.raises(RecordNotFound):
        mcp_access.check_tool(tenant, narrow, SERVER, CATALOG, "missing")
