"""``/mcp`` over HTTP, in process: the official SDK's client (Streamable
HTTP + ClientSession) against ingress.mcp_endpoint with fake mirrors, a
fake session bucket and a fake pipeline (tests/unit/test_mcp_ingress.py's):
the key, the gateway's own sessions, tenant endpoints and the errors a
client sees."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ingress.mcp_endpoint import McpEndpoint
from schemas.control import Tenant
from tests.unit.test_mcp_ingress import ALL, OTHER_SECRET, SECRET, FakePipeline, setup

BASE = "http://127.0.0.1:8080"


class FakeKv:
    """The few calls McpSessions makes of a NATS KV bucket."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.revision = 0

    async def create(self, key: str, value: bytes) -> int:
        assert key not in self.entries
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision

    async def get(self, key: str) -> Any:
        if key not in self.entries:
            raise KeyNotFoundError
        value, revision = self.entries[key]
        return SimpleNamespace(value=value, revision=revision)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if self.entries.get(key, (b"", 0))[1] != last:
            raise KeyWrongLastSequenceError
        self.revision += 1
        self.entries[key] = (value, self.revision)
        return self.revision

    async def purge(self, key: str) -> None:
        self.entries.pop(key, None)


class App:
    """The ingress's routing of /mcp, as app.py does it."""

    def __init__(self, endpoint: McpEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await self.endpoint.serve(scope, receive, send)


@asynccontextmanager
async def gateway(
    tenant: Tenant = ALL, **pipeline: Any
) -> AsyncIterator[tuple[httpx2.AsyncClient, FakePipeline, FakeKv]]:
    gw, calls, _, fake = setup(tenant, **pipeline)
    gw.nc = SimpleNamespace(jetstream=lambda: None)
    endpoint = McpEndpoint(gw)  # type: ignore[arg-type]
    endpoint.calls = calls
    kv = FakeKv()
    endpoint.sessions._kv = kv  # type: ignore[assignment]
    await endpoint.start()
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(App(endpoint)), base_url=BASE) as http:
            yield http, fake, kv
    finally:
        await endpoint.stop()


def client(http: httpx2.AsyncClient, key: str, path: str = "/mcp") -> Any:
    http.headers["authorization"] = f"Bearer {key}"
    return streamable_http_client(f"{BASE}{path}", http_client=http, terminate_on_close=True)


async def test_the_sdk_client_initializes_lists_calls_and_ends_its_session() -> None:
    async with gateway() as (http, fake, kv):
        async with client(http, SECRET) as (read, write), ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "sluice"
            assert init.capabilities.tools is not None and init.capabilities.prompts is not None
            assert init.capabilities.resources is not None
            [session_id] = kv.entries  # the gateway's own, stored where every replica finds it
            tools = await session.list_tools()
            assert "demo-tools__echo" in [t.name for t in tools.tools]
            result = await session.call_tool("demo-tools__echo", {"text": "hello"})
            assert result.content[0].text == "hi" and not result.is_error  # type: ignore[union-attr]
            assert [c.name for c in fake.published] == ["echo"]
            with pytest.raises(MCPError) as refused:
                await session.call_tool("github__create_issue", {"title": "x"})
            assert "does not exist" in refused.value.message
            assert refused.value.error.data["status"] == 404 and refused.value.error.data["code"] == "tool_not_found"
            assert len(fake.published) == 1
        assert session_id not in kv.entries  # ended by the client's DELETE


