"""``sluice mcp-servers list|show|add|remove|tools``: upstream MCP servers
through the admin API (``/admin/v1/mcp-servers``), as tables for people and
``--json`` for scripts. The admin key and the gateway's URL are found as for
``sluice keys`` (``admin_cli``).

``add`` registers a Streamable HTTP server (or replaces one the admin API
made); a stdio server runs a command on the gateway's hosts and is
registered in the config file instead. ``tools`` shows what each server
offers, as the provider stage last found it (``sluice_mcp_catalog``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import msgspec

from schemas.admin import Deleted, McpCatalogOut, McpServerIn, McpServerOut, ToolRuleIn
from services.cli.admin_cli import AdminError, call
from services.cli.text_table import render_table

# A tool call through the gateway's MCP endpoint (JSON-RPC over Streamable HTTP;
# a request without a session is served on its key alone).
MCP_DEMO_BODY = (
    '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
    '"params": {"name": "demo-tools__echo", "arguments": {"text": "Hi"}}}'
)


def demo_line(port: int, key: str) -> str:
    """What ``sluice up`` prints to try the demo's MCP server."""
    return (
        f"MCP:  curl http://127.0.0.1:{port}/mcp -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' "
        f"-d '{MCP_DEMO_BODY}'\n"
        f"      (or any MCP client at http://127.0.0.1:{port}/mcp with the demo key; "
        f"`sluice mcp-servers tools` lists the servers' tools)\n"
    )


_RULE_FIELDS = {"rpm": int, "max_parallel": int, "price_pico_usd": int, "idempotent": bool}


def _rule_of(spec: str) -> tuple[str, ToolRuleIn]:
    """``echo:rpm=600,price_pico_usd=1000000,idempotent=true`` -> ("echo", its rule)."""
    tool, sep, fields = spec.rpartition(":")
    if not sep or not tool:
        raise AdminError(f"--tool {spec!r}: write TOOL:NAME=VALUE,... (TOOL may be '*'), e.g. echo:rpm=600")
    values: dict[str, Any] = {}
    for pair in filter(None, fields.split(",")):
        name, eq, value = pair.partition("=")
        kind = _RULE_FIELDS.get(name)
        if not eq or kind is None:
            raise AdminError(f"--tool {spec!r}: {pair!r}: one of {', '.join(_RULE_FIELDS)} = a value")
        if kind is bool:
            if value.lower() not in ("true", "false"):
                raise AdminError(f"--tool {spec!r}: {name} is true or false")
            values[name] = value.lower() == "true"
        else:
            try:
                values[name] = int(value)
            except ValueError:
                raise AdminError(f"--tool {spec!r}: {name} is a whole number") from None
    return tool, ToolRuleIn(**values)


def _rule_text(r: ToolRuleIn) -> str:
    parts = [f"{r.rpm} rpm" if r.rpm is not None else "", f"{r.max_parallel} at once" if r.max_parallel else ""]
    parts += [f"{r.price_pico_usd} pUSD" if r.price_pico_usd else "", "idempotent" if r.idempotent else ""]
    return ", ".join(p for p in parts if p) or "-"


def servers_table(servers: list[McpServerOut]) -> str:
    lines = [
        [
            s.name,
            s.transport,
            " ".join(s.urls) if s.transport == "http" else " ".join(s.command),
            "; ".join(f"{t}: {_rule_text(r)}" for t, r in s.tools.items()) or "-",
            "yes" if s.requires_approval else "no",
            f"{s.timeout_s:g}s",
            s.auth_env or "-",
            s.owner,
        ]
        for s in servers
    ]
    headers = ["name", "transport", "instances", "tool rules", "approval", "timeout", "auth env", "owner"]
    return "\n".join(render_table(headers, lines, "l" * len(headers)))


def catalogs_table(catalogs: list[tuple[McpServerOut, McpCatalogOut]]) -> str:
    lines = []
    for server, c in catalogs:
        instances = len(server.urls) if server.transport == "http" else 1
        lines.append(
            [
                c.server,
                str(len(c.tools)),
                str(len(c.prompts)),
                str(len(c.resources)),
                f"{len(c.healthy)}/{instances}",
                c.refreshed_at.strftime("%Y-%m-%d %H:%M:%S") if c.refreshed_at else "-",
                c.error or "-",
            ]
        )
    headers = ["server", "tools", "prompts", "resources", "healthy", "listed at (UTC)", "error"]
    return "\n".join(render_table(headers, lines, "lrrrrll"))


