"""Policy for an MCP call (``api`` "mcp"): is the call well-formed, may the
caller make it, and what it takes from the shared limit and budget counters.

A tool call counts against the caller's key and tenant like any request
(one request, no tokens, its rule's price as the cost reserved against
their budgets) and against the tool's own rule (``ToolRule.rpm``,
``max_parallel``): one counter per tool for every caller and every policy
replica, so the rule holds exactly whoever calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import msgspec

from schemas.control import ApiKey, Limits, Subscription, Tenant
from schemas.envelope import Envelope
from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from schemas.mcp import SERVER_NAME, McpCall, McpServer, ServerCatalog, ToolRule, tool_name
from services import mcp_access, policy
from services import quota as quota_svc

# The arguments of one call, as JSON: a tool takes parameters, not uploads.
MAX_ARGUMENTS_BYTES = 1 << 20
# A tool's or prompt's name, or a resource's URI: it becomes the request's
# ``model`` on its row and in logs.
MAX_NAME_CHARS = 2048
METHODS = ("tools/call", "prompts/get", "resources/read")
# The per-tool counters' scope ("quota.rate.tool.<id>..."), named in refusals.
TOOL_SCOPE = "tool"

_decode = msgspec.json.Decoder().decode


def check_call(env: Envelope) -> McpCall:
    """The call of an ``api`` "mcp" envelope, refused (400) unless well-formed:
    it alone is carried (no chat or embeddings body), names a server by a
    valid name, a method MCP has, a name, and arguments that are one JSON
    object of at most ``MAX_ARGUMENTS_BYTES``."""
    call = env.tool
    if call is None or env.body is not None or env.embeddings is not None or env.rest is not None:
        raise InvalidRequest("An MCP request carries 'tool' (the call) and no chat, embeddings or REST body.")
    if SERVER_NAME.fullmatch(call.server) is None:
        raise InvalidRequest(
            "'tool.server' must be a server name (letters, digits and '-', at most 48).", code="invalid_tool"
        )
    if call.method not in METHODS:
        raise InvalidRequest(f"'tool.method' must be one of {', '.join(METHODS)}.", code="invalid_tool")
    if not call.name or len(call.name) > MAX_NAME_CHARS or not call.name.isprintable():
        raise InvalidRequest(
            f"'tool.name' must be a tool's or prompt's name or a resource's URI, printable, at most "
            f"{MAX_NAME_CHARS} characters.",
            code="invalid_tool",
        )
    if len(call.arguments) > MAX_ARGUMENTS_BYTES:
        raise InvalidRequest(
            f"'tool.arguments' is {len(call.arguments)} bytes; at most {MAX_ARGUMENTS_BYTES} are accepted.",
            code="arguments_too_large",
        )
    try:
        args = _decode(call.arguments)
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequest("'tool.arguments' must be a JSON object.", code="invalid_arguments") from None
    if not isinstance(args, dict):
        raise InvalidRequest("'tool.arguments' must be a JSON object.", code="invalid_arguments")
    if call.method == "prompts/get" and not all(isinstance(v, str) for v in args.values()):
        # MCP's prompt arguments are strings, every one.
        raise InvalidRequest("A prompt's arguments are strings.", code="invalid_arguments")
    if call.method == "resources/read" and args:
        raise InvalidRequest(
            "A resource is read by its URI alone: 'tool.arguments' must be {}.", code="invalid_arguments"
        )
    return call


def check_access(
    call: McpCall,
    tenant: Tenant | None,
    key: ApiKey,
    servers: Mapping[str, McpServer],
    catalogs: Mapping[str, ServerCatalog],
    subscriptions: Iterable[Subscription],
) -> McpServer:
    """The server the caller may call as asked, or the error that refuses it:
    the allow-list (``mcp_access``), then a server's approval."""
    server = servers.get(call.server)
    if call.method == "tools/call":
        mcp_access.check_tool(tenant, key, server, catalogs.get(call.server), call.name)
    else:
        if server is None:
            raise RecordNotFound(f"MCP server {call.server!r} does not exist.", code="tool_not_found")
        if not mcp_access.server_named(tenant, key, call.server):
            raise PermissionDenied(f"Key {key.id!r} may not use MCP server {call.server!r}.", code="tool_not_allowed")
    assert server is not None
    if server.requires_approval:
        policy.check_subscription(key.tenant_id, mcp_access.approval_name(server.name), subscriptions)
    return server


def rule_of(call: McpCall, server: McpServer) -> ToolRule | None:
    """The rule a call is held to: a tool's (or the server's "*"); prompts
    and resources are no tools and have none."""
    return server.rule(call.name) if call.method == "tools/call" else None


def tool_counter_id(server: str, tool: str) -> str:
    """The tool's id in its counters' subjects: a hash, as an upstream's tool
    name may hold anything a NATS subject token may not ('.', '*', spaces)."""
    return hashlib.sha256(tool_name(server, tool).encode()).hexdigest()[:32]


def needs(
    call: McpCall,
    server: McpServer,
    key: ApiKey,
    tenant: Tenant | None,
    now_ms: int,
) -> list[quota_svc.Need]:
    """What a call takes from the counters: from the key's and the tenant's
    one request, no tokens and the rule's price; from the tool's own, one
    request per minute and one slot in flight, as its rule limits them."""
    rule = rule_of(call, server)
    price = rule.price_pico_usd if rule is not None else 0
    out: list[quota_svc.Need] = []
    for r, scope in ((key, "key"), (tenant, "tenant")):
        if r is not None and (r.limits.any() or r.budget is not None):
            out += quota_svc.needs(scope, r.id, r.limits, r.budget, r.created_at_ms, now_ms, 0, price)
    if rule is not None and (rule.rpm is not None or rule.max_parallel is not None):
        limits = Limits(rpm=rule.rpm, max_parallel=rule.max_parallel)
        out += quota_svc.needs(
            TOOL_SCOPE, tool_counter_id(server.name, call.name), limits, None, server.created_at_ms, now_ms, 0, 0
        )
    return out
