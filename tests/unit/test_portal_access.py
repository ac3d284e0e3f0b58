"""The portal's access rules: subscription names as the gateway checks them,
where a tenant stands, who may ask and who decides."""

from __future__ import annotations

import pytest

from schemas.control import ApprovalRule, Deployment, ModelRoute, Subscription
from schemas.errors import InvalidRequest, PermissionDenied, RecordConflict, RecordNotFound
from services import control, policy
from services.portal_access import access_of, decide, model_needs_approval, standing_of, subscribe, subscription_name
from services.portal_scope import Who, clean_text

DEV = Who(user_id="usr_dev", role="developer", tenant_id="acme")
ADMIN = Who(user_id="usr_adm", role="tenant_admin", tenant_id="acme")
OTHER_ADMIN = Who(user_id="usr_oth", role="tenant_admin", tenant_id="globex")
ROOT = Who(user_id="usr_root", role="gateway_admin")


def sub(sid: str, model: str, state: str = "pending", tenant: str = "acme", at: int = 1, **kw: object) -> Subscription:
    return Subscription(id=sid, tenant_id=tenant, model=model, state=state, created_at_ms=at, **kw)  # type: ignore[arg-type]


def test_names_are_the_ones_the_gateway_checks() -> None:
    assert subscription_name("model", "big") == "big"
    assert subscription_name("prompt", "summarize") == "apis/summarize"
    assert subscription_name("mcp", "github") == "mcp:github"
    assert subscription_name("service", "billing") == "service:billing"
    # What the portal makes is what policy lets through once approved.
    approved = [sub("s1", subscription_name("service", "billing"), "approved")]
    policy.check_subscription("acme", "service:billing", approved)


def test_a_model_needs_approval_by_its_flag_or_a_rule_on_its_group_name() -> None:
    route = ModelRoute(
        name="big",
        deployments=[Deployment(name="d", provider="mock", base_url="http://127.0.0.1:1", upstream_model="m")],
    )
    assert not model_needs_approval(route, [])
    assert model_needs_approval(route, [ApprovalRule(pattern="bi*")])
    gated = ModelRoute(name="small", deployments=route.deployments, requires_approval=True)
    assert model_needs_approval(gated, [])


def test_an_open_api_offers_no_subscription() -> None:
    access = access_of(DEV, "service:open", False, [])
    assert access.standing == "open" and not access.may_subscribe
    with pytest.raises(InvalidRequest):
        subscribe(DEV, "service:open", False, "please", [], 5)


def test_standing_follows_policy_an_approved_one_counts_first() -> None:
    subs = [
        sub("s1", "service:*", "rejected", at=1, reason="no"),
        sub("s2", "service:billing", "pending", at=2),
        sub("s3", "service:billing", "approved", tenant="globex", at=3),
    ]
    assert standing_of("acme", "service:billing", subs).id == "s2"  # type: ignore[union-attr]
    assert standing_of("globex", "service:billing", subs).id == "s3"  # type: ignore[union-attr]
    subs.append(sub("s4", "service:*", "approved", at=0))
    assert standing_of("acme", "service:billing", subs).id == "s4"  # type: ignore[union-attr]
    # A gateway admin has no tenant: no subscription is theirs.
    assert standing_of("", "service:billing", [sub("s5", "x", tenant="")]) is None


def test_access_shows_the_reason_and_offers_a_new_request_after_a_refusal() -> None:
    rejected = [sub("s1", "apis/summarize", "rejected", reason="use the cheaper one", request_reason="demo")]
    access = access_of(DEV, "apis/summarize", True, rejected)
    assert (access.standing, access.reason, access.request_reason) == ("rejected", "use the cheaper one", "demo")
    assert access.may_subscribe
    pending = access_of(DEV, "apis/summarize", True, [sub("s2", "apis/summarize")])
    assert pending.standing == "pending" and not pending.may_subscribe
    assert access_of(DEV, "apis/summarize", True, []).may_subscribe
    assert not access_of(ROOT, "apis/summarize", True, []).may_subscribe


