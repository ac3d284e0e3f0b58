"""The MCP gateway end to end, driven by clients no one here wrote: the
official ``mcp`` SDK's client (Streamable HTTP + ClientSession) and the MCP
Inspector's CLI against ``/mcp``, with the mock's MCP server and npm's
reference server (``@modelcontextprotocol/server-everything``, run over stdio
by the gateway) as upstreams, on two pipeline replicas.

Every claim is checked against what the upstream itself counted (the mock's
``/mock/mcp/stats``) and what ClickHouse recorded (``tool_calls``): a refused
call never reaches the upstream, an admitted one reaches it once, and every
call is one row. The replica killed mid-call comes last: the module's stack
is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import nats.errors
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult

from schemas import subjects
from schemas.mcp import decode_server
from services import quota
from services.keys import hash_key
from tests import agent_clients
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

TOOLS_KEY = "sk-test-mcp-e2e-tools-0123456789"
NARROW_KEY = "sk-test-mcp-e2e-narrow-0123456789"
GATED_KEY = "sk-test-mcp-e2e-gated-0123456789"
BUDGET_KEY = "sk-test-mcp-e2e-budget-0123456789"
RPM_KEY = "sk-test-mcp-e2e-rpm-0123456789"
LEAVER_KEY = "sk-test-mcp-e2e-leaver-0123456789"
MASKED_KEY = "sk-test-mcp-e2e-masked-0123456789"
KILL_KEY = "sk-test-mcp-e2e-kill-0123456789"
TOOL_RPM = 8
OVER_RPM = 5
PRICE = 1_000_000  # pico-USD a call of demo-tools__echo (the base test config's price)
BUDGET_CALLS = 3  # the budget key's $0.000003 at PRICE
KILLED_CALLS = 12  # spread over two replicas: all on one is 2 in 2**12
SLOW_S = 4


def _key(id_: str, secret: str, tenant: str, extra: str = "") -> str:
    return f'\n[[keys]]\nid = "{id_}"\ntenant = "{tenant}"\nsha256 = "{hash_key(secret)}"\n{extra}'


# {mock} is the mock's port (formatted by Stack); no other braces here.
EXTRA = (
    """
[[tenants]]
id = "mcp-e2e"
mcp_tools = ["demo-tools__*", "everything__*", "metered-tools__*", "solo-tools__*", "sturdy-tools__*"]

[[tenants]]
id = "mcp-gated"
mcp_tools = ["gated-tools__*"]

[[tenants]]
id = "mcp-masked"
mcp_tools = ["demo-tools__*"]
[tenants.privacy.detectors]
email = "mask"
[tenants.privacy.output]
secret = "redact"
"""
    + _key("mcp-tools", TOOLS_KEY, "mcp-e2e")
    + _key("mcp-narrow", NARROW_KEY, "mcp-e2e", 'mcp_tools = ["demo-tools__lookup"]\n')
    + _key("mcp-gated", GATED_KEY, "mcp-gated")
    + _key("mcp-budget", BUDGET_KEY, "mcp-e2e", '[keys.budget]\nusd = "0.000003"\nperiod = "total"\n')
    + _key("mcp-rpm", RPM_KEY, "mcp-e2e")
    + _key("mcp-leaver", LEAVER_KEY, "mcp-e2e")
    + _key("mcp-masked", MASKED_KEY, "mcp-masked")
    + _key("mcp-kill", KILL_KEY, "mcp-e2e")
    + f"""
# The reference server, a child of each provider stage over stdio.
[[mcp_servers]]
name = "everything"
transport = "stdio"
command = {json.dumps(agent_clients.mcp_everything_command())}
timeout_s = 30

# The mock's tools again under other names ("/@<name>/mcp": counted apart).
[[mcp_servers]]
name = "gated-tools"
urls = ["http://127.0.0.1:{{mock}}/@gated/mcp"]
requires_approval = true

[[mcp_servers]]
name = "metered-tools"
urls = ["http://127.0.0.1:{{mock}}/@metered/mcp"]
[mcp_servers.tools.echo]
rpm = {TOOL_RPM}

