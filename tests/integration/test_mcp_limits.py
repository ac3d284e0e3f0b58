"""MCP calls under limits with two policy replicas: a tool's own rpm holds
exactly for every caller together, a tool's price runs a budget out, and a
call's arguments are masked on the way to the upstream and restored in its
result. Calls come as a bus service sends them: envelopes with a ``tool``
on ``sluice.v1.in.chat``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from schemas import subjects
from schemas.mcp import decode_catalog, decode_server
from services import quota
from services.keys import hash_key
from tests.stack import PRIVATE_KEY, Stack

RPM_KEYS = ["sk-test-tools-a-0123456789", "sk-test-tools-b-0123456789"]
BUDGET_KEY = "sk-test-tools-budget-0123456789"
TOOL_RPM = 20
PRICE = 1_000_000  # pico-USD a call: $0.000001

EXTRA = f"""
[[tenants]]
id = "toolq"
mcp_tools = ["limited-tools__*", "priced-tools__*"]

[[keys]]
id = "tools-a"
tenant = "toolq"
sha256 = "{hash_key(RPM_KEYS[0])}"

[[keys]]
id = "tools-b"
tenant = "toolq"
sha256 = "{hash_key(RPM_KEYS[1])}"

[[keys]]
id = "tools-budget"
tenant = "toolq"
sha256 = "{hash_key(BUDGET_KEY)}"
budget = {{{{ usd = "0.000003", period = "total" }}}}

[[mcp_servers]]
name = "limited-tools"
urls = ["http://127.0.0.1:{{mock}}/@limited/mcp"]

[mcp_servers.tools.echo]
rpm = {TOOL_RPM}

[[mcp_servers]]
name = "priced-tools"
urls = ["http://127.0.0.1:{{mock}}/@priced/mcp"]

[mcp_servers.tools.lookup]
price_pico_usd = {PRICE}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("mcp-limits"), timeout_s=20, extra_config=EXTRA, replicas={"policy": 2})
    s.start()
    try:
        asyncio.run(wait_catalogs(s, ["limited-tools", "priced-tools", "demo-tools"]))
        yield s
    finally:
        s.stop()


async def wait_catalogs(stack: Stack, servers: list[str], timeout: float = 30) -> None:
    """Until the provider stage has listed every server (policy finds a tool in its catalog)."""
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_MCP_CATALOG)
        deadline = time.monotonic() + timeout
        for server in servers:
            while True:
                try:
                    if decode_catalog((await kv.get(server)).value).tools:
                        break
                except Exception:  # not written yet
                    pass
                assert time.monotonic() < deadline, f"no catalog of {server} after {timeout}s"
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def envelope(reply: str, server: str, tool: str, arguments: dict) -> bytes:
    doc = {
        "kind": "chat.request",
        "reply": reply,
        "api": "mcp",
        "tool": {"server": server, "name": tool, "arguments": json.dumps(arguments).encode()},
    }
    return msgspec.msgpack.encode(doc)


async def call_many(stack: Stack, calls: list[tuple[str, str, str, dict]]) -> list[dict]:
    """Each ``(key, server, tool, arguments)`` published at once; the last reply of each."""
    nc = await stack.connect()
    try:

        async def one(key: str, server: str, tool: str, arguments: dict) -> dict:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(
                subjects.IN_CHAT, envelope(inbox, server, tool, arguments), headers={"Authorization": f"Bearer {key}"}
            )
            while True:
                reply = msgspec.msgpack.decode((await sub.next_msg(timeout=20)).data)
                if reply["kind"] in ("chat.final", "chat.failure"):
                    await sub.unsubscribe()
                    return reply

        return await asyncio.gather(*(one(*c) for c in calls))
    finally:
        await nc.close()


async def server_created_ms(stack: Stack, name: str) -> int:
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_MCP_SERVERS)
        return decode_server((await kv.get(name)).value).created_at_ms
    finally:
        await nc.close()