async def post(http: httpx2.AsyncClient, body: Any, key: str | None = SECRET, **headers: str) -> httpx2.Response:
    sent = {"accept": "application/json, text/event-stream", "content-type": "application/json", **headers}
    if key:
        sent["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post("/mcp", content=content, headers=sent)


def sse_json(response: httpx2.Response) -> dict:
    """The JSON-RPC message of a one-answer SSE stream (or a JSON body)."""
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    [data] = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return json.loads(data)


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


async def test_a_session_continues_only_with_the_key_that_opened_it() -> None:
    async with gateway() as (http, fake, _):
        opened = await post(http, INIT)
        assert opened.status_code == 200
        session_id = opened.headers["mcp-session-id"]
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "demo-tools__echo", "arguments": {"text": "x"}},
        }
        # Another caller's key with this session: as if it did not exist, and nothing runs.
        stolen = await post(http, call, OTHER_SECRET, **{"mcp-session-id": session_id})
        assert stolen.status_code == 404 and stolen.json()["error"]["data"]["code"] == "mcp_session_not_found"
        assert stolen.json()["id"] == 2
        unknown = await post(http, call, SECRET, **{"mcp-session-id": "01JUNKJUNKJUNKJUNKJUNKJUNK"})
        assert unknown.status_code == 404
        assert fake.published == []
        ok = await post(http, call, SECRET, **{"mcp-session-id": session_id})
        assert ok.status_code == 200 and sse_json(ok)["result"]["content"][0]["text"] == "hi"
        # DELETE ends it for its own key only.
        auth = {"authorization": f"Bearer {OTHER_SECRET}", "mcp-session-id": session_id}
        assert (await http.delete("/mcp", headers=auth)).status_code == 404
        auth["authorization"] = f"Bearer {SECRET}"
        assert (await http.delete("/mcp", headers=auth)).status_code == 200
        assert (await post(http, call, SECRET, **{"mcp-session-id": session_id})).status_code == 404
        assert len(fake.published) == 1


async def test_bad_requests_get_json_rpc_errors_and_never_a_5xx() -> None:
    async with gateway() as (http, fake, _):
        no_key = await post(http, INIT, key=None)
        assert no_key.status_code == 401 and no_key.json()["error"]["data"]["code"] == "missing_api_key"
        malformed = await post(http, b'{"jsonrpc": "2.0", "id": 3, "method": ')
        assert malformed.status_code < 500 and malformed.json()["error"]["code"] == -32700
        unknown = await post(http, {"jsonrpc": "2.0", "id": 4, "method": "tools/frobnicate"})
        assert unknown.status_code < 500 and sse_json(unknown)["error"]["code"] == -32601
        not_object = {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "tools/call",
            "params": {"name": "demo-tools__echo", "arguments": [1]},
        }
        answer = await post(http, not_object)
        assert answer.status_code < 500 and sse_json(answer)["error"]["code"] == -32602
        huge = {
            "jsonrpc": "2.0",
            "id": 6,
            "method": "tools/call",
            "params": {"name": "demo-tools__echo", "arguments": {"text": "a" * (2 << 20)}},
        }
        answer = await post(http, huge)
        error = sse_json(answer)["error"]
        assert answer.status_code < 500 and error["code"] == -32602 and error["data"]["code"] == "arguments_too_large"
        get = await http.get("/mcp", headers={"authorization": f"Bearer {SECRET}", "accept": "text/event-stream"})
        assert get.status_code == 405 and "POST" in get.headers["allow"]
        assert fake.published == []


async def test_a_tenants_endpoint_serves_that_tenants_keys_only() -> None:
    async with gateway() as (http, _, _):
        mine = await http.post(
            "/mcp/acme",
            content=json.dumps(INIT),
            headers={
                "authorization": f"Bearer {SECRET}",
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
            },
        )
        assert mine.status_code == 200
        theirs = await http.post(
            "/mcp/acme",
            content=json.dumps(INIT),
            headers={
                "authorization": f"Bearer {OTHER_SECRET}",
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
            },
        )
        assert theirs.status_code == 403 and theirs.json()["error"]["data"]["code"] == "wrong_tenant"
        nobody = await http.post("/mcp/nope", content=json.dumps(INIT), headers={"authorization": f"Bearer {SECRET}"})
        assert nobody.status_code == 404


async def test_a_client_of_mcps_stateless_revision_is_served_without_a_session() -> None:
    # The SDK's Client probes server/discover (2026-07-28): no initialize, so no session.
    async with gateway() as (http, fake, kv):
        async with Client(client(http, SECRET)) as mcp:
            assert "demo-tools__echo" in [t.name for t in (await mcp.list_tools()).tools]
            result = await mcp.call_tool("demo-tools__echo", {"text": "x"})
            assert result.content[0].text == "hi"  # type: ignore[union-attr]
            with pytest.raises(MCPError) as refused:
                await mcp.call_tool("nope__x", {})
            assert refused.value.error.data["code"] == "tool_not_found" and "'nope__x'" in refused.value.message
        assert kv.entries == {} and [c.name for c in fake.published] == ["echo"]
