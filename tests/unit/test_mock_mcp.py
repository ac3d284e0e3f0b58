"""The mock upstream's MCP server, as an MCP client meets it over Streamable
HTTP: its tools (schemas, annotations, answers), prompt and resource, what
it counts, its bearer token and a named instance taken down."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
import pytest
import uvicorn
from mcp import StdioServerParameters
from mcp.client import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from loadtest.mock_upstream.app import MockUpstream
from loadtest.mock_upstream.mcp_server import SECRET_TEXT
from services.cli.nats_server import free_port
from services.detectors import find

TOKEN = "mock-secret-token"
ROOT = Path(__file__).resolve().parents[2]


class Running:
    """A mock served by uvicorn in a thread (its lifespan runs the MCP session manager)."""

    def __init__(self, mock: MockUpstream) -> None:
        self.mock = mock
        self.port = free_port()
        config = uvicorn.Config(mock, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the mock did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/mock/mcp/stats").json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the mock did not shut down"


@pytest.fixture(scope="module")
def mock() -> Iterator[Running]:
    running = Running(MockUpstream(mcp_token=""))  # "" is no token even with $MOCK_MCP_TOKEN set
    yield running
    running.stop()


@pytest.fixture
def fresh(mock: Running) -> Running:
    assert httpx.post(f"{mock.url}/mock/mcp/reset").status_code == 200
    return mock


@asynccontextmanager
async def session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


async def test_tools_are_listed_with_their_schemas_and_annotations(fresh: Running) -> None:
    async with session(f"{fresh.url}/mcp") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    assert set(tools) == {"echo", "slow", "fail", "secret", "lookup", "delete_item", "echo_args"}
    echo, lookup, delete = tools["echo"], tools["lookup"], tools["delete_item"]
    assert echo.input_schema["required"] == ["text"]
    assert echo.input_schema["properties"]["text"]["type"] == "string"
    assert echo.annotations is not None and echo.annotations.read_only_hint and echo.annotations.idempotent_hint
    assert lookup.annotations is not None and lookup.annotations.read_only_hint is True
    assert lookup.output_schema is not None and lookup.output_schema["required"] == ["id", "found"]
    assert delete.annotations is not None
    assert delete.annotations.destructive_hint is True and delete.annotations.read_only_hint is False
    assert tools["slow"].input_schema["properties"]["seconds"]["maximum"] == 30
    # Tools with no hints say nothing (a gateway requiring readOnlyHint must refuse them).
    assert tools["fail"].annotations is None and tools["secret"].annotations is None


async def test_each_tool_answers(fresh: Running) -> None:
    async with session(f"{fresh.url}/mcp") as s:
        echo = await s.call_tool("echo", {"text": "héllo"})
        assert text_of(echo) == "héllo" and not echo.is_error
        started = time.monotonic()
        slow = await s.call_tool("slow", {"seconds": 0.3})
        assert time.monotonic() - started >= 0.3
        assert text_of(slow) == "slept 0.3" and not slow.is_error
        failed = await s.call_tool("fail", {})
        assert failed.is_error and text_of(failed) == "the tool failed"
        found = await s.call_tool("lookup", {"id": "item-7"})
        assert found.structured_content == {"id": "item-7", "found": True} and not found.is_error
        assert text_of(await s.call_tool("delete_item", {"id": "item-7"})) == "deleted item-7"
        args = {"email": "[EMAIL_1]", "n": [1, 2.5, None], "nested": {"ok": True}}
        assert text_of(await s.call_tool("echo_args", args)) == (
            '{"email":"[EMAIL_1]","n":[1,2.5,null],"nested":{"ok":true}}'
        )
        secret = text_of(await s.call_tool("secret", {}))
    assert secret == SECRET_TEXT
    # The gateway's output checks must catch both: the detectors it runs find them.
    kinds = {(f.detector, secret[f.start : f.end]) for f in find(secret)}
    assert ("secret", "AKIAIOSFODNN7EXAMPLE") in kinds and ("email", "ops@example.com") in kinds


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("echo", {}),
        ("echo", {"text": 5}),
        ("slow", {"seconds": "1"}),
        ("slow", {"seconds": 31}),
        ("slow", {"seconds": -1}),
        ("slow", {"seconds": True}),
        ("lookup", {"id": ["x"]}),
        ("delete_item", {}),
    ],
)
async def test_bad_arguments_are_the_tools_error(fresh: Running, tool: str, args: dict[str, Any]) -> None:
    async with session(f"{fresh.url}/mcp") as s:
        result = await s.call_tool(tool, args)
    assert result.is_error
    assert not text_of(result).startswith(("slept", "deleted"))


async def test_an_unknown_tool_prompt_or_resource_is_a_protocol_error(fresh: Running) -> None:
    async with session(f"{fresh.url}/mcp") as s:
        with pytest.raises(MCPError) as tool:
            await s.call_tool("rm_rf", {})
        with pytest.raises(MCPError) as prompt:
            await s.get_prompt("greeting", {})
        with pytest.raises(MCPError) as resource:
            await s.read_resource("demo://other")
    assert tool.value.code == types.INVALID_PARAMS
    assert prompt.value.code == types.INVALID_PARAMS
    assert resource.value.code == -32002
    assert "rm_rf" not in fresh.stats()["calls"]


async def test_the_prompt_and_the_resource(fresh: Running) -> None:
    async with session(f"{fresh.url}/mcp") as s:
        prompts = (await s.list_prompts()).prompts
        resources = (await s.list_resources()).resources
        greeting = await s.get_prompt("greeting", {"name": "Ada"})
        readme = await s.read_resource("demo://readme")
    assert [p.name for p in prompts] == ["greeting"]
    assert prompts[0].arguments is not None and prompts[0].arguments[0].required is True
    assert [(str(r.uri), r.mime_type) for r in resources] == [("demo://readme", "text/plain")]
    assert len(greeting.messages) == 1 and greeting.messages[0].role == "user"
    content = greeting.messages[0].content
    assert isinstance(content, types.TextContent) and content.text == "Hello, Ada!"
    [contents] = readme.contents
    assert isinstance(contents, types.TextResourceContents) and contents.text == "Sluice demo tools"


async def test_stats_count_calls_per_tool_and_named_upstream_and_reset(fresh: Running) -> None:
    async with session(f"{fresh.url}/@a/mcp") as a:
        await a.call_tool("echo", {"text": "1"})
        await a.call_tool("echo", {"text": "2"})
        await a.call_tool("echo_args", {"x": 1})
    async with session(f"{fresh.url}/@b/mcp") as b:
        await b.call_tool("fail", {})
    async with session(f"{fresh.url}/mcp") as plain:
        await plain.call_tool("echo", {"text": "3"})
    stats = fresh.stats()
    assert stats["calls"] == {"echo": 3, "echo_args": 1, "fail": 1}
    assert stats["by_upstream"] == {"a": 3, "b": 1}
    assert stats["sessions"] == 3
    assert stats["methods"]["tools/call"] == 5 and stats["methods"]["initialize"] == 3
    assert stats["last_arguments"] == {"echo": {"text": "3"}, "echo_args": {"x": 1}, "fail": {}}
    assert httpx.post(f"{fresh.url}/mock/mcp/reset").status_code == 200
    zeroed = fresh.stats()
    assert zeroed["calls"] == {} and zeroed["by_upstream"] == {} and zeroed["sessions"] == 0
    assert zeroed["last_arguments"] == {}


async def test_the_per_request_protocol_era_is_served_too(fresh: Running) -> None:
    """The SDK's Client probes server/discover (2026-07-28, no session) before any handshake."""
    async with Client(f"{fresh.url}/@modern/mcp") as client:
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("echo", {"text": "now"})
    assert text_of(result) == "now"
    stats = fresh.stats()
    assert stats["by_upstream"] == {"modern": 1} and stats["sessions"] == 0


