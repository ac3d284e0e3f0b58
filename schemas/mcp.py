"""The MCP gateway's wire contract: upstream MCP servers as control-plane
records, what each one offers (its catalog), and a tool call (or a prompt
or resource read) as it rides the bus in the envelope.

A caller sees every tool under a namespaced name, ``<server>__<tool>``
(``demo-tools__echo``); the bus carries the server and the upstream's own
name apart, so nothing downstream parses names.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

Owner = Literal["config", "api"]
# How the gateway reaches a server: MCP's Streamable HTTP, or a command the
# provider stage starts and keeps running (stdio).
McpTransport = Literal["http", "stdio"]
# Which tools a tenant may use by what their server says of them (MCP's
# annotations): any; "non_destructive", tools marked read-only or
# ``destructiveHint: false`` (MCP reads a tool without hints as
# destructive); "read_only", tools marked ``readOnlyHint: true``.
McpSafety = Literal["any", "non_destructive", "read_only"]
# What a request on the bus asks of a server. Listing is not one: callers
# list from the catalog (``sluice_mcp_catalog``), which the provider stage keeps.
McpMethod = Literal["tools/call", "prompts/get", "resources/read"]
# Server names become the prefix of every tool name and a KV key: letters,
# digits, "-" (no "_": "__" separates a server from its tool).
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,47}")
SEPARATOR = "__"
# The namespace of the gateway's own prompt APIs offered as tools
# (``prompt__<slug>``): no server may take it.
PROMPT_NAMESPACE = "prompt"


def tool_name(server: str, tool: str) -> str:
    """The name a caller sees."""
    return f"{server}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str] | None:
    """``(server, upstream name)`` of a namespaced name; None if it has none."""
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or not tool or SERVER_NAME.fullmatch(server) is None:
        return None
    return server, tool


class ToolRule(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What the gateway enforces on one tool of a server (by its upstream
    name, or "*" for every tool of the server without a rule of its own)."""

    # Calls per minute and calls at once, across every caller and every
    # replica (the shared limit counters).
    rpm: int | None = None
    max_parallel: int | None = None
    # Charged to the caller's key and tenant budgets per call, in pico-USD.
    price_pico_usd: int = 0
    # Safe to call again after a failed try (another instance, a retry).
    # A tool the server marks ``readOnlyHint`` or ``idempotentHint`` is too.
    idempotent: bool = False


class McpServer(msgspec.Struct, omit_defaults=True):
    """An upstream MCP server, registered like a model (``[[mcp_servers]]``,
    ``/admin/v1/mcp-servers``); KV bucket ``sluice_mcp_servers`` by name."""

    name: str
    transport: McpTransport = "http"
    # Streamable HTTP: one URL per instance (each is health-checked; a call
    # goes to a healthy one).
    urls: list[str] = []
    # stdio: the command and its arguments, its working directory and its
    # environment (names -> values, none secret: credentials come by ``auth_env``).
    command: list[str] = []
    cwd: str = ""
    env: dict[str, str] = {}
    # The credential the gateway adds to every upstream request: the value
    # of this environment variable of the provider process, sent in
    # ``auth_header`` (as "Bearer <value>" when the header is Authorization),
    # or for stdio put in the command's environment under the same name.
    # Never on the bus, never shown to callers.
    auth_env: str = ""
    auth_header: str = "Authorization"
    timeout_s: float = 60.0
    # Calls need an approved subscription of the caller's tenant to
    # "mcp:<name>" (as models that need approval).
    requires_approval: bool = False
    # Per-tool rules: upstream tool name (or "*") -> rule.
    tools: dict[str, ToolRule] = {}
    description: str = ""
    created_at_ms: int = 0
    owner: Owner = "config"

    def rule(self, tool: str) -> ToolRule:
        return self.tools.get(tool) or self.tools.get("*") or ToolRule()


class ToolAnnotations(msgspec.Struct, omit_defaults=True):
    """MCP's tool annotations (hints a server gives; the gateway can require them)."""

    title: str | None = None
    readOnlyHint: bool | None = None  # MCP's own names (camelCase on the wire)
    destructiveHint: bool | None = None
    idempotentHint: bool | None = None
    openWorldHint: bool | None = None


class CatalogTool(msgspec.Struct, omit_defaults=True):
    # The upstream's own name (callers see it namespaced).
    name: str
    description: str = ""
    title: str = ""
    # The tool's JSON Schemas, as the server gave them (JSON text).
    input_schema: bytes = b'{"type":"object"}'
    output_schema: bytes = b""
    annotations: ToolAnnotations | None = None


class PromptArgument(msgspec.Struct, omit_defaults=True):
    name: str
    description: str = ""
    required: bool = False


class CatalogPrompt(msgspec.Struct, omit_defaults=True):
    name: str
    description: str = ""
    title: str = ""
    arguments: list[PromptArgument] = []


class CatalogResource(msgspec.Struct, omit_defaults=True):
    uri: str
    name: str
    description: str = ""
    title: str = ""
    mime_type: str = ""


class ServerCatalog(msgspec.Struct, omit_defaults=True):
    """What one server offers, as its last listing found it: written by the
    provider stage to KV ``sluice_mcp_catalog`` (by server name) at start,
    when the server announces a change, and on each health check."""

    server: str
    tools: list[CatalogTool] = []
    prompts: list[CatalogPrompt] = []
    resources: list[CatalogResource] = []
    refreshed_at_ms: int = 0
    # Instances that answered the last check, and why the others did not.
    healthy: list[str] = []
    error: str = ""


class McpCall(msgspec.Struct, omit_defaults=True):
    """One call to an upstream MCP server, in the envelope (api "mcp")."""

    server: str
    method: McpMethod = "tools/call"
    # The tool's or prompt's upstream name, or the resource's URI.
    name: str = ""
    # The call's arguments: a JSON object as the caller wrote it (a tool's
    # own schema says its shape; the gateway checks only that it is an
    # object). The redaction stage may rewrite string values in it.
    arguments: bytes = b"{}"


kv_encode = msgspec.msgpack.encode
decode_server = msgspec.msgpack.Decoder(McpServer).decode
decode_catalog = msgspec.msgpack.Decoder(ServerCatalog).decode
