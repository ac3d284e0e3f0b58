"""REST calls under policy with two policy replicas: a service's own rpm
holds exactly for every caller together, its price runs a budget out, its
approval gate opens with an approved subscription, and a tenant's privacy
rules read a JSON body only where the service opts in. Calls come as a bus
service sends them: envelopes with a ``rest`` call on ``sluice.v1.in.chat``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import msgspec
import pytest

from schemas import subjects
from schemas.control import Subscription
from schemas.rest import decode_service
from services import quota
from services.keys import hash_key
from tests.stack import PRIVATE_KEY, Stack

KEYS = ["sk-test-rest-a-0123456789", "sk-test-rest-b-0123456789"]
BUDGET_KEY = "sk-test-rest-budget-0123456789"
SERVICE_RPM = 12
PRICE = 1_000_000  # pico-USD a call: $0.000001

EXTRA = f"""
[[tenants]]
id = "restq"

[[keys]]
id = "rest-a"
tenant = "restq"
sha256 = "{hash_key(KEYS[0])}"

[[keys]]
id = "rest-b"
tenant = "restq"
sha256 = "{hash_key(KEYS[1])}"

[[keys]]
id = "rest-budget"
tenant = "restq"
sha256 = "{hash_key(BUDGET_KEY)}"
budget = {{{{ usd = "0.000003", period = "total" }}}}

[[services]]
slug = "limited"
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/@limited/rest/echo" }}}}]
rpm = {SERVICE_RPM}

[[services]]
slug = "priced"
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/@priced/rest/echo" }}}}]
price_pico_usd = {PRICE}

[[services]]
slug = "gated"
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/rest/echo" }}}}]
requires_approval = true

[[services]]
slug = "screened"
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/rest/echo" }}}}]
redact_json = true

[[services]]
slug = "plain"
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/rest/echo" }}}}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("rest-limits"), timeout_s=20, extra_config=EXTRA, replicas={"policy": 2})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def envelope(reply: str, service: str, method: str, path: str, body: bytes = b"") -> bytes:
    call = {"service": service, "method": method, "path": path, "body": body}
    if body:
        call["headers"] = [("content-type", "application/json")]
    return msgspec.msgpack.encode({"kind": "chat.request", "reply": reply, "api": "rest", "rest": call})


async def call_many(stack: Stack, calls: list[tuple[str, str, str, str, bytes]]) -> list[dict]:
    """Each ``(key, service, method, path, body)`` published at once; the
    last reply of each, with ``body`` the answer's bytes however they came."""
    nc = await stack.connect()
    try:

        async def one(key: str, service: str, method: str, path: str, body: bytes) -> dict:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish(
                subjects.IN_CHAT,
                envelope(inbox, service, method, path, body),
                headers={"Authorization": f"Bearer {key}"},
            )
            data = b""
            while True:
                reply = msgspec.msgpack.decode((await sub.next_msg(timeout=20)).data)
                data += reply.get("data", b"")
                if reply["kind"] in ("chat.final", "chat.failure"):
                    await sub.unsubscribe()
                    reply["body"] = data
                    return reply

        return await asyncio.gather(*(one(*c) for c in calls))
    finally:
        await nc.close()


async def service_created_ms(stack: Stack, key: str) -> int:
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_SERVICES)
        return decode_service((await kv.get(key)).value).created_at_ms
    finally:
        await nc.close()


async def put_subscription(stack: Stack, sub: Subscription) -> None:
    nc = await stack.connect("admin")
    try:
        kv = await nc.jetstream().key_value(subjects.KV_SUBSCRIPTIONS)
        await kv.put(sub.id, msgspec.msgpack.encode(sub))
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
    return stack.mock_stats()["by_upstream"].get(name, 0)


