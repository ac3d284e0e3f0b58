"""/admin/v1/mcp-servers: gateway admins register upstream MCP servers (as
models are registered), read them and what each offers (its catalog).

A server the config file made is changed there (a change here would be
undone at the next start); one made here is never touched by a seed. Over
this API only Streamable HTTP servers are registered: a stdio server runs a
command on the gateway's hosts, which an admin key alone must not be able to
make it do.
"""

from __future__ import annotations

import msgspec
from litestar import Controller, delete, get, put

from ingress.admin.deps import ERROR_RESPONSES, now_ms
from ingress.admin.store import ControlStore
from schemas.admin import CatalogToolOut, Deleted, McpCatalogOut, McpServerIn, McpServerOut, ServerName, ToolRuleIn
from schemas.errors import InvalidRequest
from schemas.mcp import McpServer, ServerCatalog, ToolRule, tool_name
from services import control, mcp_config
from services.control import Actor, time_of


def server_out(s: McpServer) -> McpServerOut:
    return McpServerOut(
        name=s.name,
        transport=s.transport,
        urls=s.urls,
        command=s.command,
        env_names=sorted(s.env),
        auth_env=s.auth_env,
        auth_header=s.auth_header,
        timeout_s=s.timeout_s,
        requires_approval=s.requires_approval,
        tools={
            t: ToolRuleIn(r.rpm, r.max_parallel, r.price_pico_usd, r.idempotent) for t, r in sorted(s.tools.items())
        },
        description=s.description,
        created_at=time_of(s.created_at_ms),
        owner=s.owner,
    )


def _schema(raw: bytes) -> object:
    # The upstream's own JSON: shown as it is, or not at all if it is not JSON.
    try:
        return msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        return None


def catalog_out(name: str, c: ServerCatalog | None) -> McpCatalogOut:
    if c is None:
        return McpCatalogOut(
            server=name,
            tools=[],
            prompts=[],
            resources=[],
            healthy=[],
            error="not listed yet: no provider stage has reached this server",
            refreshed_at=None,
        )
    tools = [
        CatalogToolOut(
            name=tool_name(name, t.name),
            upstream_name=t.name,
            title=t.title,
            description=t.description,
            input_schema=_schema(t.input_schema),
            annotations=t.annotations,
        )
        for t in sorted(c.tools, key=lambda t: t.name)
    ]
    return McpCatalogOut(
        server=name,
        tools=tools,
        prompts=c.prompts,
        resources=c.resources,
        healthy=c.healthy,
        error=c.error,
        refreshed_at=time_of(c.refreshed_at_ms),
    )


def _record(name: str, data: McpServerIn, created_at_ms: int) -> McpServer:
    if data.transport != "http":
        raise InvalidRequest(
            "A stdio server runs a command on the gateway's hosts: register it in the config file "
            "([[mcp_servers]]), not over the admin API.",
            code="stdio_not_allowed",
        )
    server = McpServer(
        name=name,
        transport="http",
        urls=data.urls,
        auth_env=data.auth_env,
        auth_header=data.auth_header,
        timeout_s=data.timeout_s,
        requires_approval=data.requires_approval,
        tools={t: ToolRule(r.rpm, r.max_parallel, r.price_pico_usd, r.idempotent) for t, r in data.tools.items()},
        description=data.description,
        created_at_ms=created_at_ms,
        owner="api",
    )
    if problem := mcp_config.problem(server):
        raise InvalidRequest(f"MCP server {name!r}: {problem}", code="invalid_mcp_server")
    return server


class McpServers(Controller):
    path = "/mcp-servers"
    tags = ["mcp-servers"]

    @get("/", responses=ERROR_RESPONSES)
    async def list_mcp_servers(self, actor: Actor, store: ControlStore) -> list[McpServerOut]:
        control.require_gateway_admin(actor, "list MCP servers")
        return [server_out(s) for s in sorted(store.mcp_servers.all(), key=lambda s: s.name)]

    @get("/{name:str}", responses=ERROR_RESPONSES)
    async def get_mcp_server(self, name: ServerName, actor: Actor, store: ControlStore) -> McpServerOut:
        control.require_gateway_admin(actor, "read MCP servers")
        server, _ = await store.mcp_servers.get(name)
        return server_out(server)

    @put("/{name:str}", responses=ERROR_RESPONSES)
    async def put_mcp_server(
        self, name: ServerName, data: McpServerIn, actor: Actor, store: ControlStore
    ) -> McpServerOut:
        """Creates the server, or replaces the one the admin API made."""
        control.require_gateway_admin(actor, "register MCP servers")
        before, revision = await store.mcp_servers.writer.read(store.mcp_servers.bucket, name, store.mcp_servers.decode)
        if before is None:
            server = _record(name, data, now_ms())
            await store.mcp_servers.create(name, server, actor)
            return server_out(server)
        control.require_api_owned(before.owner, "MCP server", name)
        server = _record(name, data, before.created_at_ms or now_ms())
        if server != before:
            await store.mcp_servers.replace(name, server, revision, actor, "update", before)
        return server_out(server)

    @delete("/{name:str}", status_code=200, responses=ERROR_RESPONSES)
    async def delete_mcp_server(self, name: ServerName, actor: Actor, store: ControlStore) -> Deleted:
        control.require_gateway_admin(actor, "remove MCP servers")
        before, revision = await store.mcp_servers.get(name)
        control.require_api_owned(before.owner, "MCP server", name)
        await store.mcp_servers.delete(name, revision, actor, before)
        return Deleted(id=name)

    @get("/{name:str}/catalog", responses=ERROR_RESPONSES)
    async def get_mcp_catalog(self, name: ServerName, actor: Actor, store: ControlStore) -> McpCatalogOut:
        """Its tools (as callers name them), prompts and resources, and which
        instances answered, as the provider stage last found them."""
        control.require_gateway_admin(actor, "read MCP servers")
        await store.mcp_servers.get(name)  # 404 for a server that is not registered
        return catalog_out(name, store.mcp_catalog.items.get(name))
