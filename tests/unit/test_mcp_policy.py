"""Policy for MCP calls: a call's shape, who may make it, and what it takes
from the shared counters (an in-memory stand-in for JetStream's)."""

from __future__ import annotations

import asyncio
import re

import msgspec
import pytest

from schemas import subjects
from schemas.chat import ChatBody, Message
from schemas.control import ApiKey, Budget, Limits, Subscription, Tenant
from schemas.envelope import Envelope
from schemas.errors import (
    InvalidRequest,
    PermissionDenied,
    QuotaExceeded,
    RateLimitExceeded,
    RecordNotFound,
    SubscriptionPending,
)
from schemas.mcp import CatalogTool, McpCall, McpServer, ServerCatalog, ToolAnnotations, ToolRule
from schemas.reservation import HOLD_PARALLEL, HOLD_REQUESTS, HOLD_SPEND, HOLD_TOKENS
from services import admission, mcp_policy, policy
from services.bus.quota_ledger import QuotaLedger, settle

NOW_MS = 1_800_000_000_000
SERVERS = {
    "demo": McpServer(
        name="demo",
        urls=["http://a/mcp"],
        tools={"echo": ToolRule(rpm=3, max_parallel=2, price_pico_usd=1_000_000), "*": ToolRule(price_pico_usd=5)},
    ),
    "gated": McpServer(name="gated", urls=["http://g/mcp"], requires_approval=True),
}
CATALOGS = {
    "demo": ServerCatalog(
        server="demo",
        tools=[
            CatalogTool(name="echo"),
            CatalogTool(name="lookup", annotations=ToolAnnotations(readOnlyHint=True)),
            CatalogTool(name="delete_item", annotations=ToolAnnotations(destructiveHint=True)),
        ],
    ),
    "gated": ServerCatalog(server="gated", tools=[CatalogTool(name="echo")]),
}
TENANT = Tenant(id="t1", mcp_tools=["demo__*", "gated__*"])
KEY = ApiKey(id="k1", tenant_id="t1")


def env(call: McpCall | None = None, **fields: object) -> Envelope:
    return Envelope(reply="_INBOX.x", api="mcp", tool=call, **fields)  # type: ignore[arg-type]


def call(name: str = "echo", server: str = "demo", **fields: object) -> McpCall:
    return McpCall(server=server, name=name, **fields)  # type: ignore[arg-type]


# -- shape ------------------------------------------------------------------------


def test_a_well_formed_call_passes() -> None:
    c = call(arguments=b'{"text": "hi", "n": [1, {"deep": true}]}')
    assert mcp_policy.check_call(env(c)) is c