def test_a_services_rpm_holds_exactly_across_two_policy_replicas_and_callers(stack: Stack) -> None:
    # The burst must fall in one minute window of the service's counter.
    anchor = asyncio.run(service_created_ms(stack, "limited.v1"))
    _, left_ms = quota.minute_window(anchor, int(time.time() * 1000))
    if left_ms < 15_000:
        time.sleep(left_ms / 1000 + 0.5)
    before = upstream_calls(stack, "limited")
    calls = [(KEYS[i % 2], "limited", "GET", f"/items/{i}", b"") for i in range(3 * SERVICE_RPM)]
    replies = asyncio.run(call_many(stack, calls))
    ok = [r for r in replies if r["kind"] == "chat.final"]
    refused = [r for r in replies if r["kind"] == "chat.failure"]
    assert len(ok) == SERVICE_RPM, [(r["status"], r["message"]) for r in refused][:3]
    assert all(r["status"] == 429 and r["type"] == "rate_limit_error" for r in refused)
    assert all("service" in r["message"] and r["retry_after_s"] >= 1 for r in refused)
    # Both keys were admitted: the limit is the service's, not a key's.
    assert {r["key_id"] for r in ok} == {"rest-a", "rest-b"}
    # Each admitted call got its own answer: the echo of its own path.
    paths = {json.loads(r["body"])["path"].removeprefix("/@limited/rest/echo") for r in ok}
    assert len(paths) == SERVICE_RPM and paths <= {f"/items/{i}" for i in range(3 * SERVICE_RPM)}
    # A refused call never reached the service.
    deadline = time.monotonic() + 5
    while upstream_calls(stack, "limited") - before != SERVICE_RPM:
        assert time.monotonic() < deadline, upstream_calls(stack, "limited") - before
        time.sleep(0.1)


def test_a_services_price_runs_a_budget_out(stack: Stack) -> None:
    calls = [(BUDGET_KEY, "priced", "GET", f"/items/{i}", b"") for i in range(8)]
    replies = asyncio.run(call_many(stack, calls))
    ok = [r for r in replies if r["kind"] == "chat.final"]
    refused = [r for r in replies if r["kind"] == "chat.failure"]
    # $0.000003 at $0.000001 a call: three calls, whichever policy replica admitted them.
    assert len(ok) == 3 and len(refused) == 5, [r.get("message") for r in refused][:3]
    assert all(r["status"] == 429 and r["code"] == "insufficient_quota" for r in refused)
    assert all(r["cost_pico_usd"] == PRICE for r in ok)
    # Each call settled at its price: the counter is what was charged, once leases are back.
    time.sleep(2.5)
    assert asyncio.run(counter(stack, f"{subjects.QUOTA}.spend.key.rest-budget.total")) == 3 * PRICE


def test_a_gated_service_opens_to_a_tenant_with_an_approved_subscription(stack: Stack) -> None:
    (refused,) = asyncio.run(call_many(stack, [(KEYS[0], "gated", "GET", "/items/1", b"")]))
    assert (refused["status"], refused["code"]) == (403, "subscription_required")
    # Another tenant's approval opens nothing here.
    asyncio.run(put_subscription(stack, Subscription(id="s-other", tenant_id="demo", model="service:gated",
                                                     state="approved")))  # fmt: skip
    sub = Subscription(id="s-restq", tenant_id="restq", model="service:gated", state="approved")
    asyncio.run(put_subscription(stack, sub))
    deadline = time.monotonic() + 10
    while True:  # both policy replicas follow the bucket; either may take the call
        replies = asyncio.run(call_many(stack, [(KEYS[i % 2], "gated", "GET", "/items/1", b"") for i in range(4)]))
        if all(r["kind"] == "chat.final" for r in replies):
            break
        assert time.monotonic() < deadline, [r.get("code") for r in replies]
        time.sleep(0.2)
    assert json.loads(replies[0]["body"])["path"] == "/rest/echo/items/1"


def test_a_tenants_privacy_rules_read_a_json_body_only_where_the_service_opts_in(stack: Stack) -> None:
    email = "carol@example.com"
    body = json.dumps({"to": f"write to {email}", "n": 3}).encode()
    screened, plain = asyncio.run(
        call_many(
            stack, [(PRIVATE_KEY, "screened", "POST", "/notes", body), (PRIVATE_KEY, "plain", "POST", "/notes", body)]
        )
    )
    assert screened["kind"] == plain["kind"] == "chat.final", (screened, plain)
    seen = json.loads(json.loads(screened["body"])["body"])
    assert seen == {"to": "write to [EMAIL_1]", "n": 3}  # the service saw the placeholder
    assert json.loads(json.loads(plain["body"])["body"]) == {"to": f"write to {email}", "n": 3}


def test_a_service_that_is_not_there_and_a_malformed_call_are_refused(stack: Stack) -> None:
    replies = asyncio.run(
        call_many(stack, [(KEYS[0], "ghost", "GET", "/", b""), (KEYS[0], "plain", "GET", "/a/%2e%2e/b", b"")])
    )
    assert [(r["status"], r["code"]) for r in replies] == [(404, "service_not_found"), (400, "invalid_path")]
