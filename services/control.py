"""The admin API's rules, without I/O: who may touch which record, and what
each change makes of it.

A gateway admin manages everything. A tenant admin manages its own tenant's
keys and subscriptions and reads its own tenant; another tenant's records do
not exist for it (404, so it cannot even learn their ids). A caller key only
calls models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from schemas.control import ApiKey, Budget, Period, Role, Secret, Subscription, SubscriptionState
from schemas.errors import InvalidRequest, PermissionDenied, RecordConflict, RecordNotFound
from schemas.ids import new_id
from services import pricing
from services.keys import hash_key, new_key

# Longest grace a rotation may give the old secret.
MAX_GRACE_S = 30 * 86_400


class Actor(msgspec.Struct, frozen=True):
    key_id: str
    role: Role
    tenant_id: str

    @property
    def is_gateway_admin(self) -> bool:
        return self.role == "gateway_admin"


def actor_of(record: ApiKey) -> Actor:
    if record.role == "caller":
        raise PermissionDenied(
            f"Key {record.id!r} may call models but not manage the gateway: use a gateway or tenant admin key.",
            code="not_an_admin",
        )
    return Actor(key_id=record.id, role=record.role, tenant_id=record.tenant_id)


def require_gateway_admin(actor: Actor, what: str) -> None:
    if not actor.is_gateway_admin:
        raise PermissionDenied(f"Only a gateway admin may {what}.", code="gateway_admin_only")


def can_see(actor: Actor, tenant_id: str) -> bool:
    return actor.is_gateway_admin or actor.tenant_id == tenant_id


def require_visible(actor: Actor, tenant_id: str, kind: str, record_id: str) -> None:
    """Another tenant's record is reported missing, exactly as a missing one is."""
    if not can_see(actor, tenant_id):
        raise RecordNotFound(f"No {kind} {record_id!r}.")


def tenant_asked_for(actor: Actor, asked: str | None) -> str:
    """The tenant a request concerns: what a gateway admin names (it must name
    one), and for a tenant admin its own (naming another is refused)."""
    if actor.is_gateway_admin:
        if not asked:
            raise InvalidRequest("'tenant' is required.", code="missing_tenant")
        return asked
    if asked and asked != actor.tenant_id:
        raise PermissionDenied(f"A tenant admin manages only its own tenant ({actor.tenant_id!r}).")
    return actor.tenant_id


def check_role_grant(actor: Actor, role: Role) -> None:
    if role == "gateway_admin" and not actor.is_gateway_admin:
        raise PermissionDenied("Only a gateway admin may make gateway admin keys.", code="gateway_admin_only")


def budget_of(usd: str, period: Period) -> Budget:
    try:
        return Budget(limit_pico_usd=pricing.usd_to_pico(usd), period=period)
    except ValueError as exc:
        raise InvalidRequest(f"budget.usd: {exc}", code="invalid_budget") from None


def ms_of(when: dt.datetime | None) -> int:
    if when is None:
        return 0
    if when.tzinfo is None:
        raise InvalidRequest("Times need a timezone, e.g. 2026-12-31T00:00:00Z.", code="invalid_time")
    return int(when.timestamp() * 1000)


def time_of(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms else None


def new_key_record(key: ApiKey, now_ms: int) -> tuple[ApiKey, str]:
    """``key`` filled with a fresh public id and secret; the secret, to show once."""
    secret = new_key()
    record = msgspec.structs.replace(
        key,
        id=f"key_{new_id().lower()}",
        secrets=[Secret(sha256=hash_key(secret))],
        created_at_ms=now_ms,
        owner="api",
    )
    return record, secret


def rotate(record: ApiKey, grace_s: int, now_ms: int) -> tuple[ApiKey, str]:
    """A new secret; the ones in use keep working ``grace_s`` more seconds
    (none, with 0). Secrets whose grace already ended are dropped."""
    if not 0 <= grace_s <= MAX_GRACE_S:
        raise InvalidRequest(f"grace_seconds must be between 0 and {MAX_GRACE_S}.", code="invalid_grace")
    secret = new_key()
    until = now_ms + grace_s * 1000
    kept = []
    if grace_s:
        for old in record.secrets:
            if old.expires_at_ms and old.expires_at_ms <= now_ms:
                continue
            ends = min(old.expires_at_ms, until) if old.expires_at_ms else until
            kept.append(Secret(sha256=old.sha256, expires_at_ms=ends))
    return msgspec.structs.replace(record, secrets=[Secret(sha256=hash_key(secret)), *kept]), secret


def grace_ends_ms(record: ApiKey, now_ms: int) -> int:
    """When the last rotated-out secret stops working; 0 when none is in grace."""
    return max((s.expires_at_ms for s in record.secrets if s.expires_at_ms > now_ms), default=0)


def require_api_owned(owner: str, kind: str, record_id: str) -> None:
    """A record the config file made is changed in the file: a change here
    would be undone by the next start."""
    if owner != "api":
        raise RecordConflict(
            f"{kind} {record_id!r} comes from the config file: change it there.", code="owned_by_config"
        )


# A decision on a subscription -> (the states it may move one from, the state it makes).
SUBSCRIPTION_MOVES: dict[str, tuple[tuple[SubscriptionState, ...], SubscriptionState]] = {
    "approve": (("pending", "rejected", "revoked"), "approved"),
    "reject": (("pending",), "rejected"),
    "revoke": (("approved", "pending"), "revoked"),
}


def new_subscription(
    tenant_id: str,
    model: str,
    requested_by: str,
    now_ms: int,
    existing: Iterable[Subscription],
    request_reason: str = "",
) -> Subscription:
    """A pending subscription of ``tenant_id`` to ``model``; one already
    pending or approved for the same name is a conflict (the admin API and
    the portal alike)."""
    for s in existing:
        if s.tenant_id == tenant_id and s.model == model and s.state in ("pending", "approved"):
            raise RecordConflict(f"Tenant {tenant_id!r} already has subscription {s.id!r} to {model!r}.")
    return Subscription(
        id=f"sub_{new_id().lower()}",
        tenant_id=tenant_id,
        model=model,
        request_reason=request_reason,
        requested_by=requested_by,
        created_at_ms=now_ms,
    )


def decided(before: Subscription, decision: str, reason: str, decided_by: str, now_ms: int) -> Subscription:
    """The subscription after a decision ("approve", "reject", "revoke"), or
    a conflict when its state does not allow that decision."""
    sources, result = SUBSCRIPTION_MOVES[decision]
    if before.state not in sources:
        raise RecordConflict(f"Subscription {before.id!r} is {before.state}: it cannot be {decision}d.")
    return msgspec.structs.replace(before, state=result, reason=reason, decided_by=decided_by, decided_at_ms=now_ms)
