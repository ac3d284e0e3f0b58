"""Upstream MCP servers as control records: seeded from the config file (a
re-seed changes only its own), managed over ``/admin/v1/mcp-servers`` by
gateway admins alone, their catalogs shown, and ``sluice mcp-servers``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from schemas import subjects
from schemas.mcp import (
    McpServer,
    ToolRule,
    decode_server,
)
from services import config
from services.bus import process
from services.bus.kv import kv_key, read_bucket
from services.bus.kv_writer import KvWriter
from services.cli import bootstrap
from services.cli.mcp_cli import MCP_DEMO_BODY
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack


def admin(stack: Stack, method: str, path: str, key: str = ADMIN_KEY, **kwargs: object) -> httpx.Response:
    return httpx.request(
        method, f"{stack.admin_url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=10, **kwargs
    )


def error_of(resp: httpx.Response) -> tuple[int, str]:
    return resp.status_code, resp.json()["error"]["code"]


_made = 0


def unique(prefix: str) -> str:
    global _made
    _made += 1
    return f"{prefix}-{_made}-{time.monotonic_ns() % 10**6}"


async def stored(stack: Stack, name: str) -> McpServer | None:
    """The record in the bucket itself, as every stage's watch sees it."""
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_MCP_SERVERS)
        try:
            entry = await kv.get(kv_key(name))
        except Exception:  # deleted or never there
            return None
        return decode_server(entry.value) if entry.value else None
    finally:
        await nc.close()


def test_the_config_files_server_is_listed_and_cannot_be_changed_here(stack: Stack) -> None:
    listed = {s["name"]: s for s in admin(stack, "GET", "/mcp-servers").json()}
    demo = listed["demo-tools"]
    assert (demo["owner"], demo["transport"], demo["urls"]) == ("config", "http", [f"{stack.mock_url}/mcp"])
    assert demo["tools"]["echo"]["price_pico_usd"] == 1_000_000
    assert admin(stack, "GET", "/mcp-servers/demo-tools").json() == demo
    body = {"urls": ["http://127.0.0.1:1/mcp"]}
    assert error_of(admin(stack, "PUT", "/mcp-servers/demo-tools", json=body)) == (409, "owned_by_config")
    assert error_of(admin(stack, "DELETE", "/mcp-servers/demo-tools")) == (409, "owned_by_config")
    assert asyncio.run(stored(stack, "demo-tools")).urls == [f"{stack.mock_url}/mcp"]  # untouched


def test_a_server_is_created_replaced_and_deleted_over_the_api(stack: Stack) -> None:
    name = unique("api-tools")
    body = {
        "urls": ["http://127.0.0.1:1/mcp", "http://127.0.0.1:2/mcp"],
        "auth_env": "API_TOOLS_TOKEN",
        "timeout_s": 5,
        "requires_approval": True,
        "tools": {"search": {"rpm": 10, "price_pico_usd": 500}, "*": {"max_parallel": 2}},
    }
    made = admin(stack, "PUT", f"/mcp-servers/{name}", json=body)
    assert made.status_code == 200, made.text
    shown = made.json()
    assert (shown["owner"], shown["requires_approval"], shown["auth_env"]) == ("api", True, "API_TOOLS_TOKEN")
    assert shown["tools"]["search"] == {"rpm": 10, "price_pico_usd": 500}
    assert admin(stack, "GET", f"/mcp-servers/{name}").json() == shown
    assert name in {s["name"] for s in admin(stack, "GET", "/mcp-servers").json()}
    record = asyncio.run(stored(stack, name))
    assert record is not None and record.rule("search") == ToolRule(rpm=10, price_pico_usd=500)
    assert record.rule("other") == ToolRule(max_parallel=2)

    replaced = admin(stack, "PUT", f"/mcp-servers/{name}", json={"urls": ["https://tools.example.com/mcp"]}).json()
    assert replaced["urls"] == ["https://tools.example.com/mcp"] and replaced["tools"] == {}
    assert replaced["requires_approval"] is False  # a PUT is the whole server
    assert replaced["created_at"] == shown["created_at"]  # still the same server
    assert asyncio.run(stored(stack, name)).urls == ["https://tools.example.com/mcp"]

    assert admin(stack, "DELETE", f"/mcp-servers/{name}").json() == {"id": name, "deleted": True}
    assert error_of(admin(stack, "GET", f"/mcp-servers/{name}"))[0] == 404
    assert error_of(admin(stack, "DELETE", f"/mcp-servers/{name}"))[0] == 404
    assert asyncio.run(stored(stack, name)) is None


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"transport": "stdio", "urls": ["http://h/mcp"]}, "stdio_not_allowed", "config file"),
        ({"urls": []}, "invalid_request", "urls"),
        ({}, "invalid_mcp_server", "at least one URL"),
        ({"urls": ["ftp://h/mcp"]}, "invalid_mcp_server", "http:// or https://"),
        ({"urls": ["https://user:secret@h/mcp"]}, "invalid_mcp_server", "no credentials"),
        ({"urls": ["http://h/\r\nX-Evil: 1"]}, "invalid_mcp_server", "printable"),
        ({"urls": ["http://h/mcp"], "command": ["sh", "-c", "id"]}, "invalid_request", "command"),
        ({"urls": ["http://h/mcp"], "timeout_s": 0}, "invalid_request", "timeout_s"),
        ({"urls": ["http://h/mcp"], "tools": {"echo": {"rpm": -1}}}, "invalid_request", "rpm"),
        ({"urls": ["http://h/mcp"], "tools": {"echo": {"price_pico_usd": 10**18}}}, "invalid_request", "price"),
        ({"urls": ["http://h/mcp"], "auth_env": "$(id)"}, "invalid_request", "auth_env"),
        ({"urls": ["http://h/mcp"], "auth_header": "Host"}, "invalid_mcp_server", "auth_header"),
        ({"urls": [f"http://h/{i}" for i in range(17)]}, "invalid_request", "urls"),
    ],
)
def test_a_bad_server_is_refused_and_nothing_is_stored(stack: Stack, body: dict, code: str, says: str) -> None:
    name = unique("bad")
    resp = admin(stack, "PUT", f"/mcp-servers/{name}", json=body)
    assert error_of(resp) == (400, code), resp.text
    assert says in resp.json()["error"]["message"], resp.text
    assert asyncio.run(stored(stack, name)) is None