def tools_table(c: McpCatalogOut) -> str:
    def hints(t: Any) -> str:
        a = t.annotations
        if a is None:
            return "-"
        said = [("read-only", a.readOnlyHint), ("destructive", a.destructiveHint), ("idempotent", a.idempotentHint)]
        return ", ".join(name for name, on in said if on) or "-"

    lines = [[t.name, hints(t), " ".join((t.description or "-").split())[:80]] for t in c.tools]
    return "\n".join(render_table(["tool", "hints", "description"], lines, "lll"))


def run(args: argparse.Namespace) -> int:
    try:
        out = _run(args)
    except AdminError as exc:
        print(f"sluice mcp-servers {args.action}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _run(args: argparse.Namespace) -> str:
    if args.action == "list":
        data = call(args, "GET", "/mcp-servers")
        return json.dumps(data, indent=2) if args.json else servers_table(msgspec.convert(data, list[McpServerOut]))
    if args.action == "show":
        data = call(args, "GET", f"/mcp-servers/{args.name}")
        return json.dumps(data, indent=2) if args.json else servers_table([msgspec.convert(data, McpServerOut)])
    if args.action == "add":
        rules = dict(_rule_of(spec) for spec in args.tool or [])
        body = McpServerIn(
            urls=args.server_urls,
            auth_env=args.auth_env,
            auth_header=args.auth_header,
            timeout_s=args.timeout,
            requires_approval=args.requires_approval,
            tools=rules,
            description=args.description,
        )
        data = call(args, "PUT", f"/mcp-servers/{args.name}", body)
        return json.dumps(data, indent=2) if args.json else servers_table([msgspec.convert(data, McpServerOut)])
    if args.action == "remove":
        data = call(args, "DELETE", f"/mcp-servers/{args.name}")
        return json.dumps(data) if args.json else f"removed {msgspec.convert(data, Deleted).id}"
    # tools: every server's catalog, or one server's with its tools listed.
    if args.name:
        servers = [msgspec.convert(call(args, "GET", f"/mcp-servers/{args.name}"), McpServerOut)]
    else:
        servers = msgspec.convert(call(args, "GET", "/mcp-servers"), list[McpServerOut])
    raw = [call(args, "GET", f"/mcp-servers/{s.name}/catalog") for s in servers]
    if args.json:
        return json.dumps(raw, indent=2)
    catalogs = [(s, msgspec.convert(c, McpCatalogOut)) for s, c in zip(servers, raw, strict=True)]
    out = catalogs_table(catalogs)
    if args.name:
        out += "\n\n" + tools_table(catalogs[0][1])
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"), help="the gateway")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    p = sub.add_parser("mcp-servers", help="upstream MCP servers: register, remove, see their tools")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="every registered server")
    actions.add_parser("show", parents=[common]).add_argument("name")
    a = actions.add_parser(
        "add",
        parents=[common],
        help="register a Streamable HTTP server, or replace one the admin API made",
    )
    # --url is the gateway's, as for every admin command: the server's own are --instance.
    a.add_argument("name", help="letters, digits and '-'; callers see its tools as NAME__TOOL")
    a.add_argument(
        "--instance", dest="server_urls", action="append", required=True, metavar="URL",
        help="the server's MCP endpoint, e.g. http://127.0.0.1:9100/mcp (once per instance)",
    )  # fmt: skip
    a.add_argument("--auth-env", default="", metavar="VAR", help="variable of the provider process holding its token")
    a.add_argument("--auth-header", default="Authorization", help='header the token goes in ("Bearer" for this one)')
    a.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds a call may take")
    a.add_argument("--requires-approval", action="store_true", help='callers need an approved "mcp:NAME" subscription')
    a.add_argument(
        "--tool", action="append", metavar="TOOL:RULES",
        help="a tool's rule, e.g. echo:rpm=600,max_parallel=4,price_pico_usd=1000000,idempotent=true ('*': the rest)",
    )  # fmt: skip
    a.add_argument("--description", default="")
    actions.add_parser("remove", parents=[common], help="remove a server the admin API made").add_argument("name")
    t = actions.add_parser("tools", parents=[common], help="what each server offers: tools, health, last error")
    t.add_argument("name", nargs="?", help="one server, with its tools listed")
