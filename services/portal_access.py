"""Access to an API through the portal, without I/O: the name a
subscription gives it, whether it needs approval, where the person's tenant
stands, and the decisions of the approval queue.

The names and rules are the ones the gateway enforces, so what the portal
shows is what a call meets:

* a model group needs approval when the group says so or an approval rule
  matches it (``policy.needs_approval``), and the subscription names the
  group (``workers/policy.py`` checks the group's name);
* a prompt API when its record says so, under ``apis/<slug>``
  (``prompt_api.check_caller``);
* an MCP server under ``mcp:<server>`` (``mcp_access.approval_name``);
* a REST service under ``service:<slug>``, every version alike
  (``schemas.rest.subscription_name``).

Approval rules name models only: the other kinds carry their own flag.
A subscription is always made pending, as the admin API makes it; only an
API that needs approval is offered one (for any other it would change
nothing).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Literal

import msgspec

from schemas.control import ApprovalRule, ModelRoute, Subscription
from schemas.errors import InvalidRequest
from schemas.rest import subscription_name as service_subscription_name
from services import control, policy
from services.mcp_access import approval_name
from services.portal_scope import Who, clean_text, require_admin, require_tenant, require_visible

ApiKind = Literal["model", "prompt", "service", "mcp"]
# Where a tenant stands with an API: "open" needs no subscription; "none"
# needs one and has none; else the state of the subscription that counts.
Standing = Literal["open", "none", "pending", "approved", "rejected", "revoked"]
Decision = Literal["approve", "reject", "revoke"]
DECISIONS: tuple[Decision, ...] = ("approve", "reject", "revoke")
MAX_REASON = 1000


def subscription_name(kind: ApiKind, name: str) -> str:
    """What a subscription to the API names (``name``: a model group's own
    name, a prompt API's slug, an MCP server's name, a service's slug)."""
    if kind == "model":
        return name
    if kind == "prompt":
        return f"apis/{name}"
    if kind == "mcp":
        return approval_name(name)
    return service_subscription_name(name)


def model_needs_approval(route: ModelRoute, rules: Iterable[ApprovalRule]) -> bool:
    return policy.needs_approval(route.name, route, rules)


class Access(msgspec.Struct, frozen=True):
    """Where the person's tenant stands with one API, as its page shows it."""

    name: str
    needs_approval: bool
    standing: Standing
    # The decider's reason, or the requester's while pending.
    reason: str = ""
    request_reason: str = ""
    subscription_id: str = ""
    # A form to ask for access is offered.
    may_subscribe: bool = False


_RANK = {"approved": 0, "pending": 1, "rejected": 2, "revoked": 3}


def standing_of(tenant_id: str, name: str, subscriptions: Iterable[Subscription]) -> Subscription | None:
    """The subscription that decides a call, as policy reads them: any
    approved one that covers the name, else a pending one, else the latest
    refusal."""
    mine = [s for s in subscriptions if tenant_id and s.tenant_id == tenant_id and fnmatchcase(name, s.model)]
    if not mine:
        return None
    return min(mine, key=lambda s: (_RANK.get(s.state, 9), -s.created_at_ms, s.id))


def access_of(who: Who, name: str, needs_approval: bool, subscriptions: Iterable[Subscription]) -> Access:
    if not needs_approval:
        return Access(name=name, needs_approval=False, standing="open")
    sub = standing_of(who.tenant_id, name, subscriptions)
    # A gateway admin has no tenant to subscribe for.
    can_ask = bool(who.tenant_id)
    if sub is None:
        return Access(name=name, needs_approval=True, standing="none", may_subscribe=can_ask)
    return Access(
        name=name,
        needs_approval=True,
        standing=sub.state,
        reason=sub.reason,
        request_reason=sub.request_reason,
        subscription_id=sub.id,
        may_subscribe=can_ask and sub.state in ("rejected", "revoked"),
    )


def subscribe(
    who: Who, name: str, needs_approval: bool, reason: str, subscriptions: Iterable[Subscription], now_ms: int
) -> Subscription:
    """A pending subscription of the person's tenant, asked with a reason."""
    tenant_id = require_tenant(who, "subscribe to an API")
    if not needs_approval:
        raise InvalidRequest(f"{name!r} needs no subscription: it is open to your tenant.", code="no_approval_needed")
    why = clean_text(reason, "reason", MAX_REASON, required=True, lines=True)
    return control.new_subscription(tenant_id, name, who.user_id, now_ms, subscriptions, request_reason=why)


def visible(who: Who, subscriptions: Iterable[Subscription]) -> list[Subscription]:
    """The subscriptions the person may see, newest first."""
    return sorted((s for s in subscriptions if who.sees_tenant(s.tenant_id)), key=lambda s: (-s.created_at_ms, s.id))


def decide(who: Who, before: Subscription, decision: str, reason: str, now_ms: int) -> Subscription:
    """A tenant admin's (their tenant's) or a gateway admin's decision. The
    subscription of another tenant is missing for a tenant admin; a
    developer decides nothing."""
    # Whether the person may see it comes first: an error about the form's
    # words would confirm another tenant's subscription exists.
    require_visible(who, before.tenant_id, "subscription", before.id)
    require_admin(who, "decide subscriptions")
    if decision not in DECISIONS:
        raise InvalidRequest(f"decision must be one of {', '.join(DECISIONS)}.", code="invalid_decision")
    why = clean_text(reason, "reason", MAX_REASON, required=decision == "reject", lines=True)
    return control.decided(before, decision, why, who.user_id, now_ms)