@pytest.mark.parametrize("name", ["bad_name", "-x", "a" * 49, "a.b"])
def test_a_bad_server_name_is_refused(stack: Stack, name: str) -> None:
    resp = admin(stack, "PUT", f"/mcp-servers/{name}", json={"urls": ["http://h/mcp"]})
    assert error_of(resp)[0] in (400, 404), resp.text  # a dot may route nowhere; never stored either way
    assert asyncio.run(stored(stack, name)) is None


def test_only_gateway_admins_manage_servers(stack: Stack) -> None:
    tenant = unique("mcp-t")
    assert admin(stack, "POST", "/tenants", json={"id": tenant}).status_code == 201
    made = admin(stack, "POST", "/keys", json={"tenant": tenant, "role": "tenant_admin"})
    tenant_admin = made.json()["secret"]
    name = unique("theirs")
    for key, status in ((DEMO_KEY, 403), (tenant_admin, 403), ("sk-nobody", 401)):
        assert admin(stack, "GET", "/mcp-servers", key=key).status_code == status
        assert admin(stack, "GET", "/mcp-servers/demo-tools/catalog", key=key).status_code == status
        put = admin(stack, "PUT", f"/mcp-servers/{name}", key=key, json={"urls": ["http://h/mcp"]})
        assert put.status_code == status
        assert admin(stack, "DELETE", "/mcp-servers/demo-tools", key=key).status_code == status
    assert asyncio.run(stored(stack, name)) is None


