from __future__ import annotations

import pytest

from schemas import subjects
from schemas.chat import ChatBody, EmbeddingsBody, Message
from schemas.control import ApiKey, ApprovalRule, ModelRoute, RedactionRule, Secret, Subscription, Tenant
from schemas.envelope import Deployment, Envelope
from schemas.errors import (
    AuthenticationFailed,
    InvalidRequest,
    KeyExpired,
    ModelNotFound,
    PermissionDenied,
    SubscriptionPending,
    SubscriptionRejected,
)
from services import policy, routing
from services.keys import hash_key, key_from_header, new_key

KEY = new_key()
OLD, NEW = new_key(), new_key()
NOW_MS = 1_800_000_000_000
ROTATED = ApiKey(
    id="k3",
    tenant_id="t1",
    secrets=[Secret(hash_key(NEW)), Secret(hash_key(OLD), expires_at_ms=NOW_MS + 1000)],
)
KEYS = {
    hash_key(KEY): ApiKey(id="k1", tenant_id="t1", models=["gpt-*", "demo-model"]),
    hash_key("sk-off"): ApiKey(id="k2", tenant_id="t1", disabled=True),
    hash_key("sk-old"): ApiKey(id="k4", tenant_id="t1", expires_at_ms=NOW_MS),
    hash_key(NEW): ROTATED,
    hash_key(OLD): ROTATED,
}


def test_bearer_header_is_parsed() -> None:
    assert key_from_header(f"Bearer {KEY}") == KEY
    assert key_from_header(f"bearer  {KEY} ") == KEY
    assert key_from_header(KEY) == KEY
    assert key_from_header(None) is None and key_from_header("Bearer ") is None