[[mcp_servers]]
name = "solo-tools"
urls = ["http://127.0.0.1:{{mock}}/@solo/mcp"]
[mcp_servers.tools.slow]
max_parallel = 1

[[mcp_servers]]
name = "sturdy-tools"
urls = ["http://127.0.0.1:{{mock}}/@sturdy/mcp"]
"""
)
SERVERS = ["demo-tools", "everything", "metered-tools", "solo-tools", "sturdy-tools"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("mcp-e2e"),
        timeout_s=20,
        extra_config=EXTRA,
        max_body_bytes=4 << 20,
        replicas={"policy": 2},
    )
    s.start()
    try:
        wait_listed(s, TOOLS_KEY, [s for s in SERVERS if s != "everything" or agent_clients.mcp_everything_installed()])
        wait_listed(s, GATED_KEY, ["gated-tools"])
        yield s
    finally:
        s.stop()


# -- helpers


def mcp_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.layout.http_port}/mcp"


def post(stack: Stack, body: Any, key: str | None = DEMO_KEY, **headers: str) -> httpx.Response:
    sent = {"accept": "application/json, text/event-stream", "content-type": "application/json", **headers}
    if key:
        sent["authorization"] = f"Bearer {key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(mcp_url(stack), content=content, headers=sent, timeout=30)


def rpc(response: httpx.Response) -> dict:
    """The JSON-RPC message of an answer: a JSON body, or the one message of an SSE stream."""
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    [data] = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return json.loads(data)


def call_body(name: str, arguments: Any, rpc_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def listed(stack: Stack, key: str) -> list[str]:
    answer = post(stack, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, key)
    if answer.status_code != 200:
        return []
    return [t["name"] for t in rpc(answer).get("result", {}).get("tools", [])]


def wait_listed(stack: Stack, key: str, servers: list[str], timeout: float = 60) -> None:
    """Until the provider stages have listed every server and the ingress mirrors their catalogs."""
    deadline = time.monotonic() + timeout
    while True:
        names = listed(stack, key)
        missing = [s for s in servers if not any(n.startswith(s + "__") for n in names)]
        if not missing:
            return
        assert time.monotonic() < deadline, f"no tools of {missing} listed after {timeout}s"
        time.sleep(0.3)


def mcp_stats(stack: Stack) -> dict:
    return httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()


def calls_of(stack: Stack, tool: str) -> int:
    """tools/call of ``tool`` the mock served, on every path."""
    return mcp_stats(stack)["calls"].get(tool, 0)


def upstream_calls(stack: Stack, name: str) -> int:
    """tools/call the mock served under "/@<name>/mcp"."""
    return mcp_stats(stack)["by_upstream"].get(name, 0)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def tool_rows(stack: Stack, key_id: str, expect: int, timeout: float = 30, **filters: str) -> list[dict]:
    """The key's ``tool_calls`` rows once ``expect`` are there, and still
    ``expect`` a moment later (a second row of a call would have come by then)."""
    deadline = time.monotonic() + timeout

    def rows() -> list[dict]:
        try:
            result = stack.query("tool_calls", key_id=key_id, limit=1000, **filters)
        except nats.errors.NoRespondersError:  # the sink is (re)starting
            return []
        assert result["error"] is None, result["error"]
        return [dict(zip(result["columns"], r, strict=True)) for r in result["rows"]]

    while len(found := rows()) < expect:
        assert time.monotonic() < deadline, f"{len(found)} tool_calls rows of {key_id} after {timeout}s, not {expect}"
        time.sleep(0.2)
    time.sleep(1.5)
    found = rows()
    assert len(found) == expect, found
    return found


def no_duplicate_rows(stack: Stack, since_ns: int) -> None:
    """No request has two rows in the raw table (no FINAL), none conflicting."""
    assert stack.query("duplicate_rows", since_ns=since_ns)["rows"] == [[0, 0]]


@contextlib.asynccontextmanager
async def session(stack: Stack, key: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=60) as http,
        streamable_http_client(mcp_url(stack), http_client=http) as (read, write),
        ClientSession(read, write) as s,
    ):
        await s.initialize()
        yield s


def with_session(stack: Stack, key: str, run: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with session(stack, key) as s:
            return await run(s)

    return asyncio.run(go())


async def call_or_error(s: ClientSession, name: str, arguments: dict) -> CallToolResult | MCPError:
    try:
        return await s.call_tool(name, arguments)
    except MCPError as exc:
        return exc


def text_of(result: CallToolResult) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def server_created_ms(stack: Stack, name: str) -> int:
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_MCP_SERVERS)
        return decode_server((await kv.get(name)).value).created_at_ms
    finally:
        await nc.close()


# -- the official client


@pytest.mark.timeout(90)
def test_the_official_client_lists_and_calls_echo_once_and_it_is_one_priced_row(stack: Stack) -> None:
    before = calls_of(stack, "echo")

    async def run(s: ClientSession) -> Any:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        return tools, await s.call_tool("demo-tools__echo", {"text": "hello through the gateway"})

    tools, echoed = with_session(stack, DEMO_KEY, run)
    assert {"demo-tools__echo", "demo-tools__slow", "demo-tools__lookup"} <= set(tools)
    # The demo tenant's allow-list is demo-tools only: the other servers are not even named.
    assert all(name.startswith("demo-tools__") for name in tools), sorted(tools)
    assert tools["demo-tools__echo"].input_schema["required"] == ["text"]
    assert text_of(echoed) == "hello through the gateway" and not echoed.is_error
    wait_for("the mock never saw the echo", lambda: calls_of(stack, "echo") >= before + 1)
    [row] = tool_rows(stack, "demo", 1, tool="demo-tools__echo", status="200")
    assert (row["server"], row["tool"], row["method"]) == ("demo-tools", "echo", "tools/call")
    assert row["cost_pico_usd"] == str(PRICE) and not row["tool_error"]
    assert calls_of(stack, "echo") == before + 1


@pytest.mark.timeout(60)
def test_a_key_whose_mcp_tools_exclude_a_tool_gets_mcps_error_and_no_upstream_call(stack: Stack) -> None:
    before = mcp_stats(stack)["calls"]

    async def run(s: ClientSession) -> Any:
        names = [t.name for t in (await s.list_tools()).tools]
        return names, await call_or_error(s, "demo-tools__echo", {"text": "not mine"})

    names, refused = with_session(stack, NARROW_KEY, run)
    # Its tenant allows five servers; the key narrows that to one tool.
    assert names == ["demo-tools__lookup"]
    assert isinstance(refused, MCPError), refused
    assert refused.error.data["status"] == 403 and refused.error.data["code"] == "tool_not_allowed"
    assert "demo-tools__echo" in refused.message
    time.sleep(0.5)
    assert mcp_stats(stack)["calls"] == before
    # Refused at the door, it is still the key's row (its tenant's and key's error rates count it).
    [row] = tool_rows(stack, "mcp-narrow", 1)
    assert (row["tenant_id"], row["tool"], row["status"]) == ("mcp-e2e", "echo", 403), row


@pytest.mark.timeout(90)
def test_a_server_that_needs_approval_refuses_until_the_subscription_is_approved(stack: Stack) -> None:
    async def call(s: ClientSession) -> CallToolResult | MCPError:
        return await call_or_error(s, "gated-tools__echo", {"text": "let me in"})

    refused = with_session(stack, GATED_KEY, call)
    assert isinstance(refused, MCPError) and refused.error.data["code"] == "subscription_required", refused
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(
        f"{stack.admin_url}/subscriptions", json={"tenant": "mcp-gated", "model": "mcp:gated-tools"}, headers=admin
    )
    assert created.status_code in (200, 201), created.text
    deadline = time.monotonic() + 15
    pending = with_session(stack, GATED_KEY, call)
    while isinstance(pending, MCPError) and pending.error.data["code"] == "subscription_required":
        assert time.monotonic() < deadline, pending.message  # policy's mirror has not the subscription yet
        pending = with_session(stack, GATED_KEY, call)
    assert isinstance(pending, MCPError) and pending.error.data["code"] == "subscription_pending", pending
    assert upstream_calls(stack, "gated") == 0
    approved = httpx.post(f"{stack.admin_url}/subscriptions/{created.json()['id']}/approve", headers=admin)
    assert approved.status_code == 200, approved.text
    while isinstance(answer := with_session(stack, GATED_KEY, call), MCPError):
        assert answer.error.data["code"] == "subscription_pending", answer
        assert time.monotonic() < deadline + 15, answer.message
    assert text_of(answer) == "let me in"
    assert upstream_calls(stack, "gated") == 1


# -- a real MCP server no one here wrote


@pytest.mark.timeout(90)
def test_the_reference_server_run_over_stdio_by_the_gateway_is_listed_and_called(stack: Stack) -> None:
    if not agent_clients.mcp_everything_installed():
        pytest.fail(
            f"@modelcontextprotocol/server-everything {agent_clients.MCP_EVERYTHING_VERSION} is not in "
            f"{agent_clients.CLIENTS_DIR}: run `make agent-clients` (`make test` does)"
        )

    async def run(s: ClientSession) -> Any:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        echoed = await s.call_tool("everything__echo", {"message": "from a stranger's server"})
        summed = await s.call_tool("everything__get-sum", {"a": 2, "b": 40})
        return tools, echoed, summed

    tools, echoed, summed = with_session(stack, TOOLS_KEY, run)
    # Its tools, under its name, with the schemas and hints it gave.
    assert {"everything__echo", "everything__get-sum"} <= set(tools)
    assert tools["everything__echo"].input_schema["properties"]["message"]["type"] == "string"
    assert tools["everything__echo"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert text_of(echoed) == "Echo: from a stranger's server" and not echoed.is_error
    assert "42" in text_of(summed)
    rows = tool_rows(stack, "mcp-tools", 2, server="everything")
    assert {(r["tool"], r["status"]) for r in rows} == {("echo", 200), ("get-sum", 200)}


@pytest.mark.timeout(60)
def test_the_inspector_cli_lists_the_gateways_tools(stack: Stack, tmp_path: Path) -> None:
    if not agent_clients.mcp_inspector_installed():
        pytest.fail(
            f"@modelcontextprotocol/inspector {agent_clients.MCP_INSPECTOR_VERSION} is not in "
            f"{agent_clients.CLIENTS_DIR}: run `make agent-clients` (`make test` does)"
        )
    done = agent_clients.mcp_inspector_cli(mcp_url(stack), TOOLS_KEY, tmp_path, timeout_s=45)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    names = [t["name"] for t in json.loads(done.stdout)["tools"]]
    assert {"demo-tools__echo", "solo-tools__slow", "everything__echo"} <= set(names)
    refused = agent_clients.mcp_inspector_cli(mcp_url(stack), "sk-test-not-a-key-0123456789", tmp_path, 45)
    assert refused.returncode != 0 and "demo-tools__echo" not in refused.stdout


# -- limits, budgets


@pytest.mark.timeout(90)
def test_a_tools_rpm_is_exact_across_two_pipeline_replicas(stack: Stack) -> None:
    # The burst must fall in one minute window of the tool's counter.
    anchor = asyncio.run(server_created_ms(stack, "metered-tools"))
    _, left_ms = quota.minute_window(anchor, int(time.time() * 1000))
    if left_ms < 20_000:
        time.sleep(left_ms / 1000 + 0.5)
    before = upstream_calls(stack, "metered")

    async def run(s: ClientSession) -> list[CallToolResult | MCPError]:
        burst = [call_or_error(s, "metered-tools__echo", {"text": f"call {i}"}) for i in range(TOOL_RPM + OVER_RPM)]
        return await asyncio.gather(*burst)

    answers = with_session(stack, RPM_KEY, run)
    ok = [a for a in answers if isinstance(a, CallToolResult)]
    refused = [a for a in answers if isinstance(a, MCPError)]
    assert len(ok) == TOOL_RPM, [r.message for r in refused]
    assert all(r.error.data["status"] == 429 and r.error.data["type"] == "rate_limit_error" for r in refused)
    assert all(r.error.data.get("retry_after_s", 0) >= 1 for r in refused), [r.error.data for r in refused]
    assert len({text_of(a) for a in ok}) == TOOL_RPM  # each admitted call got its own answer
    wait_for("the admitted calls never reached the mock", lambda: upstream_calls(stack, "metered") >= before + TOOL_RPM)
    time.sleep(0.5)
    assert upstream_calls(stack, "metered") == before + TOOL_RPM
    rows = tool_rows(stack, "mcp-rpm", TOOL_RPM + OVER_RPM)
    assert sorted(r["status"] for r in rows) == [200] * TOOL_RPM + [429] * OVER_RPM


@pytest.mark.timeout(60)
def test_a_price_per_call_runs_a_keys_budget_out(stack: Stack) -> None:
    before = calls_of(stack, "echo")

    async def run(s: ClientSession) -> list[CallToolResult | MCPError]:
        return [await call_or_error(s, "demo-tools__echo", {"text": f"paid {i}"}) for i in range(BUDGET_CALLS + 2)]

    answers = with_session(stack, BUDGET_KEY, run)
    assert [isinstance(a, CallToolResult) for a in answers] == [True] * BUDGET_CALLS + [False] * 2, answers
    for refused in answers[BUDGET_CALLS:]:
        assert isinstance(refused, MCPError)
        assert refused.error.data["status"] == 429 and refused.error.data["code"] == "insufficient_quota"
        assert "budget" in refused.message.lower(), refused.message
    wait_for("the paid calls never reached the mock", lambda: calls_of(stack, "echo") >= before + BUDGET_CALLS)
    time.sleep(0.5)
    assert calls_of(stack, "echo") == before + BUDGET_CALLS
    rows = tool_rows(stack, "mcp-budget", BUDGET_CALLS + 2)
    charged = sorted((r["status"], r["cost_pico_usd"]) for r in rows)
    assert charged == [(200, str(PRICE))] * BUDGET_CALLS + [(429, "0")] * 2


# -- a caller that leaves


@pytest.mark.timeout(90)
def test_a_client_that_leaves_mid_call_is_one_row_and_frees_the_parallel_slot(stack: Stack) -> None:
    since = time.time_ns()
    before = upstream_calls(stack, "solo")
    made = 0

    async def leave_mid_call() -> dict:
        async with session(stack, LEAVER_KEY) as s:
            slow = asyncio.create_task(s.call_tool("solo-tools__slow", {"seconds": 10}))
            while upstream_calls(stack, "solo") == before:
                assert not slow.done(), slow
                await asyncio.sleep(0.05)
            # The one slot is held: another call now is refused, and never reaches the upstream.
            second = await asyncio.to_thread(post, stack, call_body("solo-tools__slow", {"seconds": 0}), LEAVER_KEY)
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
        # The session and its HTTP connections are closed: the caller is gone.
        return rpc(second)

    second = asyncio.run(leave_mid_call())
    made += 2
    assert second["error"]["data"]["status"] == 429, second
    assert "in flight" in second["error"]["message"], second
    left_at = time.monotonic()
    # The slot comes back long before the 10 s call would have ended: the gateway cancelled it.
    while True:
        answer = rpc(post(stack, call_body("solo-tools__slow", {"seconds": 0}), LEAVER_KEY))
        made += 1
        if "result" in answer:
            break
        assert answer["error"]["data"]["status"] == 429, answer
        assert time.monotonic() - left_at < 5, "the parallel slot of the call whose client left was kept"
        time.sleep(0.25)
    assert answer["result"]["content"][0]["text"] == "slept 0"
    # Two calls reached the upstream: the one left behind (once) and the last.
    assert upstream_calls(stack, "solo") == before + 2
    rows = tool_rows(stack, "mcp-leaver", made)
    statuses = sorted(r["status"] for r in rows)
    assert statuses.count(200) == 1 and statuses.count(429) == made - 2, statuses
    [left] = [r for r in rows if r["status"] not in (200, 429)]
    assert (left["status"], left["error_code"]) == (499, "client_closed"), left
    no_duplicate_rows(stack, since)


# -- privacy


@pytest.mark.timeout(60)
def test_an_email_is_masked_upstream_restored_for_the_caller_and_a_leaked_secret_redacted(stack: Stack) -> None:
    email = "carol@example.com"

    async def run(s: ClientSession) -> tuple[CallToolResult, CallToolResult]:
        echoed = await s.call_tool("demo-tools__echo_args", {"to": email, "note": f"cc {email} please"})
        return echoed, await s.call_tool("demo-tools__secret", {})

    echoed, secret = with_session(stack, MASKED_KEY, run)
    seen = mcp_stats(stack)["last_arguments"]["echo_args"]
    # The upstream got placeholders only, the caller its own address back.
    assert email not in json.dumps(seen), seen
    assert seen["to"].startswith("[EMAIL") and seen["to"] in seen["note"], seen
    assert json.loads(text_of(echoed)) == {"to": email, "note": f"cc {email} please"}
    # The key the tool leaked is redacted by the tenant's output check; the
    # address it leaked is no value of the caller's, and email is no output check here.
    leaked = text_of(secret)
    assert "AKIAIOSFODNN7EXAMPLE" not in leaked and "[REDACTED:secret]" in leaked, leaked
    rows = {r["tool"]: r for r in tool_rows(stack, "mcp-masked", 2)}
    assert rows["echo_args"]["detections"] >= 1 and rows["secret"]["detections"] >= 1, rows


# -- bad input


@pytest.mark.timeout(90)
def test_bad_input_over_raw_http_gets_clear_json_rpc_errors_never_a_5xx(stack: Stack) -> None:
    before = mcp_stats(stack)["calls"]
    opened = post(
        stack,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        TOOLS_KEY,
    )
    assert opened.status_code == 200, opened.text
    mine = opened.headers["mcp-session-id"]
    echo = {"text": "x"}
    echo_call = call_body("demo-tools__echo", echo)
    answers = {
        "malformed": post(stack, b'{"jsonrpc": "2.0", "id": 2, "method": "tools/ca', TOOLS_KEY),
        "not JSON-RPC": post(stack, [1, 2, 3], TOOLS_KEY),
        "unknown method": post(stack, {"jsonrpc": "2.0", "id": 3, "method": "tools/frobnicate"}, TOOLS_KEY),
        "another namespace": post(stack, call_body("github__create_issue", {"title": "x"}), TOOLS_KEY),
        "no namespace": post(stack, call_body("echo", echo), TOOLS_KEY),
        "a server not allowed": post(stack, call_body("gated-tools__echo", echo), TOOLS_KEY),
        "arguments not an object": post(stack, call_body("demo-tools__echo", ["x"]), TOOLS_KEY),
        "oversized arguments": post(stack, call_body("demo-tools__echo", {"text": "a" * (2 << 20)}), TOOLS_KEY),
        "another caller's session": post(stack, echo_call, DEMO_KEY, **{"mcp-session-id": mine}),
        "a made-up session": post(stack, echo_call, TOOLS_KEY, **{"mcp-session-id": "x" * 40}),
        "no key": post(stack, echo_call, None),
        "a wrong key": post(stack, echo_call, "sk-test-wrong-0123456789"),
    }
    errors = {}
    for what, answer in answers.items():
        assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
        error = rpc(answer).get("error")
        assert error and isinstance(error["message"], str) and len(error["message"]) > 10, (what, answer.text[:300])
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        errors[what] = (answer.status_code, error["code"], data.get("code"), error["message"])
    assert errors["malformed"][1] == -32700
    assert errors["not JSON-RPC"][1] in (-32600, -32602, -32700)
    assert errors["unknown method"][1] == -32601
    assert errors["another namespace"][1:3] == (-32602, "tool_not_found")
    assert "github__create_issue" in errors["another namespace"][3]
    assert errors["no namespace"][1:3] == (-32602, "tool_not_found") and "<server>__<tool>" in errors["no namespace"][3]
    assert errors["a server not allowed"][2] in ("tool_not_allowed", "tool_not_found")
    assert errors["arguments not an object"][1] == -32602
    assert errors["oversized arguments"][1:3] == (-32602, "arguments_too_large")
    for what in ("another caller's session", "a made-up session"):
        assert errors[what][0] == 404 and errors[what][2] == "mcp_session_not_found", errors[what]
    assert errors["no key"][0] == 401 and errors["a wrong key"][0] == 401
    time.sleep(0.5)
    assert mcp_stats(stack)["calls"] == before
    # The session still serves the key that opened it.
    ok = post(stack, call_body("demo-tools__echo", {"text": "mine"}), TOOLS_KEY, **{"mcp-session-id": mine})
    assert rpc(ok)["result"]["content"][0]["text"] == "mine"


# -- the bus door


@pytest.mark.timeout(60)
def test_a_service_calls_a_tool_over_the_bus_with_its_key_header(stack: Stack) -> None:
    before = calls_of(stack, "echo")

    async def ask(message: dict, key: str) -> dict:
        nc = await stack.connect()  # an internal service's NATS user
        try:
            reply = await nc.request(
                subjects.IN_MCP, json.dumps(message).encode(), timeout=20, headers={"Authorization": f"Bearer {key}"}
            )
            return json.loads(reply.data)
        finally:
            await nc.close()

    echo = {"name": "demo-tools__echo", "arguments": {"text": "from a service"}}
    called = asyncio.run(ask({"jsonrpc": "2.0", "id": "svc-1", "method": "tools/call", "params": echo}, TOOLS_KEY))
    assert called["id"] == "svc-1" and called["result"]["content"] == [{"type": "text", "text": "from a service"}]
    refused = asyncio.run(ask({"jsonrpc": "2.0", "id": "svc-2", "method": "tools/call", "params": echo}, NARROW_KEY))
    assert refused["id"] == "svc-2" and refused["error"]["data"]["code"] == "tool_not_allowed"
    assert calls_of(stack, "echo") == before + 1


# -- a replica killed mid-call (last: the module's stack loses a process)


@pytest.mark.timeout(120)
def test_a_pipeline_replica_killed_mid_call_gives_each_caller_one_answer_one_upstream_call_one_row(
    stack: Stack,
) -> None:
    since = time.time_ns()
    before = upstream_calls(stack, "sturdy")
    victim = stack.supervisor.pids()["pipeline-1"]

    async def run(s: ClientSession) -> list[CallToolResult | MCPError]:
        calls = [
            asyncio.create_task(call_or_error(s, "sturdy-tools__slow", {"seconds": SLOW_S}))
            for _ in range(KILLED_CALLS)
        ]
        while upstream_calls(stack, "sturdy") < before + KILLED_CALLS:
            await asyncio.sleep(0.05)
        os.kill(victim, signal.SIGKILL)  # every call is at the upstream now
        return await asyncio.gather(*calls)

    answers = with_session(stack, KILL_KEY, run)
    ok = [a for a in answers if isinstance(a, CallToolResult)]
    died = [a for a in answers if isinstance(a, MCPError)]
    assert len(ok) + len(died) == KILLED_CALLS
    assert all(text_of(a) == f"slept {SLOW_S}" for a in ok)
    # The calls the dead replica held end as such, not sent again: slow is no idempotent tool.
    assert died, "the killed replica held none of the calls"
    assert all(e.error.data["code"] == "worker_died" for e in died), [e.error.data for e in died]
    time.sleep(SLOW_S)
    assert upstream_calls(stack, "sturdy") == before + KILLED_CALLS
    rows = tool_rows(stack, "mcp-kill", KILLED_CALLS)
    assert sorted(r["status"] for r in rows) == sorted([200] * len(ok) + [died[0].error.data["status"]] * len(died))
    no_duplicate_rows(stack, since)