@pytest.mark.parametrize(
    ("envelope", "code"),
    [
        (env(None), "invalid_request"),
        (env(call(), body=ChatBody(model="m", messages=[Message(role="user", content="x")])), "invalid_request"),
        (env(call(server="bad_name")), "invalid_tool"),
        (env(call(server="a.b")), "invalid_tool"),
        (env(call(server="-" + "x" * 60)), "invalid_tool"),
        (env(call(name="")), "invalid_tool"),
        (env(call(name="x" * 2049)), "invalid_tool"),
        (env(call(name="echo\nrow")), "invalid_tool"),
        (env(call(arguments=b"[1, 2]")), "invalid_arguments"),
        (env(call(arguments=b'"text"')), "invalid_arguments"),
        (env(call(arguments=b"{")), "invalid_arguments"),
        (env(call(arguments=b"")), "invalid_arguments"),
        (env(call(arguments=b'{"a": 1e999}')), "invalid_arguments"),
        (env(call(arguments=b'{"a":' * 5000 + b"1" + b"}" * 5000)), "invalid_arguments"),
        (env(call(arguments=b'{"a": "' + b"x" * (1 << 20) + b'"}')), "arguments_too_large"),
        (env(call(name="greeting", method="prompts/get", arguments=b'{"name": 3}')), "invalid_arguments"),
        (env(call(name="demo://readme", method="resources/read", arguments=b'{"x": "y"}')), "invalid_arguments"),
    ],
)
def test_a_malformed_call_is_400(envelope: Envelope, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        mcp_policy.check_call(envelope)
    assert info.value.code == code and info.value.status == 400


def test_a_method_decoded_from_the_bus_must_be_one_mcp_has() -> None:
    raw = msgspec.msgpack.encode({"server": "demo", "name": "echo", "method": "tools/list"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=McpCall)
    c = call()
    c.method = "tools/list"  # type: ignore[assignment]  # built in-process, not decoded
    with pytest.raises(InvalidRequest):
        mcp_policy.check_call(env(c))


def test_a_bus_caller_carrying_a_tool_is_an_mcp_request_and_a_chat_one_may_not_carry_one() -> None:
    e = Envelope(reply="_INBOX.x", api="chat", tool=call())
    admission.admit(e, NOW_MS * 1_000_000, 30, from_ingress=False, ids=admission.RecentIds())
    assert e.api == "mcp"
    chat = Envelope(reply="_INBOX.x", body=ChatBody(model="m", messages=[Message(role="user", content="x")]))
    chat.tool = call()
    with pytest.raises(InvalidRequest):
        policy.check_body(chat)


# -- access -------------------------------------------------------------------------


def access(c: McpCall, tenant: Tenant | None = TENANT, key: ApiKey = KEY, subs: list[Subscription] | None = None):
    return mcp_policy.check_access(c, tenant, key, SERVERS, CATALOGS, subs or [])


def test_an_allowed_tool_resolves_its_server() -> None:
    assert access(call()).name == "demo"


@pytest.mark.parametrize(
    ("c", "tenant", "key", "error", "code"),
    [
        (call("nope"), TENANT, KEY, RecordNotFound, "tool_not_found"),
        (call(server="ghost"), TENANT, KEY, RecordNotFound, "tool_not_found"),
        (call(), Tenant(id="t1"), KEY, PermissionDenied, "tool_not_allowed"),  # deny by default
        (call(), None, KEY, PermissionDenied, "tool_not_allowed"),
        (
            call(),
            TENANT,
            ApiKey(id="k", tenant_id="t1", mcp_tools=["demo__lookup"]),
            PermissionDenied,
            "tool_not_allowed",
        ),
        (
            call(),
            Tenant(id="t1", mcp_tools=["demo__*"], mcp_safety="read_only"),
            KEY,
            PermissionDenied,
            "tool_not_read_only",
        ),
        (
            call("p", method="prompts/get"),
            Tenant(id="t1", mcp_tools=["other__*"]),
            KEY,
            PermissionDenied,
            "tool_not_allowed",
        ),
        (call("demo://x", server="ghost", method="resources/read"), TENANT, KEY, RecordNotFound, "tool_not_found"),
    ],
)
def test_a_call_the_caller_may_not_make_is_refused(
    c: McpCall, tenant: Tenant | None, key: ApiKey, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        access(c, tenant, key)
    assert info.value.code == code  # type: ignore[attr-defined]


def test_read_only_tenants_may_call_read_only_tools_and_read_prompts() -> None:
    tenant = Tenant(id="t1", mcp_tools=["demo__*"], mcp_safety="read_only")
    assert access(call("lookup"), tenant).name == "demo"
    assert access(call("greeting", method="prompts/get"), tenant).name == "demo"


def test_a_server_needing_approval_needs_an_approved_subscription() -> None:
    with pytest.raises(PermissionDenied) as info:
        access(call(server="gated"))
    assert info.value.code == "subscription_required"
    pending = Subscription(id="s1", tenant_id="t1", model="mcp:gated", state="pending")
    with pytest.raises(SubscriptionPending):
        access(call(server="gated"), subs=[pending])
    approved = Subscription(id="s1", tenant_id="t1", model="mcp:gated", state="approved")
    other = Subscription(id="s2", tenant_id="t2", model="mcp:*", state="approved")
    with pytest.raises(PermissionDenied):
        access(call(server="gated"), subs=[other])  # another tenant's approval is not this one's
    assert access(call(server="gated"), subs=[approved]).name == "gated"


# -- counters -----------------------------------------------------------------------


class MemoryCounters:
    """JetStream's counters as a dict: ``add`` answers the new total."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    async def add(self, subject: str, delta: int, msg_id: str | None = None) -> int:
        self.values[subject] = self.values.get(subject, 0) + delta
        return self.values[subject]

    def add_later(self, subject: str, delta: int, budget: int = 0) -> None:
        self.values[subject] = self.values.get(subject, 0) + delta

    add_soon = add_later

    def alert_crossings(self, subject: str, before: int, after: int, limit: int) -> None:
        pass


def test_a_tool_call_is_one_request_no_tokens_and_its_price() -> None:
    key = ApiKey(id="k1", tenant_id="t1", limits=Limits(rpm=100, tpm=1000), budget=Budget(10**9, "total"))
    tenant = Tenant(id="t1", mcp_tools=["demo__*"], limits=Limits(max_parallel=5))
    needs = mcp_policy.needs(call(), SERVERS["demo"], key, tenant, NOW_MS)
    by = {(n.scope, n.kind): n.amount for n in needs}
    assert by == {
        ("key", HOLD_REQUESTS): 1,
        ("key", HOLD_TOKENS): 0,
        ("key", HOLD_SPEND): 1_000_000,
        ("tenant", HOLD_PARALLEL): 1,
        ("tool", HOLD_REQUESTS): 1,
        ("tool", HOLD_PARALLEL): 1,
    }
    # The "*" rule prices the server's other tools; prompts and resources are no tools.
    other = mcp_policy.needs(call("lookup"), SERVERS["demo"], key, tenant, NOW_MS)
    assert [n.amount for n in other if n.kind == HOLD_SPEND] == [5]
    assert not any(n.scope == "tool" for n in other)
    prompt = mcp_policy.needs(call("greeting", method="prompts/get"), SERVERS["demo"], key, tenant, NOW_MS)
    assert [n.amount for n in prompt if n.kind == HOLD_SPEND] == [0]


def test_no_limits_anywhere_takes_nothing() -> None:
    assert mcp_policy.needs(call("lookup"), SERVERS["demo"], KEY, TENANT, NOW_MS) == []


def test_a_tools_counters_are_its_own_and_safe_subject_tokens() -> None:
    servers = {"s": McpServer(name="s", tools={"*": ToolRule(rpm=1)})}
    names = ["a.b", "x *>", "ünï code", "a.b "]
    subjects_of = {
        name: next(n.subject for n in mcp_policy.needs(call(name, "s"), servers["s"], KEY, TENANT, NOW_MS))
        for name in names
    }
    assert len(set(subjects_of.values())) == len(names)
    for subject in subjects_of.values():
        assert subject.startswith(f"{subjects.QUOTA}.rate.tool.")
        assert all(re.fullmatch(r"[A-Za-z0-9_-]+", t) for t in subject.split("."))
    # The same tool on another server counts apart.
    assert mcp_policy.tool_counter_id("s", "echo") != mcp_policy.tool_counter_id("t", "echo")


def test_a_tools_rpm_and_parallel_hold_for_every_caller() -> None:
    async def run() -> None:
        counters = MemoryCounters()
        ledger = QuotaLedger(counters)  # type: ignore[arg-type]
        server = SERVERS["demo"]
        keys = [ApiKey(id=f"k{i}", tenant_id="t1") for i in range(3)]
        held = []
        # Two at once: the third waits for one to end (max_parallel 2) ...
        for k in keys[:2]:
            held.append(await ledger.admit(mcp_policy.needs(call(), server, k, TENANT, NOW_MS), NOW_MS))
        with pytest.raises(RateLimitExceeded) as info:
            await ledger.admit(mcp_policy.needs(call(), server, keys[2], TENANT, NOW_MS), NOW_MS)
        assert "this tool: 2 requests in flight" in info.value.message
        settle(counters, held.pop(), 0, 1_000_000)  # type: ignore[arg-type]
        held.append(await ledger.admit(mcp_policy.needs(call(), server, keys[2], TENANT, NOW_MS), NOW_MS))
        for r in held:
            settle(counters, r, 0, 1_000_000)  # type: ignore[arg-type]
        # ... and three a minute, whoever calls (a settled call still counted).
        with pytest.raises(RateLimitExceeded) as info:
            await ledger.admit(mcp_policy.needs(call(), server, keys[0], TENANT, NOW_MS), NOW_MS)
        assert "this tool: 3 requests per minute" in info.value.message
        later = NOW_MS + 60_000
        await ledger.admit(mcp_policy.needs(call(), server, keys[0], TENANT, later), later)

    asyncio.run(run())


def test_a_tools_price_runs_a_budget_out_and_settles_to_what_was_charged() -> None:
    async def run() -> None:
        counters = MemoryCounters()
        ledger = QuotaLedger(counters)  # type: ignore[arg-type]
        server = McpServer(name="demo", tools={"echo": ToolRule(price_pico_usd=400)})
        key = ApiKey(id="k1", tenant_id="t1", budget=Budget(1000, "total"))
        first = await ledger.admit(mcp_policy.needs(call(), server, key, TENANT, NOW_MS), NOW_MS)
        second = await ledger.admit(mcp_policy.needs(call(), server, key, TENANT, NOW_MS), NOW_MS)
        with pytest.raises(QuotaExceeded) as info:
            await ledger.admit(mcp_policy.needs(call(), server, key, TENANT, NOW_MS), NOW_MS)
        assert info.value.status == 429
        # The provider bills the price (Cost.call) on success; a call that
        # never reached the upstream is settled at 0 and frees its share.
        settle(counters, first, 0, 400)  # type: ignore[arg-type]
        settle(counters, second, 0, 0)  # type: ignore[arg-type]
        ledger.return_idle(2**62)
        spend = next(v for s, v in counters.values.items() if ".spend.key.k1." in s)
        assert spend == 400
        await ledger.admit(mcp_policy.needs(call(), server, key, TENANT, NOW_MS + 1), NOW_MS + 1)

    asyncio.run(run())
