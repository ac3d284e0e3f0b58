"""Policy for REST calls: a call's shape, who may make it, and what it takes
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
    GatewayError,
    InvalidRequest,
    PermissionDenied,
    QuotaExceeded,
    RateLimitExceeded,
    RecordNotFound,
    RequestTooLarge,
    SubscriptionPending,
    SubscriptionRejected,
)
from schemas.mcp import McpCall
from schemas.reservation import HOLD_PARALLEL, HOLD_REQUESTS, HOLD_SPEND, HOLD_TOKENS
from schemas.rest import RestCall, RestInstance, RestService
from services import admission, mcp_policy, policy, rest_policy
from services.bus.quota_ledger import QuotaLedger, settle
from services.openapi_routes import RouteTable

NOW_MS = 1_800_000_000_000
UP = [RestInstance(url="http://127.0.0.1:9000/api")]


def service(slug: str = "billing", version: int = 1, **fields: object) -> RestService:
    return RestService(slug=slug, version=version, instances=UP, **fields)  # type: ignore[arg-type]


SERVICES = {
    s.key: s
    for s in (
        service(methods=["GET", "POST"], max_request_bytes=100, rpm=3, max_parallel=2, price_pico_usd=1_000_000),
        service(version=2, state="deprecated", successor="billing/v3"),
        service("gated", requires_approval=True),
        service("old", state="retired", successor="billing"),
        service("gone", state="retired"),
        service("wip", state="draft"),
    )
}
TENANT = Tenant(id="t1")
KEY = ApiKey(id="k1", tenant_id="t1")


def env(call: RestCall | None = None, **fields: object) -> Envelope:
    return Envelope(reply="_INBOX.x", api="rest", rest=call, **fields)  # type: ignore[arg-type]


def call(service: str = "billing", **fields: object) -> RestCall:
    return RestCall(service=service, **fields)  # type: ignore[arg-type]


# -- shape ------------------------------------------------------------------------


def test_a_well_formed_call_passes() -> None:
    c = call(
        method="POST",
        path="/invoices/42?expand=lines&q=a%20b",
        route="/invoices/{id}",
        headers=[("content-type", "application/json"), ("x-trace", "a b; c=d")],
        body=b'{"amount": 5}',
    )
    assert rest_policy.check_call(env(c)) is c


def test_any_route_template_the_door_matched_passes() -> None:
    # A document's paths are any text (OpenAPI only says they start with
    # '/'): the route is the row's, and never a reason to refuse the call.
    cases = [("/caf\u00e9/{id}", "/caf%C3%A9/1"), ("/my items/{id}", "/my%20items/1"), ("/a/{b}:{c}", "/a/2:3")]
    for template, path in cases:
        c = call(path=path, route=RouteTable([template]).match(path))
        assert c.route == template and rest_policy.check_call(env(c)) is c
    # And a template the policy would refuse is one the door never matches.
    for template in ("/a\nb", "/" + "x" * rest_policy.MAX_ROUTE_CHARS):
        assert RouteTable([template]).match(template) == ""


@pytest.mark.parametrize(
    ("envelope", "code"),
    [
        (env(None), "invalid_request"),
        (env(call(), body=ChatBody(model="m", messages=[Message(role="user", content="x")])), "invalid_request"),
        (env(call(), tool=McpCall(server="s", name="t")), "invalid_request"),
        (env(call(service="Billing")), "invalid_rest_call"),
        (env(call(service="a.b")), "invalid_rest_call"),
        (env(call(service="a*")), "invalid_rest_call"),
        (env(call(service="")), "invalid_rest_call"),
        (env(call(version=0)), "invalid_rest_call"),
        (env(call(version=10**9)), "invalid_rest_call"),
        (env(call(path="")), "invalid_path"),
        (env(call(path="invoices")), "invalid_path"),
        (env(call(path="//evil.example.com/x")), "invalid_path"),
        (env(call(path="/a\r\nHost: evil")), "invalid_path"),
        (env(call(path="/a\x00b")), "invalid_path"),
        (env(call(path="/a b")), "invalid_path"),
        (env(call(path="/é")), "invalid_path"),
        (env(call(path="/a#frag")), "invalid_path"),
        (env(call(path="/../admin")), "invalid_path"),
        (env(call(path="/a/..")), "invalid_path"),
        (env(call(path="/a/./b")), "invalid_path"),
        (env(call(path="/a/%2e%2e/admin")), "invalid_path"),
        (env(call(path="/a/%2E%2e%2Fadmin")), "invalid_path"),
        (env(call(path="/a/%252e%252e/admin")), "invalid_path"),
        (env(call(path="/a/..%5cadmin")), "invalid_path"),
        (env(call(path="/a/..;/admin")), "invalid_path"),
        (env(call(path="/a/..;jsessionid=1/admin")), "invalid_path"),
        (env(call(path="/a/%2e%2e%3b/admin")), "invalid_path"),
        (env(call(path="/a/.;x/b")), "invalid_path"),
        (env(call(path="/a/%0d%0aHost:x")), "invalid_path"),
        (env(call(path="/" + "a" * 8192)), "uri_too_long"),
        (env(call(route="/x\n")), "invalid_rest_call"),
        (env(call(route="x" * 2000)), "invalid_rest_call"),
        (env(call(headers=[("X-Upper", "v")])), "invalid_rest_call"),
        (env(call(headers=[("bad name", "v")])), "invalid_rest_call"),
        (env(call(headers=[("", "v")])), "invalid_rest_call"),
        (env(call(headers=[("x-a", "v\r\nx-b: injected")])), "invalid_rest_call"),
        (env(call(headers=[("x-a", "v\nw")])), "invalid_rest_call"),
        (env(call(headers=[("x-a", "v\x00")])), "invalid_rest_call"),
        (env(call(headers=[(f"x-{i}", "v") for i in range(101)])), "invalid_rest_call"),
        (env(call(headers=[("x-big", "v" * 70_000)])), "headers_too_large"),
    ],
)
def test_a_malformed_call_is_refused(envelope: Envelope, code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        rest_policy.check_call(envelope)
    assert info.value.code == code and info.value.status in (400, 414, 431)


def test_a_method_decoded_from_the_bus_must_be_one_http_has() -> None:
    raw = msgspec.msgpack.encode({"service": "billing", "method": "TRACE"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=RestCall)
    c = call()
    c.method = "BREW"  # type: ignore[assignment]  # built in-process, not decoded
    with pytest.raises(InvalidRequest):
        rest_policy.check_call(env(c))


def test_a_bus_caller_carrying_rest_is_a_rest_request_and_no_other_may_carry_one() -> None:
    e = Envelope(reply="_INBOX.x", api="chat", rest=call())
    admission.admit(e, NOW_MS * 1_000_000, 30, from_ingress=False, ids=admission.RecentIds())
    assert e.api == "rest"
    chat = Envelope(reply="_INBOX.x", body=ChatBody(model="m", messages=[Message(role="user", content="x")]))
    chat.rest = call()
    with pytest.raises(InvalidRequest):
        policy.check_body(chat)
    mcp = Envelope(reply="_INBOX.x", api="mcp", tool=McpCall(server="s", name="t"), rest=call())
    with pytest.raises(InvalidRequest):
        mcp_policy.check_call(mcp)


# -- access -------------------------------------------------------------------------


def access(c: RestCall, key: ApiKey = KEY, subs: list[Subscription] | None = None) -> RestService:
    return rest_policy.check_access(c, key, SERVICES, subs or [])


def test_a_published_or_deprecated_service_is_found_by_slug_and_version() -> None:
    assert access(call()).key == "billing.v1"
    assert access(call(version=2)).key == "billing.v2"


@pytest.mark.parametrize(
    ("c", "status", "code", "says"),
    [
        (call("ghost"), 404, "service_not_found", "/services/ghost"),
        (call(version=3), 404, "service_not_found", "/services/billing/v3"),
        (call("wip"), 404, "service_not_found", "/services/wip"),  # a draft is not there for callers
        (call("old"), 410, "service_retired", "Use /services/billing instead"),
        (call("gone"), 410, "service_retired", "/services/gone is retired."),
        (call(method="DELETE"), 405, "method_not_allowed", "it takes GET, POST"),
        (call(method="POST", body=b"x" * 101), 413, "request_too_large", "at most 100"),
    ],
)
def test_a_call_the_service_does_not_take_is_refused(c: RestCall, status: int, code: str, says: str) -> None:
    with pytest.raises(GatewayError) as info:
        access(c)
    assert (info.value.status, info.value.code) == (status, code)
    assert says in info.value.message
    if status == 404:
        assert isinstance(info.value, RecordNotFound)
    if status == 413:
        assert isinstance(info.value, RequestTooLarge)


def test_a_body_at_the_cap_passes() -> None:
    assert access(call(method="POST", body=b"x" * 100)).key == "billing.v1"


def test_a_keys_model_patterns_name_the_services_it_may_call() -> None:
    narrow = ApiKey(id="k2", tenant_id="t1", models=["demo-model", "service:billing"])
    assert access(call(), narrow).slug == "billing"
    # Version 2 is its own name; a pattern may cover every version.
    with pytest.raises(PermissionDenied) as info:
        access(call(version=2), narrow)
    assert info.value.code == "service_not_allowed" and "service:billing/v2" in info.value.message
    assert access(call(version=2), ApiKey(id="k3", tenant_id="t1", models=["service:billing*"])).version == 2
    models_only = ApiKey(id="k4", tenant_id="t1", models=["gpt-*"])
    with pytest.raises(PermissionDenied):
        access(call(), models_only)


def test_a_service_needing_approval_needs_an_approved_subscription_of_the_tenant() -> None:
    with pytest.raises(PermissionDenied) as info:
        access(call("gated"))
    assert (info.value.status, info.value.code) == (403, "subscription_required")
    pending = Subscription(id="s1", tenant_id="t1", model="service:gated", state="pending")
    with pytest.raises(SubscriptionPending):
        access(call("gated"), subs=[pending])
    rejected = Subscription(id="s1", tenant_id="t1", model="service:gated", state="rejected", reason="not yet")
    with pytest.raises(SubscriptionRejected) as rejected_info:
        access(call("gated"), subs=[rejected])
    assert "not yet" in rejected_info.value.message
    other_tenant = Subscription(id="s2", tenant_id="t2", model="service:*", state="approved")
    with pytest.raises(PermissionDenied):
        access(call("gated"), subs=[other_tenant])
    # A subscription to another service that shares the prefix covers nothing here.
    prefix = Subscription(id="s3", tenant_id="t1", model="service:gate", state="approved")
    with pytest.raises(PermissionDenied):
        access(call("gated"), subs=[prefix])
    approved = Subscription(id="s1", tenant_id="t1", model="service:gated", state="approved")
    assert access(call("gated"), subs=[approved]).slug == "gated"


def test_the_key_is_checked_before_the_subscription() -> None:
    # A key that may not call the service learns nothing of its approval state.
    with pytest.raises(PermissionDenied) as info:
        access(call("gated"), ApiKey(id="k", tenant_id="t1", models=["gpt-*"]))
    assert info.value.code == "service_not_allowed"


def test_a_tenants_privacy_rules_read_a_rest_body_only_where_the_service_opts_in() -> None:
    private = Tenant(id="t1", redaction_rules=[])
    assert rest_policy.screened(private, None) is private  # any other request
    assert rest_policy.screened(private, service()) is None
    assert rest_policy.screened(private, service(redact_json=True)) is private
    assert rest_policy.screened(None, service(redact_json=True)) is None


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


BILLING = SERVICES["billing.v1"]


def test_a_rest_call_is_one_request_no_tokens_and_the_services_price() -> None:
    key = ApiKey(id="k1", tenant_id="t1", limits=Limits(rpm=100, tpm=1000), budget=Budget(10**9, "total"))
    tenant = Tenant(id="t1", limits=Limits(max_parallel=5))
    by = {(n.scope, n.kind): n.amount for n in rest_policy.needs(BILLING, key, tenant, NOW_MS)}
    assert by == {
        ("key", HOLD_REQUESTS): 1,
        ("key", HOLD_TOKENS): 0,
        ("key", HOLD_SPEND): 1_000_000,
        ("tenant", HOLD_PARALLEL): 1,
        ("service", HOLD_REQUESTS): 1,
        ("service", HOLD_PARALLEL): 1,
    }


def test_no_limits_anywhere_takes_nothing() -> None:
    assert rest_policy.needs(SERVICES["gated.v1"], KEY, TENANT, NOW_MS) == []
    assert rest_policy.needs(SERVICES["gated.v1"], KEY, None, NOW_MS) == []


def test_each_service_version_has_counters_of_its_own_in_safe_subject_tokens() -> None:
    subjects_of = {
        s.key: {n.subject for n in rest_policy.needs(s, KEY, TENANT, NOW_MS)}
        for s in (service("a-b", rpm=1), service("a", version=2, rpm=1), service("a", rpm=1))
    }
    assert len(set.union(*subjects_of.values())) == 3
    for found in subjects_of.values():
        (subject,) = found
        assert subject.startswith(f"{subjects.QUOTA}.rate.service.")
        assert all(re.fullmatch(r"[A-Za-z0-9_-]+", t) for t in subject.split("."))


def test_a_services_rpm_and_parallel_hold_for_every_caller() -> None:
    async def run() -> None:
        counters = MemoryCounters()
        ledger = QuotaLedger(counters)  # type: ignore[arg-type]
        keys = [ApiKey(id=f"k{i}", tenant_id=f"t{i}") for i in range(3)]
        held = []
        # Two at once, whoever calls: the third waits for one to end (max_parallel 2) ...
        for k in keys[:2]:
            held.append(await ledger.admit(rest_policy.needs(BILLING, k, None, NOW_MS), NOW_MS))
        with pytest.raises(RateLimitExceeded) as info:
            await ledger.admit(rest_policy.needs(BILLING, keys[2], None, NOW_MS), NOW_MS)
        assert "this service: 2 requests in flight" in info.value.message
        settle(counters, held.pop(), 0, 1_000_000)  # type: ignore[arg-type]
        held.append(await ledger.admit(rest_policy.needs(BILLING, keys[2], None, NOW_MS), NOW_MS))
        for r in held:
            settle(counters, r, 0, 1_000_000)  # type: ignore[arg-type]
        # ... and three a minute (a settled call still counted).
        with pytest.raises(RateLimitExceeded) as info:
            await ledger.admit(rest_policy.needs(BILLING, keys[0], None, NOW_MS), NOW_MS)
        assert "this service: 3 requests per minute" in info.value.message
        # Another version of the service is not held by this one's minute.
        v2 = service(version=2, rpm=3)
        await ledger.admit(rest_policy.needs(v2, keys[0], None, NOW_MS), NOW_MS)
        later = NOW_MS + 60_000
        await ledger.admit(rest_policy.needs(BILLING, keys[0], None, later), later)

    asyncio.run(run())


def test_a_services_price_runs_a_budget_out_and_settles_to_what_was_charged() -> None:
    async def run() -> None:
        counters = MemoryCounters()
        ledger = QuotaLedger(counters)  # type: ignore[arg-type]
        priced = service(price_pico_usd=400)
        key = ApiKey(id="k1", tenant_id="t1", budget=Budget(1000, "total"))
        first = await ledger.admit(rest_policy.needs(priced, key, TENANT, NOW_MS), NOW_MS)
        second = await ledger.admit(rest_policy.needs(priced, key, TENANT, NOW_MS), NOW_MS)
        with pytest.raises(QuotaExceeded) as info:
            await ledger.admit(rest_policy.needs(priced, key, TENANT, NOW_MS), NOW_MS)
        assert info.value.status == 429
        # A call billed at its price, one that never reached an instance at 0.
        settle(counters, first, 0, 400)  # type: ignore[arg-type]
        settle(counters, second, 0, 0)  # type: ignore[arg-type]
        ledger.return_idle(2**62)
        spend = next(v for s, v in counters.values.items() if ".spend.key.k1." in s)
        assert spend == 400
        await ledger.admit(rest_policy.needs(priced, key, TENANT, NOW_MS + 1), NOW_MS + 1)

    asyncio.run(run())