def test_a_servers_catalog_is_shown_with_the_names_callers_see(stack: Stack) -> None:
    # A server of the admin API's, listed by the stack's own provider stage
    # (a catalog written here instead would race with the one it writes).
    name = unique("listed")
    url = f"{stack.mock_url}/@{name}/mcp"
    assert admin(stack, "PUT", f"/mcp-servers/{name}", json={"urls": [url]}).status_code == 200
    deadline = time.monotonic() + 20
    while not (shown := admin(stack, "GET", f"/mcp-servers/{name}/catalog").json())["tools"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    tools = {t["upstream_name"]: t for t in shown["tools"]}
    assert [t["name"] for t in shown["tools"]] == sorted(f"{name}__{tool}" for tool in tools)
    assert {"echo", "lookup", "delete_item"} <= set(tools)
    assert tools["echo"]["annotations"]["readOnlyHint"] is True
    assert tools["echo"]["input_schema"]["properties"]["text"]["type"] == "string"
    assert tools["delete_item"]["annotations"]["destructiveHint"] is True
    assert [p["name"] for p in shown["prompts"]] == ["greeting"]
    assert shown["healthy"] == [url] and not shown["error"] and shown["refreshed_at"]
    assert error_of(admin(stack, "GET", f"/mcp-servers/{unique('none')}/catalog"))[0] == 404
    admin(stack, "DELETE", f"/mcp-servers/{name}")


def test_a_server_not_listed_yet_says_so(stack: Stack) -> None:
    name = unique("unlisted")
    assert admin(stack, "PUT", f"/mcp-servers/{name}", json={"urls": ["http://127.0.0.1:1/mcp"]}).status_code == 200
    shown = admin(stack, "GET", f"/mcp-servers/{name}/catalog").json()
    # No provider stage has written it yet (or it found the server down): no tools, and why.
    assert shown["tools"] == [] and shown["healthy"] == [] and shown["error"]
    admin(stack, "DELETE", f"/mcp-servers/{name}")


def test_tenants_and_keys_get_their_mcp_tools_over_the_api(stack: Stack) -> None:
    tenant = unique("mcp-t")
    body = {"id": tenant, "mcp_tools": ["demo-tools__*"], "mcp_safety": "read_only"}
    made = admin(stack, "POST", "/tenants", json=body)
    assert (made.json()["mcp_tools"], made.json()["mcp_safety"]) == (["demo-tools__*"], "read_only")
    changed = admin(stack, "PATCH", f"/tenants/{tenant}", json={"mcp_safety": "non_destructive"}).json()
    assert (changed["mcp_tools"], changed["mcp_safety"]) == (["demo-tools__*"], "non_destructive")
    key = admin(stack, "POST", "/keys", json={"tenant": tenant, "mcp_tools": ["demo-tools__echo"]}).json()
    assert key["mcp_tools"] == ["demo-tools__echo"]
    widened = admin(stack, "PATCH", f"/keys/{key['id']}", json={"mcp_tools": None}).json()
    assert widened["mcp_tools"] is None  # all of its tenant's again
    bad = admin(stack, "PATCH", f"/tenants/{tenant}", json={"mcp_tools": ["ok", "bad\u0000"]})
    assert error_of(bad)[0] == 400


# --- sluice mcp-servers ---------------------------------------------------------


def sluice(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLUICE_ADMIN_KEY": ADMIN_KEY, "SLUICE_URL": f"http://127.0.0.1:{stack.layout.http_port}"}
    env.pop("SLUICE_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "services.cli.cli", "mcp-servers", *args],
        capture_output=True,
        text=True,
        env=env,
        check=check,
        timeout=60,
    )


def test_the_command_line_adds_lists_shows_tools_and_removes(stack: Stack) -> None:
    name = unique("cli-tools")
    out = sluice(
        stack, "add", name, "--instance", "http://127.0.0.1:1/mcp", "--tool", "echo:rpm=5,price_pico_usd=7",
        "--tool", "*:idempotent=true", "--requires-approval",
    ).stdout  # fmt: skip
    assert name in out and "echo: 5 rpm, 7 pUSD" in out and "*: idempotent" in out
    listed = sluice(stack, "list").stdout
    assert "demo-tools" in listed and name in listed and "config" in listed
    as_json = json.loads(sluice(stack, "list", "--json").stdout)
    assert next(s for s in as_json if s["name"] == name)["requires_approval"] is True
    tools = sluice(stack, "tools").stdout
    header = tools.splitlines()[0].split()
    assert header[:5] == ["server", "tools", "prompts", "resources", "healthy"]
    row = next(line for line in tools.splitlines() if line.startswith(name + " "))
    # Not listed yet, or listed by a provider stage that found nothing there: either way, why.
    assert row.split()[1:5] == ["0", "0", "0", "0/1"] and row.split()[-1] != "-"
    one = sluice(stack, "tools", name).stdout
    assert "tool" in one.splitlines()[-2]  # its (empty) tool list's header follows the summary
    assert f"removed {name}" in sluice(stack, "remove", name).stdout
    gone = sluice(stack, "show", name, check=False)
    assert gone.returncode == 1 and "404" in gone.stderr
    refused = sluice(stack, "remove", "demo-tools", check=False)
    assert refused.returncode == 1 and "config file" in refused.stderr
    bad = sluice(stack, "add", unique("x"), "--instance", "http://h/mcp", "--tool", "echo:burst=3", check=False)
    assert bad.returncode == 1 and "burst" in bad.stderr


# --- seeding --------------------------------------------------------------------

SEEDED = """
[[mcp_servers]]
name = "a"
urls = ["http://127.0.0.1:1/mcp"]
{a_rule}
[[mcp_servers]]
name = "{second}"
urls = ["http://127.0.0.1:2/mcp"]
"""


async def seed_and_read(url: str, tmp: Path, text: str) -> tuple[list[str], dict[str, McpServer]]:
    path = tmp / "c.toml"
    path.write_text(text)
    nc = await process.connect("test", url)
    try:
        warnings = await bootstrap.prepare(nc, config.control_records(config.load(path)))
        return warnings, await read_bucket(nc, subjects.KV_MCP_SERVERS, decode_server)
    finally:
        await nc.close()


async def api_server(url: str, server: McpServer) -> None:
    nc = await process.connect("test", url)
    try:
        await KvWriter(nc.jetstream(), lambda _: None).write(
            subjects.KV_MCP_SERVERS, server.name, server, revision=0, actor="t", action="create", record_type="x"
        )
    finally:
        await nc.close()


async def bucket_configs(url: str) -> dict[str, tuple[int, float]]:
    nc = await process.connect("test", url)
    try:
        js = nc.jetstream()
        out = {}
        for bucket in (subjects.KV_MCP_SERVERS, subjects.KV_MCP_CATALOG, subjects.KV_MCP_SESSIONS):
            info = await js.stream_info(f"KV_{bucket}")
            out[bucket] = (info.config.max_msgs_per_subject, info.config.max_age or 0)
        return out
    finally:
        await nc.close()


def test_a_reseed_changes_only_the_config_files_servers(nats_url: str, tmp_path: Path) -> None:
    first = SEEDED.format(a_rule="[mcp_servers.tools.echo]\nrpm = 5", second="b")
    _, servers = asyncio.run(seed_and_read(nats_url, tmp_path, first))
    assert {n: s.owner for n, s in servers.items()} == {"a": "config", "b": "config"}
    assert servers["a"].rule("echo").rpm == 5 and servers["a"].created_at_ms > 0
    asyncio.run(api_server(nats_url, McpServer(name="mine", urls=["http://127.0.0.1:3/mcp"], owner="api")))

    # "a" changes, "b" leaves the file, "mine" (the admin API's) is named by the file too.
    second = SEEDED.format(a_rule="[mcp_servers.tools.echo]\nrpm = 9", second="mine")
    warnings, after = asyncio.run(seed_and_read(nats_url, tmp_path, second))
    assert set(after) == {"a", "mine"}  # b deleted
    assert after["a"].rule("echo").rpm == 9 and after["a"].created_at_ms == servers["a"].created_at_ms
    assert (after["mine"].owner, after["mine"].urls) == ("api", ["http://127.0.0.1:3/mcp"])  # untouched
    assert any("mcp_server 'mine'" in w and "admin API" in w for w in warnings), warnings

    # The buckets: server records keep history, catalogs and sessions one value, sessions age out.
    configs = asyncio.run(bucket_configs(nats_url))
    assert configs[subjects.KV_MCP_SERVERS][0] == 5
    assert configs[subjects.KV_MCP_CATALOG] == (1, 0)
    assert configs[subjects.KV_MCP_SESSIONS] == (1, 24 * 3600)


def test_the_provider_stages_listing_of_demo_tools_is_shown(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    while not (shown := admin(stack, "GET", "/mcp-servers/demo-tools/catalog").json())["tools"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    names = {t["name"] for t in shown["tools"]}
    assert {"demo-tools__echo", "demo-tools__lookup", "demo-tools__delete_item"} <= names
    lookup = next(t for t in shown["tools"] if t["upstream_name"] == "lookup")
    assert lookup["annotations"]["readOnlyHint"] is True
    assert shown["healthy"] == [f"{stack.mock_url}/mcp"] and not shown["error"]
    row = next(line for line in sluice(stack, "tools").stdout.splitlines() if line.startswith("demo-tools "))
    assert row.split()[1] == str(len(names)) and row.split()[4] == "1/1"
    assert "read-only" in next(
        line for line in sluice(stack, "tools", "demo-tools").stdout.splitlines() if "lookup" in line
    )


def test_the_mcp_example_sluice_up_prints_answers(stack: Stack) -> None:
    before = httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["calls"].get("echo", 0)
    resp = httpx.post(
        f"http://127.0.0.1:{stack.layout.http_port}/mcp",
        content=MCP_DEMO_BODY,
        headers={
            "authorization": f"Bearer {DEMO_KEY}",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    # Streamable HTTP answers JSON or one SSE event; either way the result is the echo.
    body = resp.text if resp.headers["content-type"].startswith("application/json") else resp.text.split("data: ", 1)[1]
    answer = json.loads(body)
    assert answer["result"]["content"][0]["text"] == "Hi" and not answer["result"].get("isError"), answer
    assert httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["calls"]["echo"] == before + 1
