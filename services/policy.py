"""Policy: who is calling, may they call this model, and which stages follow."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from schemas import subjects
from schemas.control import ApiKey, ApprovalRule, ModelRoute, Subscription, Tenant
from schemas.envelope import Envelope
from schemas.errors import (
    AuthenticationFailed,
    InvalidRequest,
    KeyExpired,
    PermissionDenied,
    SubscriptionPending,
    SubscriptionRejected,
)
from services import privacy, task_policy
from services.keys import hash_key, key_from_header


def check_body(env: Envelope) -> None:
    """A direct NATS caller must send exactly one body, and one that names a
    model; a task (an image, audio, moderation or rerank request) within
    ``task_policy``'s bounds. (An MCP call, ``api`` "mcp", is checked by
    ``mcp_policy.check_call``; a REST call, ``api`` "rest", by
    ``rest_policy.check_call``.)"""
    if env.tool is not None:
        raise InvalidRequest("A request that carries 'tool' (an MCP call) is an MCP request ('api': 'mcp').")
    if env.rest is not None:
        raise InvalidRequest("A request that carries 'rest' (a REST call) is a REST request ('api': 'rest').")
    if sum(part is not None for part in (env.body, env.embeddings, env.task)) != 1:
        raise InvalidRequest("An envelope carries exactly one of 'body' (chat), 'embeddings' and 'task'.")
    if env.task is not None:
        task_policy.check(env.task, env.api)
    elif env.api in task_policy.TASK_APIS:
        raise InvalidRequest(f"A request of api {env.api!r} carries its request in 'task'.")
    # A Responses request's input may hold only items the unified body leaves
    # out (a compaction, OpenAI's tools' items): an OpenAI deployment gets the
    # client's own body, and another family's upstream says what it makes of none.
    if env.body is not None and not env.body.messages and not (env.api == "responses" and env.raw):
        raise InvalidRequest("'messages' must contain at least one message.")
    if not env.model:
        raise InvalidRequest("'model' is required.")


def authenticate(header: str | None, by_hash: Mapping[str, ApiKey], now_ms: int) -> ApiKey:
    key = key_from_header(header)
    if key is None:
        raise AuthenticationFailed("Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key")
    digest = hash_key(key)
    record = by_hash.get(digest)
    if record is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    check_usable(record, now_ms)
    for secret in record.secrets:
        if secret.sha256 == digest and secret.expires_at_ms and now_ms >= secret.expires_at_ms:
            raise KeyExpired(f"This secret of API key {record.id!r} was rotated out and its grace period has ended.")
    return record


def key_by_id(key_id: str, by_id: Mapping[str, ApiKey], now_ms: int) -> ApiKey:
    """The key a durable job was submitted with, named by its id: the job
    stores the id, never the secret, and is run under the key as it is now
    (disabled or expired since: the job is refused)."""
    record = by_id.get(key_id)
    if record is None:
        raise AuthenticationFailed(f"API key {key_id!r} no longer exists.", code="api_key_deleted")
    check_usable(record, now_ms)
    return record


def check_usable(record: ApiKey, now_ms: int) -> None:
    if record.disabled:
        raise AuthenticationFailed(f"API key {record.id!r} is disabled.", code="api_key_disabled")
    if record.expires_at_ms and now_ms >= record.expires_at_ms:
        raise KeyExpired(f"API key {record.id!r} has expired.")


def may_call(record: ApiKey, model: str) -> bool:
    return any(fnmatchcase(model, pattern) for pattern in record.models)


def check_model(record: ApiKey, model: str, route: ModelRoute | None = None) -> None:
    """A key may call a model by the name it asked for or by its group's own
    name (an alias is another name for the group)."""
    if not may_call(record, model) and (route is None or not may_call(record, route.name)):
        raise PermissionDenied(f"Key {record.id!r} may not call model {model!r}.")


def check_pin(record: ApiKey, pin: str) -> None:
    if pin and not record.may_pin:
        raise PermissionDenied(
            f"Key {record.id!r} may not choose a deployment (x-sluice-deployment).", code="pin_not_allowed"
        )


def needs_approval(model: str, route: ModelRoute | None, rules: Iterable[ApprovalRule]) -> bool:
    if route is not None and route.requires_approval:
        return True
    names = (model, route.name) if route is not None else (model,)
    return any(fnmatchcase(name, rule.pattern) for rule in rules for name in names)


def check_subscription(tenant_id: str, model: str, subscriptions: Iterable[Subscription]) -> None:
    """A model that needs approval is callable once one of the tenant's
    subscriptions that covers it is approved."""
    mine = [s for s in subscriptions if s.tenant_id == tenant_id and fnmatchcase(model, s.model)]
    if any(s.state == "approved" for s in mine):
        return
    pending = [s for s in mine if s.state == "pending"]
    if pending:
        raise SubscriptionPending(
            f"Model {model!r} needs an approved subscription; subscription {pending[0].id!r}"
            " is pending approval by a gateway admin."
        )
    rejected = [s for s in mine if s.state == "rejected"]
    if rejected:
        reason = f": {rejected[0].reason}" if rejected[0].reason else ""
        raise SubscriptionRejected(f"Subscription {rejected[0].id!r} to {model!r} was rejected{reason}.")
    raise PermissionDenied(
        f"Model {model!r} needs an approved subscription; request one with POST /admin/v1/subscriptions.",
        code="subscription_required",
    )


def build_slip(tenant: Tenant | None, *, cached: bool = False) -> list[str]:
    """The hops after policy. A stage a tenant does not use is not on its
    slip; the cache is after routing, which names the group it keys on."""
    slip = []
    if tenant is not None and privacy.rules_of(tenant) is not None:
        slip.append(subjects.STAGE_REDACT)
    slip.append(subjects.STAGE_ROUTE)
    if cached:
        slip.append(subjects.STAGE_CACHE)
    slip.append(subjects.STAGE_CALL)
    return slip