def test_valid_key_resolves_tenant() -> None:
    assert policy.authenticate(f"Bearer {KEY}", KEYS, NOW_MS).tenant_id == "t1"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("", "missing_api_key"),
        ("Bearer sk-nope", "invalid_api_key"),
        ("Bearer sk-off", "api_key_disabled"),
        ("Bearer sk-old", "api_key_expired"),
    ],
)
def test_missing_wrong_disabled_or_expired_key_is_401(header: str | None, code: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        policy.authenticate(header, KEYS, NOW_MS)
    assert info.value.status == 401 and info.value.code == code


def test_a_rotated_secret_works_until_its_grace_ends() -> None:
    assert policy.authenticate(f"Bearer {OLD}", KEYS, NOW_MS + 999) is ROTATED
    assert policy.authenticate(f"Bearer {NEW}", KEYS, NOW_MS + 10**9) is ROTATED
    with pytest.raises(KeyExpired):
        policy.authenticate(f"Bearer {OLD}", KEYS, NOW_MS + 1000)


def test_approval_needs_an_approved_subscription_of_the_callers_tenant() -> None:
    dep = Deployment(name="d", provider="openai", base_url="http://x", upstream_model="gpt-4o")
    gated = ModelRoute(name="big", deployments=[dep], requires_approval=True)
    assert policy.needs_approval("big", gated, [])
    assert policy.needs_approval("gpt-5-pro", None, [ApprovalRule(pattern="gpt-5*")])
    assert not policy.needs_approval("gpt-4o", None, [ApprovalRule(pattern="gpt-5*")])
    subs = [
        Subscription(id="s1", tenant_id="t1", model="gpt-5*", state="pending"),
        Subscription(id="s2", tenant_id="t2", model="gpt-5*", state="approved"),
        Subscription(id="s3", tenant_id="t3", model="gpt-5*", state="rejected", reason="no budget"),
    ]
    with pytest.raises(SubscriptionPending, match="s1"):
        policy.check_subscription("t1", "gpt-5-pro", subs)
    policy.check_subscription("t2", "gpt-5-pro", subs)
    with pytest.raises(SubscriptionRejected, match="no budget") as info:
        policy.check_subscription("t3", "gpt-5-pro", subs)
    assert info.value.status == 403
    with pytest.raises(PermissionDenied) as denied:
        policy.check_subscription("t4", "gpt-5-pro", subs)
    assert denied.value.code == "subscription_required"


def test_model_scope_is_enforced() -> None:
    record = KEYS[hash_key(KEY)]
    policy.check_model(record, "gpt-4o")
    policy.check_model(record, "demo-model")
    with pytest.raises(PermissionDenied):
        policy.check_model(record, "claude-3")


def test_slip_skips_redaction_for_tenants_without_rules() -> None:
    assert policy.build_slip(Tenant(id="t")) == [subjects.STAGE_ROUTE, subjects.STAGE_CALL]
    careful = Tenant(id="t", redaction_rules=[RedactionRule(name="x", pattern="x")])
    assert policy.build_slip(careful)[0] == subjects.STAGE_REDACT


def test_routing_resolves_names_and_aliases_or_404s() -> None:
    dep = Deployment(name="d", provider="openai", base_url="http://x", upstream_model="gpt-4o")
    group = ModelRoute(name="big", deployments=[dep], aliases=["fast", "other"])
    other = ModelRoute(name="other", deployments=[dep])
    routes = routing.routes_by_name({"big": group, "other": other})
    assert routing.resolve(routes, "big") is group and routing.resolve(routes, "fast") is group
    assert routing.resolve(routes, "other") is other  # a group's own name wins over an alias
    with pytest.raises(ModelNotFound) as info:
        routing.resolve(routes, "missing")
    assert info.value.status == 404
    routes.changed("big", group, ModelRoute(name="big", deployments=[dep]))  # the alias is gone
    with pytest.raises(ModelNotFound):
        routing.resolve(routes, "fast")


def test_an_alias_is_callable_by_a_key_allowed_its_group() -> None:
    dep = Deployment(name="d", provider="openai", base_url="http://x", upstream_model="gpt-4o")
    group = ModelRoute(name="gpt-4o", deployments=[dep], aliases=["fast"])
    record = KEYS[hash_key(KEY)]  # may call gpt-* and demo-model
    policy.check_model(record, "fast", group)
    with pytest.raises(PermissionDenied):
        policy.check_model(record, "fast", None)
    with pytest.raises(PermissionDenied) as info:
        policy.check_pin(record, "d")
    assert info.value.code == "pin_not_allowed"
    policy.check_pin(record, "")


@pytest.mark.parametrize(
    "fields",
    [
        {},  # no body at all
        {
            "body": ChatBody(model="m", messages=[Message(role="user", content="hi")]),
            "embeddings": EmbeddingsBody(model="m", input="hi"),
        },  # both
        {"body": ChatBody(model="m", messages=[])},
        {"body": ChatBody(model="m", messages=[]), "api": "responses"},  # and no client body
        {"body": ChatBody(model="m", messages=[]), "api": "chat", "raw": b'{"messages": []}'},
        {"embeddings": EmbeddingsBody(model="", input="hi")},
    ],
)
def test_envelope_must_carry_exactly_one_usable_body(fields: dict) -> None:
    with pytest.raises(InvalidRequest):
        policy.check_body(Envelope(reply="r", **fields))


def test_a_responses_request_of_items_only_openai_reads_goes_on() -> None:
    # Its unified body has no message; an OpenAI deployment gets the client's body.
    raw = b'{"model": "m", "input": [{"type": "compaction", "encrypted_content": "x"}]}'
    policy.check_body(Envelope(reply="r", body=ChatBody(model="m", messages=[]), api="responses", raw=raw))


def test_envelope_model_and_stream_come_from_its_body() -> None:
    chat = Envelope(reply="r", body=ChatBody(model="c", messages=[Message(role="user", content="x")], stream=True))
    embed = Envelope(reply="r", embeddings=EmbeddingsBody(model="e", input="x"))
    policy.check_body(chat)
    policy.check_body(embed)
    assert (chat.model, chat.stream, embed.model, embed.stream) == ("c", True, "e", False)


def test_a_models_mode_is_enforced_where_the_catalog_knows_it() -> None:
    embed = Deployment(
        name="e", provider="openai", base_url="http://x", upstream_model="u", catalog_model="text-embedding-3-small"
    )
    chat = Deployment(name="c", provider="openai", base_url="http://x", upstream_model="u", catalog_model="gpt-4o")
    unknown = Deployment(name="u", provider="openai", base_url="http://x", upstream_model="u")
    routes = routing.routes_by_name({r.name: ModelRoute(name=r.name, deployments=[r]) for r in (embed, chat, unknown)})
    assert routing.resolve(routes, "e", "embeddings").deployments == [embed]
    assert routing.resolve(routes, "c", "messages").deployments == [chat]
    with pytest.raises(InvalidRequest, match="an embeddings model; call it on /v1/embeddings") as info:
        routing.resolve(routes, "e", "chat")
    assert info.value.status == 400 and info.value.code == "model_mode_mismatch"
    with pytest.raises(InvalidRequest, match="chat model"):
        routing.resolve(routes, "c", "embeddings")
    assert routing.resolve(routes, "u", "embeddings") is routing.resolve(routes, "u", "chat")