async def test_a_named_instance_can_be_taken_down(fresh: Running) -> None:
    put = httpx.put(f"{fresh.url}/mock/upstreams/down", json={"directives": "[mock:status=503]"})
    assert put.status_code == 200
    try:
        r = httpx.post(f"{fresh.url}/@down/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert r.status_code == 503
        async with session(f"{fresh.url}/@up/mcp") as s:
            assert text_of(await s.call_tool("echo", {"text": "still"})) == "still"
    finally:
        httpx.delete(f"{fresh.url}/mock/upstreams/down")
    async with session(f"{fresh.url}/@down/mcp") as s:
        assert text_of(await s.call_tool("echo", {"text": "back"})) == "back"


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
ACCEPT = {"accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def guarded() -> Iterator[Running]:
    running = Running(MockUpstream(mcp_token=TOKEN))
    yield running
    running.stop()


async def test_a_token_is_required_when_set_and_what_arrived_is_reported(guarded: Running) -> None:
    url = f"{guarded.url}/mcp"
    missing = httpx.post(url, json=INITIALIZE, headers=ACCEPT)
    wrong = httpx.post(url, json=INITIALIZE, headers={**ACCEPT, "authorization": "Bearer sk-caller-own-key"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert guarded.stats()["sessions"] == 0
    async with session(url, headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        assert text_of(await s.call_tool("echo", {"text": "in"})) == "in"
    stats = guarded.stats()
    assert stats["last_authorization"] == f"Bearer {TOKEN}"
    assert stats["authorizations"] == ["Bearer sk-caller-own-key", f"Bearer {TOKEN}"]
    assert stats["calls"] == {"echo": 1}


async def test_the_token_can_be_changed_at_run_time(fresh: Running) -> None:
    url = f"{fresh.url}/mcp"
    assert httpx.put(f"{fresh.url}/mock/mcp/token", json={"token": "later"}).status_code == 200
    try:
        assert httpx.post(url, json=INITIALIZE, headers=ACCEPT).status_code == 401
        async with session(url, headers={"Authorization": "Bearer later"}) as s:
            assert text_of(await s.call_tool("echo", {"text": "ok"})) == "ok"
        assert httpx.put(f"{fresh.url}/mock/mcp/token", json={"token": 7}).status_code == 400
    finally:
        assert httpx.put(f"{fresh.url}/mock/mcp/token", json={"token": None}).status_code == 200
    assert httpx.post(url, json=INITIALIZE, headers=ACCEPT).status_code == 200


async def test_without_its_lifespan_the_mcp_server_answers_503_and_the_rest_works() -> None:
    mock = MockUpstream(mcp_token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        r = await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        chat = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        )
    assert r.status_code == 503
    assert chat.status_code == 200


async def test_the_same_server_over_stdio() -> None:
    """``python -m loadtest.mock_upstream.mcp_server``: what a stdio server entry can run."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "loadtest.mock_upstream.mcp_server"], cwd=ROOT)
    async with Client(params, mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("echo_args", {"via": "stdio"})
    assert "delete_item" in tools
    assert text_of(result) == '{"via":"stdio"}'