def test_subscribe_makes_a_pending_subscription_for_the_persons_tenant() -> None:
    made = subscribe(DEV, "service:billing", True, "  for the invoices job\r\nthanks ", [], 1234)
    assert (made.tenant_id, made.model, made.state) == ("acme", "service:billing", "pending")
    assert made.requested_by == "usr_dev" and made.request_reason == "for the invoices job\nthanks"
    assert made.created_at_ms == 1234 and made.id.startswith("sub_")
    with pytest.raises(RecordConflict):
        subscribe(DEV, "service:billing", True, "again", [made], 1235)
    # Another tenant's open subscription does not stand in the way.
    subscribe(DEV, "service:billing", True, "mine", [sub("x", "service:billing", tenant="globex")], 1)


@pytest.mark.parametrize("reason", ["", "   ", "x" * 1001, "bad\x00byte", "bell\x07", "line\u2028sep"])
def test_a_reason_is_required_bounded_and_plain(reason: str) -> None:
    with pytest.raises(InvalidRequest):
        subscribe(DEV, "service:billing", True, reason, [], 1)


def test_a_gateway_admin_cannot_subscribe() -> None:
    with pytest.raises(InvalidRequest):
        subscribe(ROOT, "service:billing", True, "why", [], 1)


def test_decisions_tenant_admins_decide_their_own_tenants_only() -> None:
    pending = sub("s1", "service:billing")
    approved = decide(ADMIN, pending, "approve", "ok for Q3", 99)
    assert (approved.state, approved.reason, approved.decided_by, approved.decided_at_ms) == (
        "approved",
        "ok for Q3",
        "usr_adm",
        99,
    )
    with pytest.raises(RecordNotFound):
        decide(OTHER_ADMIN, pending, "approve", "", 1)
    with pytest.raises(PermissionDenied):
        decide(DEV, pending, "approve", "", 1)
    assert decide(ROOT, pending, "reject", "not now", 1).state == "rejected"
    assert decide(ADMIN, approved, "revoke", "", 1).state == "revoked"


def test_another_tenants_subscription_is_missing_whatever_the_decision_says() -> None:
    """Checked before the decision's own words: a 400 for a bad one would
    confirm to a stranger that the id exists (a missing one is a 404)."""
    pending = sub("s1", "service:billing")
    for who in (OTHER_ADMIN, Who(user_id="usr_x", role="developer", tenant_id="globex")):
        for decision in ("approve", "delete", ""):
            with pytest.raises(RecordNotFound):
                decide(who, pending, decision, "", 1)


def test_a_rejection_needs_a_reason_and_moves_follow_the_admin_apis() -> None:
    pending = sub("s1", "service:billing")
    with pytest.raises(InvalidRequest):
        decide(ADMIN, pending, "reject", " ", 1)
    with pytest.raises(InvalidRequest):
        decide(ADMIN, pending, "delete", "", 1)
    rejected = decide(ADMIN, pending, "reject", "no", 1)
    with pytest.raises(RecordConflict):
        decide(ADMIN, rejected, "reject", "no again", 2)
    assert decide(ADMIN, rejected, "approve", "changed my mind", 3).state == "approved"


def test_the_admin_apis_subscription_rules_live_in_control() -> None:
    made = control.new_subscription("t", "big", "key_admin", 5, [])
    assert (made.state, made.request_reason, made.requested_by) == ("pending", "", "key_admin")
    assert control.decided(made, "approve", "", "key_root", 6).state == "approved"
    rejected = control.decided(made, "reject", "", "k", 6)
    with pytest.raises(RecordConflict):
        control.decided(rejected, "revoke", "", "k", 7)


def test_clean_text_keeps_names_on_one_line() -> None:
    assert clean_text("  My app ", "name", 64) == "My app"
    with pytest.raises(InvalidRequest):
        clean_text("two\nlines", "name", 64)
    assert clean_text("two\nlines", "reason", 64, lines=True) == "two\nlines"


def test_a_persons_writes_are_audited_under_their_user_id() -> None:
    assert DEV.actor().key_id == "user:usr_dev" and DEV.actor().role == "caller"
    assert ADMIN.actor().role == "tenant_admin" and ROOT.actor().role == "gateway_admin"
    assert ADMIN.actor().tenant_id == "acme" and ROOT.actor().tenant_id == ""
