"""The provider's MCP adapter against real MCP servers built with the SDK:
one served over Streamable HTTP in this process (uvicorn on loopback), one
run over stdio as a child (tests/fixtures/mcp_stdio_server.py). Sessions,
credentials, results, errors, timeouts and cancels, the supervision of a
stdio server, listings into a catalog, the catalog keeper, and an MCP
request's whole call (``RequestCall``) through to its Final."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

from schemas.envelope import Deployment, Envelope, Privacy
from schemas.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamAuthFailed,
    UpstreamInvalidRequest,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from schemas.mcp import McpCall, McpServer, ServerCatalog, ToolRule
from schemas.replies import Chunk, Failure, Final
from services.cli.nats_server import free_port
from services.providers.attempts import Try, WalkFailed
from services.providers.call import CallFailed, CallProgress
from services.providers.http import UpstreamHTTP
from services.providers.logged_answer import logged_answer
from services.providers.mcp import CatalogKeeper, McpCaller, McpPool
from services.providers.mcp import link as link_mod
from services.providers.mcp.link import Link
from services.providers.request_call import RequestCall
from tests.fixtures.mcp_stdio_server import build

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mcp_stdio_server.py"
TOKEN_ENV = "SLUICE_TEST_MCP_TOKEN"


class HttpServer:
    """The fixture server over Streamable HTTP on a loopback port, which
    notes each request's Authorization header and, given a token, refuses
    any other (401)."""

    def __init__(self, port: int | None = None, token: str | None = None) -> None:
        self.port = port or free_port()
        self.token = token
        self.counts: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self.initializes = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> HttpServer:
        app = build(self.counts).streamable_http_app()

        async def guarded(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
            if scope["type"] == "http":
                seen = dict(scope["headers"]).get(b"authorization", b"").decode()
                self.authorizations.append(seen)
                if self.token is not None and seen != f"Bearer {self.token}":
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b"no"})
                    return
            await app(scope, receive, send)

        config = uvicorn.Config(guarded, host="127.0.0.1", port=self.port, log_level="warning", ws="none")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


@pytest.fixture
async def http() -> AsyncIterator[HttpServer]:
    server = await HttpServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[McpPool]:
    p = McpPool()
    yield p
    await p.aclose()


def http_server(url: str, **fields: object) -> McpServer:
    fields.setdefault("urls", [url])
    return McpServer(name="fx", transport="http", timeout_s=10, **fields)  # type: ignore[arg-type]


def no_http() -> UpstreamHTTP:
    """The model client an MCP call never uses."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"an MCP call made an HTTP model call to {request.url}")

    return UpstreamHTTP(httpx.MockTransport(refuse))


def stdio_server(**fields: object) -> McpServer:
    fields.setdefault("command", [sys.executable, str(FIXTURE)])
    return McpServer(name="kid", transport="stdio", timeout_s=20, **fields)  # type: ignore[arg-type]


def tool(name: str, **arguments: object) -> McpCall:
    return McpCall(server="fx", name=name, arguments=msgspec.json.encode(arguments))


