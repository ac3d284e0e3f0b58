"""The admin API end to end: records made over HTTP reach every stage within
a second, roles keep tenants apart, and every change is audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from schemas import subjects
from schemas.control import decode_key, decode_tenant
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def admin(stack: Stack, method: str, path: str, key: str = ADMIN_KEY, **kwargs: object) -> httpx.Response:
    return httpx.request(
        method, f"{stack.admin_url}{path}", headers={"authorization": f"Bearer {key}"}, timeout=10, **kwargs
    )


def chat(stack: Stack, key: str, model: str = "demo-model") -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi [mock:chunks=2]"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Changes reach stages through KV watches: within a second, not at once."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change did not reach the stages in time"
        time.sleep(0.05)


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    err = resp.json()["error"]
    return resp.status_code, err["type"], err["code"]


_made = 0


def unique(prefix: str) -> str:
    global _made
    _made += 1
    return f"{prefix}-{_made}-{time.monotonic_ns() % 10**6}"


@pytest.fixture
def tenant(stack: Stack) -> Iterator[str]:
    name = unique("t")
    assert admin(stack, "POST", "/tenants", json={"id": name}).status_code == 201
    yield name


def new_key(stack: Stack, tenant: str, **fields: object) -> dict:
    resp = admin(stack, "POST", "/keys", json={"tenant": tenant, **fields})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_a_key_made_over_the_api_calls_models_within_a_second(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant, name="ci", metadata={"team": "search"})
    assert key["id"].startswith("key_") and key["secret"].startswith("sk-sluice-")
    until(lambda: chat(stack, key["secret"]).status_code == 200, timeout=1.5)
    shown = admin(stack, "GET", f"/keys/{key['id']}").json()
    assert "secret" not in shown and shown["metadata"] == {"team": "search"} and shown["tenant"] == tenant
    until(lambda: admin(stack, "GET", f"/keys/{key['id']}").json()["last_used_at"] is not None)
    assert key["id"] in {k["id"] for k in admin(stack, "GET", "/keys", params={"tenant": tenant}).json()}


def cached(stack: Stack, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": prompt}]},
        headers={"authorization": f"Bearer {key}", "cache-control": "max-age=60"},
        timeout=20,
    )


def test_a_tenants_cache_opt_in_and_a_keys_pin_right_are_set_over_the_api(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant, may_pin=True)["secret"]
    prompt = unique("cache me")
    assert "x-sluice-cache" not in cached(stack, key, prompt).headers  # not opted in yet
    bad = admin(stack, "PATCH", f"/tenants/{tenant}", json={"cache": {"max_age_s": 60, "default_max_age_s": 90}})
    assert error_of(bad)[0] == 400
    shown = admin(stack, "PATCH", f"/tenants/{tenant}", json={"cache": {"max_age_s": 120}}).json()
    assert shown["cache"]["max_age_s"] == 120 and shown["cache"].get("default_max_age_s", 0) == 0
    until(lambda: cached(stack, key, prompt).headers.get("x-sluice-cache") == "miss")
    assert cached(stack, key, prompt).headers["x-sluice-cache"] == "hit"
    assert admin(stack, "PATCH", f"/tenants/{tenant}", json={"cache": None}).json()["cache"] is None
    pinned = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}", "x-sluice-deployment": "demo-model"},
        timeout=20,
    )
    assert pinned.status_code == 200 and pinned.headers["x-sluice-deployment"] == "demo-model"


def test_a_tenant_opts_in_to_call_logs_over_the_api(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant)["secret"]
    too_big = admin(stack, "PATCH", f"/tenants/{tenant}", json={"call_log_max_bytes": 10**6})
    assert error_of(too_big)[0] == 400
    shown = admin(stack, "PATCH", f"/tenants/{tenant}", json={"call_log_max_bytes": 2048}).json()
    assert shown["call_log_max_bytes"] == 2048

    def logged() -> bool:
        request_id = chat(stack, key).headers["x-request-id"]
        stack.request_row(request_id)
        time.sleep(0.5)  # the call log comes in the same batch as the row
        return bool(stack.query("call_logs", request_id=request_id)["rows"])

    until(logged, timeout=15)


def test_rotation_keeps_the_old_secret_working_for_its_grace_only(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant)
    rotated = admin(stack, "POST", f"/keys/{key['id']}/rotate", json={"grace_seconds": 2}).json()
    assert rotated["id"] == key["id"] and rotated["secret"] != key["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    until(lambda: chat(stack, rotated["secret"]).status_code == 200)
    assert chat(stack, key["secret"]).status_code == 200
    until(lambda: chat(stack, key["secret"]).status_code == 401, timeout=4)
    assert error_of(chat(stack, key["secret"])) == (401, "authentication_error", "api_key_expired")
    assert chat(stack, rotated["secret"]).status_code == 200


def test_expired_and_disabled_keys_are_refused_with_their_reason(stack: Stack, tenant: str) -> None:
    expiring, disabled = new_key(stack, tenant), new_key(stack, tenant)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    assert admin(stack, "PATCH", f"/keys/{expiring['id']}", json={"expires_at": past}).status_code == 200
    assert admin(stack, "POST", f"/keys/{disabled['id']}/disable").json()["disabled"] is True
    until(lambda: chat(stack, expiring["secret"]).status_code == 401)
    assert error_of(chat(stack, expiring["secret"])) == (401, "authentication_error", "api_key_expired")
    until(lambda: chat(stack, disabled["secret"]).status_code == 401)
    assert error_of(chat(stack, disabled["secret"])) == (401, "authentication_error", "api_key_disabled")
    # The official SDK sees the same: an AuthenticationError.
    client = openai.OpenAI(base_url=stack.base_url, api_key=disabled["secret"], max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "hi"}])


def test_a_model_outside_the_keys_patterns_is_403(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant, models=["demo-*"])
    until(lambda: chat(stack, key["secret"]).status_code == 200)
    assert error_of(chat(stack, key["secret"], "other-model")) == (403, "permission_error", "model_not_allowed")


def test_subscription_approval_gates_a_model_until_approved(stack: Stack, tenant: str) -> None:
    boss = new_key(stack, tenant, role="tenant_admin")
    caller = new_key(stack, tenant)
    rule = admin(stack, "POST", "/approval-rules", json={"pattern": "gemini-*"}).json()
    try:
        until(lambda: chat(stack, caller["secret"], "gemini-model").status_code == 403)
        assert error_of(chat(stack, caller["secret"], "gemini-model"))[2] == "subscription_required"
        sub = admin(stack, "POST", "/subscriptions", boss["secret"], json={"model": "gemini-*"}).json()
        assert sub["state"] == "pending" and sub["tenant"] == tenant
        until(lambda: error_of(chat(stack, caller["secret"], "gemini-model"))[2] == "subscription_pending")
        resp = chat(stack, caller["secret"], "gemini-model")
        assert error_of(resp) == (403, "permission_error", "subscription_pending") and "pending" in resp.text
        # Only a gateway admin decides.
        assert admin(stack, "POST", f"/subscriptions/{sub['id']}/approve", boss["secret"]).status_code == 403
        rejected = admin(stack, "POST", f"/subscriptions/{sub['id']}/reject", json={"reason": "no budget yet"})
        assert rejected.json()["state"] == "rejected"
        until(lambda: error_of(chat(stack, caller["secret"], "gemini-model"))[2] == "subscription_rejected")
        assert "no budget yet" in chat(stack, caller["secret"], "gemini-model").json()["error"]["message"]
        assert admin(stack, "POST", f"/subscriptions/{sub['id']}/approve").json()["state"] == "approved"
        until(lambda: chat(stack, caller["secret"], "gemini-model").status_code == 200)
        assert admin(stack, "POST", f"/subscriptions/{sub['id']}/revoke", boss["secret"]).status_code == 200
        until(lambda: chat(stack, caller["secret"], "gemini-model").status_code == 403)
        trail = audit_actions(stack, sub["id"])
        assert trail == ["create", "reject", "approve", "revoke"]
    finally:
        admin(stack, "DELETE", f"/approval-rules/{rule['id']}")


def audit_actions(stack: Stack, record_id: str, count: int = 0) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        rows = stack.query("audit", minutes=60, limit=10_000)["rows"]
        actions = [r[2] for r in reversed(rows) if r[4] == record_id]
        if (count and len(actions) >= count) or (not count and actions and time.monotonic() > deadline - 17):
            return actions
        assert time.monotonic() < deadline, f"no audit rows for {record_id}"
        time.sleep(0.2)


def test_a_tenant_admin_never_sees_or_changes_another_tenants_records(stack: Stack, tenant: str) -> None:
    other = unique("other")
    assert admin(stack, "POST", "/tenants", json={"id": other}).status_code == 201
    theirs = new_key(stack, other)
    boss = new_key(stack, tenant, role="tenant_admin")["secret"]
    until(lambda: admin(stack, "GET", "/keys", boss).status_code == 200)
    assert {k["tenant"] for k in admin(stack, "GET", "/keys", boss).json()} == {tenant}
    assert [t["id"] for t in admin(stack, "GET", "/tenants", boss).json()] == [tenant]
    for method, path, body in [
        ("GET", f"/keys/{theirs['id']}", None),
        ("PATCH", f"/keys/{theirs['id']}", {"disabled": True}),
        ("POST", f"/keys/{theirs['id']}/rotate", {}),
        ("DELETE", f"/keys/{theirs['id']}", None),
        ("GET", f"/tenants/{other}", None),
    ]:
        resp = admin(stack, method, path, boss, json=body)
        assert error_of(resp) == (404, "not_found_error", "not_found"), (method, path, resp.text)
    assert admin(stack, "POST", "/keys", boss, json={"tenant": other}).status_code == 403
    assert admin(stack, "POST", "/keys", boss, json={"role": "gateway_admin"}).status_code == 403
    assert admin(stack, "POST", "/tenants", boss, json={"id": unique("x")}).status_code == 403
    assert admin(stack, "PATCH", f"/tenants/{tenant}", boss, json={"limits": {"rpm": 1}}).status_code == 403
    # Its own keys it manages; another tenant's key is untouched.
    mine = admin(stack, "POST", "/keys", boss, json={}).json()
    assert mine["tenant"] == tenant
    assert asyncio.run(read_key(stack, theirs["id"])).disabled is False
    # A deleted key is gone for everyone, its secret included.
    doomed = admin(stack, "POST", "/keys", boss, json={}).json()
    assert admin(stack, "DELETE", f"/keys/{doomed['id']}", boss).json() == {"id": doomed["id"], "deleted": True}
    assert error_of(admin(stack, "GET", f"/keys/{doomed['id']}"))[0] == 404
    assert error_of(admin(stack, "DELETE", f"/keys/{doomed['id']}"))[0] == 404
    until(lambda: chat(stack, doomed["secret"]).status_code == 401)
    # Usage: its own tenant's only.
    assert admin(stack, "GET", "/usage", boss, params={"tenant": other}).status_code == 403
    until(lambda: admin(stack, "GET", "/usage", boss).status_code == 200, timeout=15)
    seen = admin(stack, "GET", "/usage", boss).json()
    assert {r["tenant"] for r in seen["spend"]} <= {tenant} and {b["id"] for b in seen["budgets"]} <= {tenant}
    # Caller keys and no key at all get nothing.
    assert error_of(admin(stack, "GET", "/keys", DEMO_KEY)) == (403, "permission_error", "not_an_admin")
    assert httpx.get(f"{stack.admin_url}/keys").status_code == 401


async def read_key(stack: Stack, key_id: str):  # type: ignore[no-untyped-def]
    nc = await stack.connect("admin")
    try:
        entry = await (await nc.jetstream().key_value(subjects.KV_KEYS)).get(key_id)
        return decode_key(entry.value)
    finally:
        await nc.close()


async def read_tenant(stack: Stack, tenant_id: str):  # type: ignore[no-untyped-def]
    nc = await stack.connect("admin")
    try:
        entry = await (await nc.jetstream().key_value(subjects.KV_TENANTS)).get(tenant_id)
        return decode_tenant(entry.value)
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/keys", {"tenant": "no-such-tenant"}, 404),
        ("PATCH", "/tenants/{tenant}", {"budget": {"usd": "-1"}}, 400),
        ("PATCH", "/tenants/{tenant}", {"budget": {"usd": "ten dollars"}}, 400),
        ("PATCH", "/tenants/{tenant}", {"budget": {"usd": 5}}, 400),
        ("PATCH", "/tenants/{tenant}", {"limits": {"rpm": 0}}, 400),
        ("PATCH", "/tenants/{tenant}", {"limits": {"rpm": "many"}}, 400),
        ("PATCH", "/tenants/{tenant}", {"colour": "blue"}, 400),
        ("POST", "/tenants", {"id": "{tenant}"}, 409),
        ("POST", "/tenants", {"id": "has.dots"}, 400),
        ("POST", "/keys", {"tenant": "{tenant}", "expires_at": "2001-01-01T00:00:00Z"}, 400),
        ("POST", "/keys/nope/rotate", {"grace_seconds": -5}, 400),
        ("PATCH", "/tenants/demo", {"limits": {"rpm": 5}}, 409),
    ],
)
def test_bad_admin_input_is_a_clear_4xx_and_changes_nothing(
    stack: Stack, tenant: str, method: str, path: str, body: dict, status: int
) -> None:
    before = asyncio.run(read_tenant(stack, tenant))
    keys_before = len(admin(stack, "GET", "/keys").json())
    fill = {k: (v.replace("{tenant}", tenant) if isinstance(v, str) else v) for k, v in body.items()}
    resp = admin(stack, method, path.replace("{tenant}", tenant), json=fill)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["message"] and err["type"] and err["code"]
    assert asyncio.run(read_tenant(stack, tenant)) == before
    assert len(admin(stack, "GET", "/keys").json()) == keys_before


def test_malformed_and_oversized_bodies_are_refused(stack: Stack, tenant: str) -> None:
    resp = httpx.post(
        f"{stack.admin_url}/keys", content=b'{"tenant": ', headers={**ADMIN, "content-type": "application/json"}
    )
    assert error_of(resp)[:2] == (400, "invalid_request_error")
    big = {"tenant": tenant, "metadata": {"x": "y" * 400}, "name": "n" * 100, "models": ["m" * 120] * 64 * 10}
    resp = admin(stack, "POST", "/keys", json=big)
    assert resp.status_code in (400, 413) and resp.json()["error"]["type"] == (
        "invalid_request_error" if resp.status_code == 400 else "request_too_large"
    )
    resp = httpx.post(
        f"{stack.admin_url}/keys",
        content=b"{" + b" " * 70_000 + b"}",
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert error_of(resp)[0] == 413
    assert error_of(admin(stack, "GET", "/nothing-here"))[0] == 404


def test_the_openapi_document_describes_the_admin_api(stack: Stack) -> None:
    doc = httpx.get(f"{stack.admin_url}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/admin/v1/keys",
        "/admin/v1/keys/{key_id}/rotate",
        "/admin/v1/subscriptions/{subscription_id}/approve",
    ):
        assert path in doc["paths"]
    assert "KeyCreate" in doc["components"]["schemas"]


def test_privacy_rules_set_over_the_api_take_effect_and_are_versioned(stack: Stack, tenant: str) -> None:
    key = new_key(stack, tenant)["secret"]
    bad = admin(stack, "PATCH", f"/tenants/{tenant}", json={"privacy": {"detectors": {"passport": "mask"}}})
    assert error_of(bad) == (400, "invalid_request_error", "invalid_privacy_rules")
    rules = {"detectors": {"email": "block"}}
    first = admin(stack, "PATCH", f"/tenants/{tenant}", json={"privacy": rules}).json()
    again = admin(stack, "PATCH", f"/tenants/{tenant}", json={"privacy": rules}).json()
    assert again["privacy"]["version"] == first["privacy"].get("version", 1) + 1  # 1 is left out as the default

    def refused() -> bool:
        resp = httpx.post(
            f"{stack.base_url}/chat/completions",
            json={"model": "demo-model", "messages": [{"role": "user", "content": "mail x@example.com"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
        )
        return resp.status_code == 400 and resp.json()["error"]["code"] == "blocked_email"

    until(refused, timeout=2.0)  # within a second or so: stages follow the record through KV
    assert admin(stack, "PATCH", f"/tenants/{tenant}", json={"privacy": None}).json().get("privacy") is None
    until(lambda: not refused(), timeout=2.0)
