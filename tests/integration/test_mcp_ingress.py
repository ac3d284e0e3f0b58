"""The MCP front door on a whole gateway: the official ``mcp`` SDK client
(Streamable HTTP + ClientSession) lists and calls the mock's MCP server
through ``/mcp``; a caller without the tool, and bad input of every kind,
get MCP errors, never a 5xx, and nothing reaches the upstream (the mock's
own count); services call the same over ``sluice.v1.in.mcp``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from schemas import subjects
from services.keys import hash_key
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

NARROW_KEY = "sk-test-mcp-narrow-0123456789"
GATED_KEY = "sk-test-mcp-gated-0123456789"
# Short, so a test sees sessions age out (and the ones in use kept).
SESSION_TTL_S = 4

EXTRA = f"""
[[tenants]]
id = "narrow"
mcp_tools = ["demo-tools__lookup"]

[[keys]]
id = "narrow"
tenant = "narrow"
sha256 = "{hash_key(NARROW_KEY)}"

[[tenants]]
id = "gated"
mcp_tools = ["gated-tools__*"]

[[keys]]
id = "gated"
tenant = "gated"
sha256 = "{hash_key(GATED_KEY)}"

# The mock's tools again, under a server whose calls need an approved subscription.
[[mcp_servers]]
name = "gated-tools"
urls = ["http://127.0.0.1:{{mock}}/@gated/mcp"]
requires_approval = true
"""

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("mcp-ingress"),
        timeout_s=20,
        extra_config=EXTRA,
        max_body_bytes=4 << 20,
        gateway=f"mcp_session_ttl_s = {SESSION_TTL_S}",
    )
    s.start()
    try:
        wait_listed(s)
        wait_listed(s, GATED_KEY)
        yield s
    finally:
        s.stop()


def mcp_url(stack: Stack, path: str = "/mcp") -> str:
    return f"http://127.0.0.1:{stack.layout.http_port}{path}"


def wait_listed(stack: Stack, key: str = DEMO_KEY, timeout: float = 30) -> None:
    """Until the provider stage has listed the key's servers and the ingress mirrors them."""
    deadline = time.monotonic() + timeout
    while True:
        answer = post(stack, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key)
        if answer.status_code == 200 and rpc(answer).get("result", {}).get("tools"):
            return
        assert time.monotonic() < deadline, f"no tools listed after {timeout}s: {answer.text[:300]}"
        time.sleep(0.2)


