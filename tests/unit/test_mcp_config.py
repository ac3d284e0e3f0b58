"""``[[mcp_servers]]`` and the tenants' and keys' ``mcp_tools``: what the
config file may say, and the records it becomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.mcp import PROMPT_NAMESPACE, McpServer, ToolRule
from services import config, mcp_config

GOOD = """
[gateway]
mcp_session_ttl_s = 600

[[tenants]]
id = "demo"
mcp_tools = ["demo-tools__*", "files__read_*"]
mcp_safety = "read_only"

[[keys]]
id = "narrow"
tenant = "demo"
sha256 = "00"
mcp_tools = ["demo-tools__echo"]

[[keys]]
id = "wide"
tenant = "demo"
sha256 = "01"

[[mcp_servers]]
name = "demo-tools"
transport = "http"
urls = ["http://127.0.0.1:9100/mcp", "https://tools.example.com/mcp"]
timeout_s = 30
requires_approval = true
auth_env = "DEMO_TOOLS_TOKEN"
description = "The mock's tools"
[mcp_servers.tools.echo]
rpm = 600
price_pico_usd = 1000000
[mcp_servers.tools."*"]
max_parallel = 4
idempotent = true

[[mcp_servers]]
name = "files"
transport = "stdio"
command = ["python", "-m", "files_server", "--root", "/srv"]
cwd = "/srv"
env = { LOG_LEVEL = "debug" }
auth_env = "FILES_TOKEN"
"""


def records_of(tmp_path: Path, text: str) -> config.ControlRecords:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config.control_records(config.load(path))


def test_servers_tenants_and_keys_become_records(tmp_path: Path) -> None:
    records = records_of(tmp_path, GOOD)
    demo = records.mcp_servers["demo-tools"]
    assert demo == McpServer(
        name="demo-tools",
        transport="http",
        urls=["http://127.0.0.1:9100/mcp", "https://tools.example.com/mcp"],
        timeout_s=30.0,
        requires_approval=True,
        auth_env="DEMO_TOOLS_TOKEN",
        description="The mock's tools",
        tools={"echo": ToolRule(rpm=600, price_pico_usd=1_000_000), "*": ToolRule(max_parallel=4, idempotent=True)},
        owner="config",
    )
    # A tool without a rule of its own takes "*".
    assert demo.rule("echo").price_pico_usd == 1_000_000 and demo.rule("other").max_parallel == 4
    files = records.mcp_servers["files"]
    assert (files.transport, files.command[0], files.cwd, files.env) == (
        "stdio",
        "python",
        "/srv",
        {"LOG_LEVEL": "debug"},
    )
    assert (records.tenants["demo"].mcp_tools, records.tenants["demo"].mcp_safety) == (
        ["demo-tools__*", "files__read_*"],
        "read_only",
    )
    assert records.keys["narrow"].mcp_tools == ["demo-tools__echo"]
    assert records.keys["wide"].mcp_tools is None  # all of its tenant's
    assert records.mcp_session_ttl_s == 600


def test_nothing_configured_is_no_tools(tmp_path: Path) -> None:
    records = records_of(tmp_path, '[[tenants]]\nid = "t"\n')
    assert records.mcp_servers == {}
    assert records.tenants["t"].mcp_tools == [] and records.tenants["t"].mcp_safety == "any"  # deny by default
    assert records.mcp_session_ttl_s == 24 * 3600


def server(body: str, name: str = "s") -> str:
    return f'[[mcp_servers]]\nname = "{name}"\n{body}\n'


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (server('urls = ["http://h/mcp"]', name="bad_name"), "name: 1-48 letters"),
        (server('urls = ["http://h/mcp"]', name="-lead"), "name: 1-48 letters"),
        (server('urls = ["http://h/mcp"]', name="x" * 49), "name: 1-48 letters"),
        (server('urls = ["http://h/mcp"]') + server('urls = ["http://h2/mcp"]'), "another [[mcp_servers]]"),
        (server('transport = "http"'), "at least one URL"),
        (server('urls = ["ftp://h/mcp"]'), "http:// or https://"),
        (server('urls = ["http:///mcp"]'), "with a host"),
        (server('urls = ["http://h:notaport/mcp"]'), "url"),
        (server('urls = ["https://user:pw@h/mcp"]'), "no credentials in the URL"),
        (server('urls = ["http://h/mcp", "http://h/mcp"]'), "each once"),
        (server('urls = ["http://h/mcp"]\ncommand = ["x"]'), "command, cwd and env are for stdio"),
        (server('transport = "stdio"'), "needs a command"),
        (server('transport = "stdio"\ncommand = [""]'), "needs a command"),
        (server('transport = "stdio"\ncommand = ["x"]\nurls = ["http://h/mcp"]'), "urls are for http"),
        (server('transport = "stdio"\ncommand = ["x"]\nenv = { "BAD NAME" = "1" }'), "env 'BAD NAME'"),
        (server('transport = "sse"\nurls = ["http://h/mcp"]'), "transport"),
        (server('urls = ["http://h/mcp"]\ntimeout_s = 0'), "timeout_s: more than 0"),
        (server('urls = ["http://h/mcp"]\ntimeout_s = -1'), "timeout_s: more than 0"),
        (server('urls = ["http://h/mcp"]\ntimeout_s = nan'), "timeout_s: more than 0"),
        (server('urls = ["http://h/mcp"]\nauth_env = "NOT-A-VAR"'), "auth_env"),
        (server('urls = ["http://h/mcp"]\nauth_header = "Host"'), "auth_header"),
        (server('urls = ["http://h/mcp"]\nauth_header = "X Bad"'), "auth_header"),
        (server('urls = ["http://h/mcp"]\n[mcp_servers.tools.echo]\nrpm = -1'), "tools.echo.rpm"),
        (server('urls = ["http://h/mcp"]\n[mcp_servers.tools.echo]\nmax_parallel = -2'), "tools.echo.max_parallel"),
        (server('urls = ["http://h/mcp"]\n[mcp_servers.tools."*"]\nprice_pico_usd = -5'), "tools.*.price_pico_usd"),
        (server('urls = ["http://h/mcp"]\n[mcp_servers.tools.echo]\nburst = 3'), "burst"),
        (server('urls = ["http://h/mcp"]\napi_key = "sk-oops"'), "api_key"),
    ],
)
def test_a_bad_server_names_its_table(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.control_records(config.load(path))
    assert says in str(err.value), str(err.value)
    assert "mcp_servers[" in str(err.value), str(err.value)  # which table: by position (and name once decoded)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[tenants]]\nid = "t"\nmcp_tools = [""]', "tenant 't': mcp_tools"),
        ('[[tenants]]\nid = "t"\nmcp_tools = ["a\\u0000b"]', "tenant 't': mcp_tools"),
        ('[[tenants]]\nid = "t"\n[[keys]]\nid = "k"\ntenant = "t"\nsha256 = "0"\nmcp_tools = ["' + "x" * 201 + '"]',
         "key 'k': mcp_tools"),
        ('[[tenants]]\nid = "t"\nmcp_tools = "demo-tools__*"', "mcp_tools"),
        ('[gateway]\nmcp_session_ttl_s = 0', "mcp_session_ttl_s"),
    ],
)  # fmt: skip
def test_bad_tool_patterns_and_settings_are_errors(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.control_records(config.load(path))
    assert says in str(err.value), str(err.value)


def test_the_check_is_the_admin_apis_too() -> None:
    ok = McpServer(name="a", urls=["http://127.0.0.1:1/mcp"])
    assert mcp_config.problem(ok) is None
    assert mcp_config.problem(McpServer(name="a", transport="stdio", command=["node", "x.js"])) is None
    # Hostile records a caller of the admin API might send.
    too_many = McpServer(name="a", urls=[f"http://h/{i}" for i in range(mcp_config.MAX_URLS + 1)])
    assert "at most" in (mcp_config.problem(too_many) or "")
    huge_price = McpServer(name="a", urls=["http://h/"], tools={"t": ToolRule(price_pico_usd=10**18)})
    assert "price_pico_usd" in (mcp_config.problem(huge_price) or "")
    control_chars = McpServer(name="a", urls=["http://h/\r\nX-Evil: 1"])
    assert "printable" in (mcp_config.problem(control_chars) or "")
    tool_name = McpServer(name="a", urls=["http://h/"], tools={"": ToolRule()})
    assert "tool name" in (mcp_config.problem(tool_name) or "")


def test_the_demo_config_registers_demo_tools_for_tenant_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MOCK_PORT", "9555")
    demo = Path(__file__).parents[2] / "services" / "cli" / "demo.toml"
    records = config.control_records(config.load(demo))
    server = records.mcp_servers["demo-tools"]
    assert (server.transport, server.urls) == ("http", ["http://127.0.0.1:9555/mcp"])
    assert server.rule("echo").price_pico_usd > 0
    assert "demo-tools__*" in records.tenants["demo"].mcp_tools


def test_no_server_may_take_the_prompt_apis_namespace() -> None:
    urls = ["http://127.0.0.1:1/mcp"]
    assert "prompt APIs" in (mcp_config.problem(McpServer(name=PROMPT_NAMESPACE, urls=urls)) or "")
    assert mcp_config.problem(McpServer(name="prompts", urls=urls)) is None
