"""Records -> what the admin API answers (no secret digest ever leaves)."""

from __future__ import annotations

from schemas.admin import (
    ApprovalRuleOut,
    BudgetIn,
    BudgetOut,
    CacheIn,
    KeyOut,
    KeyWithSecret,
    LimitsIn,
    SubscriptionOut,
    TenantOut,
)
from schemas.control import ApiKey, ApprovalRule, Budget, CachePolicy, Limits, Subscription, Tenant
from services import control, pricing
from services.control import time_of


def limits_out(limits: Limits) -> LimitsIn:
    return LimitsIn(rpm=limits.rpm, tpm=limits.tpm, max_parallel=limits.max_parallel)


def limits_in(limits: LimitsIn) -> Limits:
    return Limits(rpm=limits.rpm, tpm=limits.tpm, max_parallel=limits.max_parallel)


def budget_out(budget: Budget | None) -> BudgetOut | None:
    if budget is None:
        return None
    return BudgetOut(usd=format(pricing.pico_to_usd(budget.limit_pico_usd).normalize(), "f"), period=budget.period)


def budget_in(budget: BudgetIn | None) -> Budget | None:
    return None if budget is None else control.budget_of(budget.usd, budget.period)


def cache_in(cache: CacheIn | None) -> CachePolicy | None:
    return None if cache is None else CachePolicy(cache.max_age_s, cache.default_max_age_s)


def tenant_out(t: Tenant) -> TenantOut:
    return TenantOut(
        id=t.id,
        limits=limits_out(t.limits),
        budget=budget_out(t.budget),
        metadata=t.metadata,
        cache=CacheIn(t.cache.max_age_s, t.cache.default_max_age_s) if t.cache else None,
        created_at=time_of(t.created_at_ms),
        owner=t.owner,
        job_concurrency=t.job_concurrency,
        batch_concurrency=t.batch_concurrency,
        files_max_bytes=t.files_max_bytes,
        files_total_bytes=t.files_total_bytes,
        files_max_count=t.files_max_count,
        call_log_max_bytes=t.call_log_max_bytes,
        privacy=t.privacy,
        mcp_tools=t.mcp_tools,
        mcp_safety=t.mcp_safety,
    )


def key_out(k: ApiKey, last_used_ms: int, now_ms: int) -> KeyOut:
    return KeyOut(
        id=k.id,
        tenant=k.tenant_id,
        name=k.name,
        role=k.role,
        models=k.models,
        limits=limits_out(k.limits),
        budget=budget_out(k.budget),
        metadata=k.metadata,
        disabled=k.disabled,
        may_pin=k.may_pin,
        expires_at=time_of(k.expires_at_ms),
        created_at=time_of(k.created_at_ms),
        last_used_at=time_of(last_used_ms),
        previous_secret_expires_at=time_of(control.grace_ends_ms(k, now_ms)),
        owner=k.owner,
        mcp_tools=k.mcp_tools,
    )


def key_with_secret(k: ApiKey, secret: str, now_ms: int) -> KeyWithSecret:
    out = key_out(k, 0, now_ms)
    return KeyWithSecret(**{f: getattr(out, f) for f in out.__struct_fields__}, secret=secret)


def subscription_out(s: Subscription) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id,
        tenant=s.tenant_id,
        model=s.model,
        state=s.state,
        reason=s.reason,
        requested_by=s.requested_by,
        decided_by=s.decided_by,
        created_at=time_of(s.created_at_ms),
        decided_at=time_of(s.decided_at_ms),
    )


def approval_rule_out(rule_id: str, r: ApprovalRule) -> ApprovalRuleOut:
    return ApprovalRuleOut(id=rule_id, pattern=r.pattern, created_at=time_of(r.created_at_ms))