def post(stack: Stack, body: Any, key: str | None = DEMO_KEY, path: str = "/mcp", **headers: str) -> httpx.Response:
    sent = {"accept": "application/json, text/event-stream", "content-type": "application/json", **headers}
    if key:
        sent["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(mcp_url(stack, path), content=content, headers=sent, timeout=30)


def rpc(response: httpx.Response) -> dict:
    """The JSON-RPC message of an answer: a JSON body, or the one message of an SSE stream."""
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    [data] = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return json.loads(data)


def upstream_calls(stack: Stack) -> dict[str, int]:
    return httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["calls"]


def total(calls: dict[str, int]) -> int:
    return sum(calls.values())


async def with_client(stack: Stack, key: str, run: Any, path: str = "/mcp") -> Any:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=30) as http,
        streamable_http_client(mcp_url(stack, path), http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await run(session)


def test_the_official_client_lists_and_calls_the_upstreams_tools_through_mcp(stack: Stack) -> None:
    before = upstream_calls(stack).get("echo", 0)

    async def run(session: ClientSession) -> Any:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        echoed = await session.call_tool("demo-tools__echo", {"text": "hello through the gateway"})
        failed = await session.call_tool("demo-tools__fail", {})
        prompt = await session.get_prompt("demo-tools__greeting", {"name": "Ada"})
        [resource] = (await session.list_resources()).resources
        read = await session.read_resource(resource.uri)
        return tools, echoed, failed, prompt, resource, read

    tools, echoed, failed, prompt, resource, read = asyncio.run(with_client(stack, DEMO_KEY, run))
    # Every tool of the mock, namespaced, with the schemas and hints it gave.
    assert {"demo-tools__echo", "demo-tools__lookup", "demo-tools__delete_item", "demo-tools__slow"} <= set(tools)
    assert tools["demo-tools__echo"].input_schema["required"] == ["text"]
    assert tools["demo-tools__lookup"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["demo-tools__delete_item"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert echoed.content[0].text == "hello through the gateway" and not echoed.is_error  # type: ignore[union-attr]
    assert failed.is_error is True  # the tool's own error: a result, not a JSON-RPC error
    assert prompt.messages[0].content.text == "Hello, Ada!"  # type: ignore[union-attr]
    assert resource.uri == "sluice-mcp://demo-tools/demo://readme"
    assert read.contents[0].uri == resource.uri and read.contents[0].text  # type: ignore[union-attr]
    assert upstream_calls(stack)["echo"] == before + 1


def test_a_key_not_allowed_a_tool_neither_sees_it_nor_reaches_the_upstream_with_it(stack: Stack) -> None:
    before = upstream_calls(stack)

    async def run(session: ClientSession) -> Any:
        listed = [t.name for t in (await session.list_tools()).tools]
        with pytest.raises(MCPError) as refused:
            await session.call_tool("demo-tools__echo", {"text": "x"})
        return listed, refused.value

    listed, refused = asyncio.run(with_client(stack, NARROW_KEY, run))
    assert listed == ["demo-tools__lookup"]
    assert refused.error.data["status"] == 403 and refused.error.data["code"] == "tool_not_allowed"
    assert "may not call tool 'demo-tools__echo'" in refused.message
    assert upstream_calls(stack) == before


def test_bad_input_gets_mcp_errors_never_a_5xx_and_reaches_no_upstream(stack: Stack) -> None:
    before = upstream_calls(stack)
    opened = post(stack, INIT)
    session_id = opened.headers["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "demo-tools__echo"}}
    answers = {
        "malformed": post(stack, b'{"jsonrpc": "2.0", "id": 2, "method": "tools/'),
        "unknown method": post(stack, {"jsonrpc": "2.0", "id": 3, "method": "tools/frobnicate"}),
        "another namespace": post(
            stack, {**call, "params": {"name": "github__create_issue", "arguments": {"title": "x"}}}
        ),
        "not an object": post(stack, {**call, "params": {"name": "demo-tools__echo", "arguments": "text"}}),
        "oversized": post(
            stack, {**call, "params": {"name": "demo-tools__echo", "arguments": {"text": "a" * (3 << 20)}}}
        ),
        "another caller's session": post(
            stack,
            {**call, "params": {"name": "demo-tools__echo", "arguments": {"text": "x"}}},
            key=NARROW_KEY,
            **{"mcp-session-id": session_id},
        ),
        "no key": post(stack, {**call, "params": {"name": "demo-tools__echo", "arguments": {"text": "x"}}}, key=None),
    }
    codes = {}
    for what, answer in answers.items():
        assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
        error = rpc(answer)["error"]
        assert error["message"], what
        codes[what] = (
            error["code"],
            (error.get("data") or {}).get("code") if isinstance(error.get("data"), dict) else None,
        )
    assert codes["malformed"][0] == -32700
    assert codes["unknown method"][0] == -32601
    assert codes["another namespace"] == (-32602, "tool_not_found")
    assert codes["not an object"][0] == -32602
    assert codes["oversized"] == (-32602, "arguments_too_large")
    assert answers["another caller's session"].status_code == 404
    assert codes["another caller's session"][1] == "mcp_session_not_found"
    assert answers["no key"].status_code == 401
    assert upstream_calls(stack) == before
    # The session still serves the key that opened it, on this or any replica (it lives in KV).
    ok = post(
        stack,
        {**call, "params": {"name": "demo-tools__echo", "arguments": {"text": "mine"}}},
        **{"mcp-session-id": session_id},
    )
    assert rpc(ok)["result"]["content"][0]["text"] == "mine"


def test_a_tenants_endpoint_takes_only_its_own_keys(stack: Stack) -> None:
    assert post(stack, INIT, path="/mcp/demo").status_code == 200
    other = post(stack, INIT, key=NARROW_KEY, path="/mcp/demo")
    assert other.status_code == 403 and rpc(other)["error"]["data"]["code"] == "wrong_tenant"


def test_services_call_tools_over_the_bus(stack: Stack) -> None:
    before = upstream_calls(stack).get("echo", 0)

    async def ask(message: dict, key: str = DEMO_KEY) -> dict:
        nc = await stack.connect()
        try:
            reply = await nc.request(
                subjects.IN_MCP, json.dumps(message).encode(), timeout=20, headers={"Authorization": f"Bearer {key}"}
            )
            return json.loads(reply.data)
        finally:
            await nc.close()

    listed = asyncio.run(ask({"jsonrpc": "2.0", "id": "a", "method": "tools/list"}))
    assert "demo-tools__echo" in [t["name"] for t in listed["result"]["tools"]]
    echo = {"name": "demo-tools__echo", "arguments": {"text": "from a service"}}
    called = asyncio.run(ask({"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": echo}))
    assert called["id"] == "b" and called["result"]["content"] == [{"type": "text", "text": "from a service"}]
    refused = asyncio.run(ask({"jsonrpc": "2.0", "id": "c", "method": "tools/call", "params": echo}, key=NARROW_KEY))
    assert refused["error"]["data"]["status"] == 403
    assert upstream_calls(stack)["echo"] == before + 1


def test_a_server_that_needs_approval_is_refused_until_the_tenants_subscription_is_approved(stack: Stack) -> None:
    def gated_calls() -> int:
        return httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["by_upstream"].get("gated", 0)

    async def call(session: ClientSession) -> Any:
        try:
            return await session.call_tool("gated-tools__echo", {"text": "let me in"})
        except MCPError as exc:
            return exc

    refused = asyncio.run(with_client(stack, GATED_KEY, call))
    assert isinstance(refused, MCPError) and refused.error.data["code"] == "subscription_required", refused
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(
        f"{stack.admin_url}/subscriptions", json={"tenant": "gated", "model": "mcp:gated-tools"}, headers=admin
    )
    sub = created.json()
    deadline = time.monotonic() + 10
    pending = asyncio.run(with_client(stack, GATED_KEY, call))
    # Until policy's mirror has the subscription, the call is refused as before.
    while isinstance(pending, MCPError) and pending.error.data["code"] == "subscription_required":
        assert time.monotonic() < deadline, pending.message
        pending = asyncio.run(with_client(stack, GATED_KEY, call))
    assert isinstance(pending, MCPError) and pending.error.data["code"] == "subscription_pending", pending
    assert "pending approval" in pending.message and gated_calls() == 0
    assert httpx.post(f"{stack.admin_url}/subscriptions/{sub['id']}/approve", headers=admin).status_code == 200
    while isinstance(answer := asyncio.run(with_client(stack, GATED_KEY, call)), MCPError):
        assert time.monotonic() < deadline + 10, answer.message
    assert answer.content[0].text == "let me in"  # type: ignore[union-attr]
    assert gated_calls() == 1


def test_delete_ends_a_session(stack: Stack) -> None:
    session_id = post(stack, INIT).headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert post(stack, ping, **{"mcp-session-id": session_id}).status_code == 200
    headers = {"authorization": f"Bearer {DEMO_KEY}", "mcp-session-id": session_id}
    assert httpx.delete(mcp_url(stack), headers=headers).status_code == 200
    gone = post(stack, ping, **{"mcp-session-id": session_id})
    assert gone.status_code == 404 and rpc(gone)["error"]["data"]["code"] == "mcp_session_not_found"


def test_a_session_in_use_outlives_the_ttl_and_an_idle_one_ages_out(stack: Stack) -> None:
    session_id = post(stack, INIT).headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    started = time.monotonic()
    while time.monotonic() - started < SESSION_TTL_S * 1.5:
        assert post(stack, ping, **{"mcp-session-id": session_id}).status_code == 200
        time.sleep(0.5)
    time.sleep(SESSION_TTL_S * 1.5)
    assert post(stack, ping, **{"mcp-session-id": session_id}).status_code == 404