async def counter(stack: Stack, subject: str) -> int:
    nc = await stack.connect("admin")
    try:
        msg = await nc.jetstream().get_last_msg(subjects.SPEND_STREAM, subject, direct=True)
        return int(json.loads(msg.data)["val"])
    finally:
        await nc.close()


def upstream_calls(stack: Stack, name: str) -> int:
    return httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["by_upstream"].get(name, 0)


def text_of(final: dict) -> str:
    result = json.loads(final["tool_result"])
    return "".join(c.get("text", "") for c in result["content"])


def test_a_tools_rpm_holds_exactly_across_two_policy_replicas_and_callers(stack: Stack) -> None:
    # The burst must fall in one minute window of the tool's counter.
    anchor = asyncio.run(server_created_ms(stack, "limited-tools"))
    _, left_ms = quota.minute_window(anchor, int(time.time() * 1000))
    if left_ms < 15_000:
        time.sleep(left_ms / 1000 + 0.5)
    before = upstream_calls(stack, "limited")
    calls = [(RPM_KEYS[i % 2], "limited-tools", "echo", {"text": f"call {i}"}) for i in range(3 * TOOL_RPM)]
    replies = asyncio.run(call_many(stack, calls))
    ok = [r for r in replies if r["kind"] == "chat.final"]
    refused = [r for r in replies if r["kind"] == "chat.failure"]
    assert len(ok) == TOOL_RPM, [(r["status"], r["message"]) for r in refused][:3]
    assert all(r["status"] == 429 and r["type"] == "rate_limit_error" for r in refused)
    assert all("tool" in r["message"] and r["retry_after_s"] >= 1 for r in refused)
    # Both keys were admitted: the limit is the tool's, not a key's.
    assert {r["key_id"] for r in ok} == {"tools-a", "tools-b"}
    # Each admitted call got its own answer.
    texts = {text_of(r) for r in ok}
    assert len(texts) == TOOL_RPM and texts <= {f"call {i}" for i in range(3 * TOOL_RPM)}
    # A refused call never reached the upstream.
    deadline = time.monotonic() + 5
    while upstream_calls(stack, "limited") - before != TOOL_RPM:
        assert time.monotonic() < deadline, upstream_calls(stack, "limited") - before
        time.sleep(0.1)


def test_a_tools_price_runs_a_budget_out(stack: Stack) -> None:
    calls = [(BUDGET_KEY, "priced-tools", "lookup", {"id": str(i)}) for i in range(10)]
    replies = asyncio.run(call_many(stack, calls))
    ok = [r for r in replies if r["kind"] == "chat.final"]
    refused = [r for r in replies if r["kind"] == "chat.failure"]
    # $0.000003 at $0.000001 a call: three calls, whichever policy replica admitted them.
    assert len(ok) == 3 and len(refused) == 7, [r.get("message") for r in refused][:3]
    assert all(r["status"] == 429 and r["code"] == "insufficient_quota" for r in refused)
    assert all(r["cost"]["call"] == PRICE for r in ok)
    # Each call settled at its price: the counter is what was charged, once leases are back.
    subject = f"{subjects.QUOTA}.spend.key.tools-budget.total"
    time.sleep(2.5)
    assert asyncio.run(counter(stack, subject)) == 3 * PRICE
    (again,) = asyncio.run(call_many(stack, calls[:1]))
    assert again["kind"] == "chat.failure" and again["code"] == "insufficient_quota"


def test_arguments_are_masked_upstream_and_restored_for_the_caller(stack: Stack) -> None:
    email = "carol@example.com"
    (reply,) = asyncio.run(call_many(stack, [(PRIVATE_KEY, "demo-tools", "echo", {"text": f"write to {email}"})]))
    assert reply["kind"] == "chat.final", reply
    assert text_of(reply) == f"write to {email}"
    seen = httpx.get(f"{stack.mock_url}/mock/mcp/stats").json()["last_arguments"]["echo"]
    assert email not in json.dumps(seen) and "[EMAIL_1]" in seen["text"]
