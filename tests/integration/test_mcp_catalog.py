"""The provider stage's MCP side (``workers.provider.McpSide``) on a real
nats-server: servers registered in ``sluice_mcp_servers`` are listed into
``sluice_mcp_catalog`` (the mock upstream's /mcp over Streamable HTTP with
its bearer token, and a stdio server the stage starts itself); a catalog is
written again only when it changed, at once when a server announces a
change, and deleted with its server, whose sessions and child process go
with it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
import uvicorn
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from loadtest.mock_upstream.app import MockUpstream
from schemas import subjects
from schemas.mcp import McpCall, McpServer, ServerCatalog, decode_catalog, kv_encode
from services.bus import process
from services.bus.mcp_buckets import ensure_buckets
from services.cli.nats_server import free_port
from workers.provider import McpSide

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mcp_stdio_server.py"
TOKEN = "mock-mcp-token"
TOKEN_ENV = "SLUICE_TEST_MOCK_MCP_TOKEN"


@pytest.fixture(scope="module")
async def mock() -> AsyncIterator[tuple[str, MockUpstream]]:
    app = MockUpstream(mcp_token=TOKEN)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    await task


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await process.connect("mcp-catalog-test", nats_url)
    await ensure_buckets(client.jetstream())
    yield client
    await client.close()


@pytest.fixture
async def side(nc: Client) -> AsyncIterator[McpSide]:
    os.environ[TOKEN_ENV] = TOKEN  # the provider process's environment holds the credential
    s = McpSide(refresh_s=3600)  # the tests ask for refreshes themselves
    await s.start(nc.jetstream())
    yield s
    await s.stop()
    os.environ.pop(TOKEN_ENV, None)


async def buckets(nc: Client) -> tuple[KeyValue, KeyValue]:
    js = nc.jetstream()
    return await js.key_value(subjects.KV_MCP_SERVERS), await js.key_value(subjects.KV_MCP_CATALOG)


async def stored(catalogs: KeyValue, name: str) -> tuple[ServerCatalog, int] | None:
    try:
        entry = await catalogs.get(name)
    except KeyNotFoundError:
        return None
    if entry.value is None or entry.operation is not None:  # a delete marker
        return None
    return decode_catalog(entry.value), entry.revision


async def eventually(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_the_mock_servers_catalog_is_listed_with_the_gateways_credential(
    nc: Client, side: McpSide, mock: tuple[str, MockUpstream]
) -> None:
    base, app = mock
    servers, catalogs = await buckets(nc)
    url = f"{base}/mcp"
    await servers.put("demo-tools", kv_encode(McpServer(name="demo-tools", urls=[url], auth_env=TOKEN_ENV)))

    async def listed() -> bool:
        got = await stored(catalogs, "demo-tools")
        return got is not None and bool(got[0].healthy)

    await eventually(listed)
    found = await stored(catalogs, "demo-tools")
    assert found is not None
    catalog, revision = found
    tools = {t.name: t for t in catalog.tools}
    assert {"echo", "slow", "fail", "secret", "lookup", "delete_item"} <= set(tools)
    assert tools["lookup"].annotations is not None and tools["lookup"].annotations.readOnlyHint is True
    assert tools["delete_item"].annotations is not None and tools["delete_item"].annotations.destructiveHint is True
    assert msgspec.json.decode(tools["echo"].input_schema)["properties"]["text"]["type"] == "string"
    assert [p.name for p in catalog.prompts] == ["greeting"]
    assert [r.uri for r in catalog.resources] == ["demo://readme"]
    assert catalog.healthy == [url] and catalog.error == "" and catalog.refreshed_at_ms > 0
    assert app.mcp.stats.last_authorization == f"Bearer {TOKEN}"

    # Listed again and again, the same content: never written again.
    for _ in range(3):
        before = side.keeper.listed
        side.keeper.refresh("demo-tools")
        await eventually(lambda before=before: side.keeper.listed > before)
    found = await stored(catalogs, "demo-tools")
    assert found is not None and found[1] == revision

    # Its record changes (a second instance that does not answer): listed at once, and the catalog says so.
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    await servers.put("demo-tools", kv_encode(McpServer(name="demo-tools", urls=[url, dead], auth_env=TOKEN_ENV)))

    async def degraded() -> bool:
        got = await stored(catalogs, "demo-tools")
        return got is not None and dead in got[0].error

    await eventually(degraded)
    found = await stored(catalogs, "demo-tools")
    assert found is not None and found[0].healthy == [url] and found[1] > revision

    # Its calls go through the same sessions (one per instance).
    echo = McpCall(server="demo-tools", name="echo", arguments=b'{"text": "hi"}')
    result = await side.pool.call(side.servers.items["demo-tools"], url, echo)
    assert msgspec.json.decode(result)["content"][0]["text"] == "hi"
    assert [link.opened for link in side.pool.links("demo-tools") if link.instance == url] == [1]

    await servers.delete("demo-tools")

    async def gone() -> bool:
        return await stored(catalogs, "demo-tools") is None

    await eventually(gone)
    await eventually(lambda: not side.pool.links("demo-tools"))


async def test_a_stdio_server_is_started_listed_relisted_when_it_announces_and_stopped_when_deleted(
    nc: Client, side: McpSide
) -> None:
    servers, catalogs = await buckets(nc)
    record = McpServer(name="kid", transport="stdio", command=[sys.executable, str(FIXTURE)], timeout_s=20)
    await servers.put("kid", kv_encode(record))

    async def listed() -> bool:
        got = await stored(catalogs, "kid")
        return got is not None and got[0].healthy == ["stdio"]

    await eventually(listed)
    found = await stored(catalogs, "kid")
    assert found is not None and "grown" not in {t.name for t in found[0].tools}
    pid = int(
        msgspec.json.decode(await side.pool.call(record, "stdio", McpCall(server="kid", name="pid")))["content"][0][
            "text"
        ]
    )

    # The server adds a tool and says so: the catalog has it long before the next health check.
    await side.pool.call(record, "stdio", McpCall(server="kid", name="grow"))

    async def grown() -> bool:
        got = await stored(catalogs, "kid")
        return got is not None and "grown" in {t.name for t in got[0].tools}

    await eventually(grown, timeout=5)

    await servers.delete("kid")

    async def gone() -> bool:
        return await stored(catalogs, "kid") is None

    await eventually(gone)

    def stopped() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await eventually(stopped, timeout=10)
    assert not side.pool.links("kid")