def text_of(result: bytes) -> str:
    return json.loads(result)["content"][0]["text"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- calls over Streamable HTTP ---------------------------------------------------------------


async def test_one_session_serves_every_call_and_results_come_back_as_mcp_json(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    results = await asyncio.gather(*(pool.call(server, http.url, tool("echo", text=f"hi {i}")) for i in range(5)))
    assert sorted(text_of(r) for r in results) == [f"hi {i}" for i in range(5)]
    doc = json.loads(results[0])
    assert doc["isError"] is False and doc["structuredContent"] == {"result": doc["content"][0]["text"]}
    assert http.counts["echo"] == 5
    assert pool.link(server, http.url).opened == 1  # one handshake for all five


async def test_a_prompt_and_a_resource_are_read_as_the_server_sent_them(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    prompt = McpCall(server="fx", method="prompts/get", name="greeting", arguments=b'{"name": "Ada"}')
    got = json.loads(await pool.call(server, http.url, prompt))
    assert got["messages"][0]["content"]["text"] == "Hello, Ada!"
    resource = McpCall(server="fx", method="resources/read", name="demo://readme")
    got = json.loads(await pool.call(server, http.url, resource))
    assert got["contents"][0]["text"] == "fixture readme"


async def test_the_credential_is_injected_from_the_environment_as_a_bearer_token(
    monkeypatch: pytest.MonkeyPatch, pool: McpPool
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    up = await HttpServer(token="s3cret").start()
    try:
        server = http_server(up.url, auth_env=TOKEN_ENV)
        assert text_of(await pool.call(server, up.url, tool("echo", text="ok"))) == "ok"
        assert set(up.authorizations) == {"Bearer s3cret"}
        # Another header is sent the bare value.
        other = http_server(up.url, auth_env=TOKEN_ENV, auth_header="X-Api-Key")
        assert link_mod.credential_headers(other) == {"X-Api-Key": "s3cret"}
        # A server that refuses the credential is the operator's problem, not the caller's.
        monkeypatch.setenv(TOKEN_ENV, "wrong")
        with pytest.raises(UpstreamAuthFailed, match="401"):
            await pool.call(server, up.url, tool("echo", text="no"))
    finally:
        await up.stop()


async def test_a_tool_that_fails_is_an_answer_and_a_refused_call_the_callers_error(
    http: HttpServer, pool: McpPool
) -> None:
    server = http_server(http.url, tools={"fail": ToolRule(price_pico_usd=7)})
    caller = McpCaller(pool, {"fx": server})
    dep = Deployment(name="mcp:fx:0", provider="mcp", base_url=http.url, upstream_model="fail")
    outcome = await caller.call(dep, tool("fail"), CallProgress())
    assert outcome.finish_reason == "is_error" and outcome.cost.call == 7
    assert "it failed" in text_of(outcome.tool_result)
    with pytest.raises(CallFailed) as refused:
        await caller.call(dep, McpCall(server="fx", method="resources/read", name="demo://nothing"), CallProgress())
    assert isinstance(refused.value.error, UpstreamInvalidRequest) and refused.value.error.status == 400
    assert "demo://nothing" in refused.value.error.message
    with pytest.raises(InvalidRequest, match="JSON object"):
        await pool.call(server, http.url, McpCall(server="fx", name="echo", arguments=b"[1, 2]"))


async def test_a_timeout_is_a_504_and_the_server_is_told_to_stop(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    with pytest.raises(UpstreamTimeout) as timed:
        await pool.call(server, http.url, tool("slow", seconds=5), timeout_s=0.3)
    assert timed.value.status == 504
    deadline = time.monotonic() + 5
    while http.counts["slow_cancelled"] < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert http.counts["slow_cancelled"] == 1  # notifications/cancelled reached it
    # The session survives a timed-out call.
    assert text_of(await pool.call(server, http.url, tool("echo", text="still"))) == "still"
    assert pool.link(server, http.url).opened == 1


async def test_a_cancelled_call_cancels_the_upstream_request(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    task = asyncio.create_task(pool.call(server, http.url, tool("slow", seconds=5)))
    while http.counts["slow"] < 1:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while http.counts["slow_cancelled"] < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert http.counts["slow_cancelled"] == 1


async def test_a_restarted_server_gets_a_new_session_and_the_call_goes_through(pool: McpPool) -> None:
    first = await HttpServer().start()
    server = http_server(first.url)
    assert text_of(await pool.call(server, first.url, tool("echo", text="one"))) == "one"
    await first.stop()
    second = await HttpServer(port=first.port).start()  # knows nothing of the old session
    try:
        assert text_of(await pool.call(server, first.url, tool("echo", text="two"))) == "two"
        assert second.counts["echo"] == 1
        assert pool.link(server, first.url).opened == 2
    finally:
        await second.stop()


async def test_an_unreachable_server_is_a_502_and_is_not_hammered(
    pool: McpPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[str] = []
    connect = Link._connect

    async def counted(link: Link, ready: asyncio.Future[Any]) -> Any:
        tries.append(link.instance)
        return await connect(link, ready)

    monkeypatch.setattr(Link, "_connect", counted)
    url = f"http://127.0.0.1:{free_port()}/mcp"
    server = http_server(url)
    with pytest.raises(UpstreamUnreachable) as first:
        await pool.call(server, url, tool("echo", text="x"))
    assert first.value.status == 502 and "unreachable" in first.value.message
    with pytest.raises(UpstreamUnreachable) as again:  # within the backoff: the last reason, no new try
        await pool.call(server, url, tool("echo", text="x"))
    assert tries == [url] and again.value.message == first.value.message
    with pytest.raises(UpstreamUnreachable, match="not an instance"):
        await pool.call(server, "http://elsewhere.test/mcp", tool("echo", text="x"))


# --- stdio ------------------------------------------------------------------------------------


async def test_a_stdio_server_is_started_with_its_credential_and_restarted_when_it_exits(
    monkeypatch: pytest.MonkeyPatch, pool: McpPool
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "kid-secret")
    server = stdio_server(auth_env=TOKEN_ENV, env={"PLAIN": "yes"})
    call = McpCall(server="kid", name="env", arguments=msgspec.json.encode({"name": TOKEN_ENV}))
    assert text_of(await pool.call(server, "stdio", call)) == "kid-secret"
    plain = McpCall(server="kid", name="env", arguments=b'{"name": "PLAIN"}')
    assert text_of(await pool.call(server, "stdio", plain)) == "yes"
    first_pid = int(text_of(await pool.call(server, "stdio", McpCall(server="kid", name="pid"))))
    with pytest.raises(GatewayError):  # the process exits under the call
        await pool.call(server, "stdio", McpCall(server="kid", name="crash"))
    link = pool.link(server, "stdio")
    deadline = time.monotonic() + 15
    while link.opened < 2 and time.monotonic() < deadline:  # restarted by itself, nobody asked
        await asyncio.sleep(0.05)
    assert link.opened == 2
    second_pid = int(text_of(await pool.call(server, "stdio", McpCall(server="kid", name="pid"))))
    assert second_pid != first_pid and not alive(first_pid)
    await link.close()
    assert not alive(second_pid)  # stopped with the link


async def test_a_stdio_server_that_will_not_start_backs_off(pool: McpPool) -> None:
    server = stdio_server(env={"FIXTURE_EXIT_AT_START": "1"})
    with pytest.raises(UpstreamUnreachable):
        await pool.call(server, "stdio", McpCall(server="kid", name="pid"))
    link = pool.link(server, "stdio")
    await asyncio.sleep(1.2)
    # Tries at 0, then after 0.5 s, 1 s, ...: a handful, not hundreds.
    assert 1 <= link._failures <= 3 and link.opened == 0
    missing = stdio_server(command=["/nonexistent/mcp-server"])
    with pytest.raises(UpstreamUnreachable, match="unreachable"):
        await pool.call(missing, "stdio", McpCall(server="kid", name="pid"))


# --- listing and the catalog keeper ------------------------------------------------------------


async def test_a_listing_maps_tools_prompts_resources_and_says_which_instances_answered(
    http: HttpServer, pool: McpPool
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    server = http_server(http.url, urls=[dead, http.url])
    found = await pool.listing(server, now_ms=123)
    assert found.server == "fx" and found.refreshed_at_ms == 123
    assert found.healthy == [http.url] and dead in found.error
    tools = {t.name: t for t in found.tools}
    assert {"echo", "slow", "fail", "grow"} <= set(tools)
    assert json.loads(tools["echo"].input_schema)["required"] == ["text"]
    assert tools["echo"].annotations is not None and tools["echo"].annotations.readOnlyHint is True
    assert tools["slow"].annotations is not None and tools["slow"].annotations.destructiveHint is True
    assert tools["echo"].description == "Returns its text."
    assert [(p.name, [(a.name, a.required) for a in p.arguments]) for p in found.prompts] == [
        ("greeting", [("name", True)])
    ]
    assert [(r.uri, r.mime_type) for r in found.resources] == [("demo://readme", "text/plain")]


class Store:
    """The catalog bucket, as the keeper sees it."""

    def __init__(self) -> None:
        self.items: dict[str, ServerCatalog] = {}
        self.writes: list[ServerCatalog] = []
        self.deletes: list[str] = []

    async def write(self, catalog: ServerCatalog) -> None:
        self.items[catalog.server] = catalog
        self.writes.append(catalog)

    async def delete(self, name: str) -> None:
        self.items.pop(name, None)
        self.deletes.append(name)


async def wait_for(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_keeper_writes_a_catalog_only_when_it_changed(http: HttpServer, pool: McpPool) -> None:
    servers = {"fx": http_server(http.url)}
    store = Store()
    keeper = CatalogKeeper(pool, servers, store.items, store.write, store.delete, refresh_s=0.1)
    keeper.start()
    try:
        await wait_for(lambda: keeper.listed >= 4)  # listed at start and at three ticks since
        assert len(store.writes) == 1 and store.writes[0].healthy == [http.url]
        # The server announces a tool: listed again at once, and written.
        keeper.refresh_s = 3600
        await pool.call(servers["fx"], http.url, tool("grow"))
        await wait_for(lambda: any(t.name == "grown" for t in store.items["fx"].tools), timeout=3)
        assert len(store.writes) == 2
        # Down: the tools last listed stay, no instance is healthy, and why.
        await http.stop()
        keeper.refresh("fx")
        await wait_for(lambda: not store.items["fx"].healthy)
        assert any(t.name == "grown" for t in store.items["fx"].tools) and store.items["fx"].error
        # Deleted: its catalog goes, its sessions close.
        del servers["fx"]
        keeper.server_changed("fx", None, None)
        await wait_for(lambda: store.deletes == ["fx"])
        assert pool.links("fx") == []
    finally:
        await keeper.stop()
        http.server.should_exit = True


# --- an MCP request's whole call -------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.tries: list[tuple[str, int, bool]] = []

    async def send(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    async def tried(self, t: Try, says_health: bool) -> None:
        self.tries.append((t.deployment.name, t.status, says_health))


def mcp_envelope(call: McpCall, *urls: str, **fields: object) -> Envelope:
    now = time.time_ns()
    return Envelope(
        reply="_INBOX.test",
        tool=call,
        api="mcp",
        id="req-mcp",
        received_at_ns=now,
        deadline_ns=now + 30_000_000_000,
        candidates=[
            Deployment(name=f"mcp:fx:{i}", provider="mcp", base_url=u, upstream_model=call.name, timeout_s=10)
            for i, u in enumerate(urls)
        ],
        **fields,  # type: ignore[arg-type]
    )


async def run_call(env: Envelope, caller: McpCaller) -> tuple[RequestCall, Final | Failure, Recorder]:
    rec = Recorder()
    call = RequestCall(env, no_http(), rec.send, rec.tried, mcp=caller)
    try:
        outcome = await call.run()
    except (WalkFailed, TimeoutError, asyncio.CancelledError) as exc:
        return call, await call.failure(exc), rec
    return call, await call.final(outcome), rec


async def test_an_mcp_request_ends_in_a_final_with_the_result_and_the_tools_price(
    http: HttpServer, pool: McpPool
) -> None:
    server = http_server(http.url, tools={"echo": ToolRule(price_pico_usd=1_000_000)})
    caller = McpCaller(pool, {"fx": server})
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    server = msgspec.structs.replace(server, urls=[dead, http.url])
    caller.servers = {"fx": server}
    _, final, rec = await run_call(mcp_envelope(tool("echo", text="through"), dead, http.url), caller)
    assert isinstance(final, Final)
    assert text_of(final.tool_result) == "through" and final.finish_reason == "completed"
    assert final.cost.call == 1_000_000 and final.cost_pico_usd == 1_000_000
    assert final.usage.total_tokens == 0 and final.usage.source == "reported"
    assert (final.deployment, final.provider, final.model, final.attempts) == ("mcp:fx:1", "mcp", "fx__echo", 2)
    assert rec.tries == [("mcp:fx:0", 502, True), ("mcp:fx:1", 200, True)]
    assert rec.chunks == []


async def test_an_mcp_request_that_reaches_no_server_costs_nothing(pool: McpPool) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    server = http_server(dead, tools={"*": ToolRule(price_pico_usd=5)})
    _, failure, _ = await run_call(mcp_envelope(tool("echo", text="x"), dead), McpCaller(pool, {"fx": server}))
    assert isinstance(failure, Failure) and failure.status == 502 and failure.type == "upstream_error"
    assert failure.cost is None and failure.usage is None
    # An MCP request in a process without the adapter is the gateway's fault, said plainly.
    env = mcp_envelope(tool("echo", text="x"), dead)
    rec = Recorder()
    call = RequestCall(env, no_http(), rec.send, rec.tried)
    with pytest.raises(WalkFailed, match="no MCP calls"):
        await call.run()


async def test_masked_values_come_back_restored_and_the_output_checks_apply(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    caller = McpCaller(pool, {"fx": server})
    privacy = Privacy(vault={"[EMAIL_1]": "ada@example.com"}, output={"secret": "redact"})
    leaked = "mail [EMAIL_1] the key AKIAIOSFODNN7EXAMPLE"
    call, final, _ = await run_call(mcp_envelope(tool("echo", text=leaked), http.url, privacy=privacy), caller)
    assert isinstance(final, Final)
    text = text_of(final.tool_result)
    assert "ada@example.com" in text and "[EMAIL_1]" not in text
    assert "AKIAIOSFODNN7EXAMPLE" not in text
    found = call.detections()
    assert found and {d.detector for d in found} == {"secret"} and all(d.action == "redact" for d in found)
    # The log keeps what the upstream wrote, less what the checks took out: no restored value, no key.
    logged = logged_answer(call, final)
    assert "[EMAIL_1]" in logged and "ada@example.com" not in logged and "AKIAIOSFODNN7EXAMPLE" not in logged


async def test_a_cancelled_request_cancels_its_tool_call(http: HttpServer, pool: McpPool) -> None:
    server = http_server(http.url)
    rec = Recorder()
    env = mcp_envelope(tool("slow", seconds=5), http.url)
    call = RequestCall(env, no_http(), rec.send, rec.tried, mcp=McpCaller(pool, {"fx": server}))
    task = asyncio.create_task(call.run())
    await wait_for(lambda: http.counts["slow"] == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    failure = await call.failure(asyncio.CancelledError(), client_gone=True)
    assert failure.status == 499 and failure.cost is None
    await wait_for(lambda: http.counts["slow_cancelled"] == 1, timeout=5)
