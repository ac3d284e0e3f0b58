"""Upstream MCP servers in the config file (``[[mcp_servers]]``), and the one
check every server record passes, whether the file or the admin API made it.

A server's record becomes the prefix of every tool name callers see and a
command or URL the provider stage reaches, so what it may hold is narrow: a
name of letters, digits and "-", http(s) URLs without credentials in them
(the credential is ``auth_env``, the name of a variable, never its value),
and rule numbers that are not negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import msgspec

from schemas.mcp import PROMPT_NAMESPACE, SERVER_NAME, McpServer, McpTransport, ToolRule

MAX_URLS = 16
MAX_URL_CHARS = 2048
MAX_COMMAND_ARGS = 64
MAX_ARG_CHARS = 4096
MAX_ENV = 64
MAX_TOOL_RULES = 256
MAX_TOOL_NAME_CHARS = 128
MAX_DESCRIPTION_CHARS = 1000
MAX_TIMEOUT_S = 3600.0
# A price above $1,000 a call is a typo; it also keeps a budget's sums far from int64's end.
MAX_PRICE_PICO_USD = 10**15
MAX_RATE = 10**9
MAX_PATTERNS = 256
MAX_PATTERN_CHARS = 200

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
# Headers the transport itself sets: a credential sent in one of these would
# break the request or the session rather than authenticate it.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    }
)


class McpServerConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One ``[[mcp_servers]]`` table: a ``McpServer`` without what the seed sets."""

    name: str
    transport: McpTransport = "http"
    urls: list[str] = []
    command: list[str] = []
    cwd: str = ""
    env: dict[str, str] = {}
    auth_env: str = ""
    auth_header: str = "Authorization"
    timeout_s: float = 60.0
    requires_approval: bool = False
    # ``[mcp_servers.tools.<tool>]`` (or ``."*"``): rpm, max_parallel, price_pico_usd, idempotent.
    tools: dict[str, ToolRule] = {}
    description: str = ""


def record_of(c: McpServerConfig) -> McpServer:
    # Every field of the table is the record's, by name: a field added to
    # both needs no copying here.
    return McpServer(**msgspec.structs.asdict(c), owner="config")


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS or not url.isprintable():
        return f"url {url[:80]!r}: at most {MAX_URL_CHARS} printable characters"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        return f"url {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"url {url!r}: an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return f"url {url!r}: no credentials in the URL (it is shown to admins); name a variable in auth_env"
    if parts.fragment:
        return f"url {url!r}: no #fragment"
    return None


def _rule_problem(tool: str, rule: ToolRule) -> str | None:
    where = f"tools.{tool}"
    if not tool or len(tool) > MAX_TOOL_NAME_CHARS or not tool.isprintable():
        return f'{where}: a tool name of 1-{MAX_TOOL_NAME_CHARS} printable characters (or "*")'
    for field, value, top in (
        ("rpm", rule.rpm, MAX_RATE),
        ("max_parallel", rule.max_parallel, MAX_RATE),
        ("price_pico_usd", rule.price_pico_usd, MAX_PRICE_PICO_USD),
    ):
        if value is not None and not 0 <= value <= top:
            return f"{where}.{field}: must be between 0 and {top}"
    return None


def problem(server: McpServer) -> str | None:
    """What is wrong with a server record, or None."""
    if SERVER_NAME.fullmatch(server.name) is None:
        return "name: 1-48 letters, digits or '-', starting with a letter or digit (no '_': '__' separates tools)"
    if server.name == PROMPT_NAMESPACE:
        return f"name: {PROMPT_NAMESPACE!r} is the namespace of the gateway's prompt APIs as tools"
    if server.transport == "http":
        if not server.urls:
            return "transport http needs at least one URL in urls"
        if server.command or server.cwd or server.env:
            return "transport http takes urls; command, cwd and env are for stdio"
        if len(server.urls) > MAX_URLS or len(set(server.urls)) != len(server.urls):
            return f"urls: at most {MAX_URLS}, each once"
        for url in server.urls:
            if found := _url_problem(url):
                return found
    else:
        if not server.command or not server.command[0]:
            return "transport stdio needs a command (a list: the program, then its arguments)"
        if server.urls:
            return "transport stdio takes a command; urls are for http"
        if len(server.command) > MAX_COMMAND_ARGS or any(
            len(a) > MAX_ARG_CHARS or "\x00" in a for a in [*server.command, server.cwd]
        ):
            return f"command: at most {MAX_COMMAND_ARGS} arguments of at most {MAX_ARG_CHARS} characters, no NUL"
        if len(server.env) > MAX_ENV:
            return f"env: at most {MAX_ENV} variables"
        for name, value in server.env.items():
            if not _ENV_NAME.fullmatch(name) or len(value) > MAX_ARG_CHARS or "\x00" in value:
                return f"env {name[:80]!r}: a variable name (letters, digits, '_') and a value without NUL"
    if server.auth_env and not _ENV_NAME.fullmatch(server.auth_env):
        return f"auth_env {server.auth_env[:80]!r}: the name of an environment variable (letters, digits, '_')"
    if not _HEADER.fullmatch(server.auth_header) or server.auth_header.lower() in _RESERVED_HEADERS:
        return f"auth_header {server.auth_header[:80]!r}: a header name the transport does not set itself"
    if not (math.isfinite(server.timeout_s) and 0 < server.timeout_s <= MAX_TIMEOUT_S):
        return f"timeout_s: more than 0 and at most {MAX_TIMEOUT_S:g}"
    if len(server.tools) > MAX_TOOL_RULES:
        return f"tools: at most {MAX_TOOL_RULES} rules"
    for tool, rule in server.tools.items():
        if found := _rule_problem(tool, rule):
            return found
    if len(server.description) > MAX_DESCRIPTION_CHARS:
        return f"description: at most {MAX_DESCRIPTION_CHARS} characters"
    return None


def patterns_problem(patterns: Iterable[str]) -> str | None:
    """What is wrong with a list of ``mcp_tools`` patterns, or None."""
    patterns = list(patterns)
    if len(patterns) > MAX_PATTERNS:
        return f"mcp_tools: at most {MAX_PATTERNS} patterns"
    for p in patterns:
        if not p or len(p) > MAX_PATTERN_CHARS or not p.isprintable():
            return f'mcp_tools: pattern {p[:80]!r}: 1-{MAX_PATTERN_CHARS} printable characters, e.g. "demo-tools__*"'
    return None


def server_records(configured: list[McpServerConfig]) -> dict[str, McpServer]:
    """The ``[[mcp_servers]]`` tables as records by name; ValueError names the table at fault."""
    out: dict[str, McpServer] = {}
    for i, c in enumerate(configured):
        where = f"mcp_servers[{i}] {c.name!r}"
        if c.name in out:
            raise ValueError(f"{where}: another [[mcp_servers]] has this name")
        record = record_of(c)
        if found := problem(record):
            raise ValueError(f"{where}: {found}")
        out[c.name] = record
    return out
