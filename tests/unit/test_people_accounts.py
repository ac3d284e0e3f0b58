"""People's records and rules: addresses, ids, roles, invitations,
sessions (expiry and epoch), and who may manage whom."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from schemas.people import token_digest
from services.control import Actor
from services.people import accounts, tokens

NOW = 1_700_000_000_000
GATEWAY = Actor(key_id="admin", role="gateway_admin", tenant_id="")
ACME_ADMIN = Actor(key_id="k1", role="tenant_admin", tenant_id="acme")
ACME_DEV = Actor(key_id="user:x", role="caller", tenant_id="acme")  # a developer, signed in


def test_addresses_are_kept_trimmed_and_lower_case() -> None:
    assert accounts.normal_email("  Ann.Lee+x@Example.CO.uk ") == "ann.lee+x@example.co.uk"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "ann",
        "ann@",
        "@example.com",
        "a b@example.com",
        "ann@example",
        "ann@-x.com",
        "a\r\n@b.c",
        "a@b.c\nBcc: x@y.z",
    ],
)
def test_what_is_not_an_address_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        accounts.normal_email(bad)


def test_an_address_too_long_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        accounts.normal_email("a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".com")


def test_a_users_id_follows_from_the_address_alone() -> None:
    one = accounts.new_user("Ann@Example.com", "acme", "developer", "admin", NOW)
    again = accounts.new_user("ann@example.com", "other", "tenant_admin", "k1", NOW + 5)
    assert one.id == again.id == accounts.user_id_for("ann@example.com")
    assert one.id != accounts.user_id_for("bob@example.com")
    assert one.id.startswith("usr_") and len(one.id) == 28


def test_roles_are_named_as_the_cli_and_the_api_say_them() -> None:
    assert accounts.role_of("tenant-admin") == accounts.role_of("tenant_admin") == "tenant_admin"
    assert accounts.role_of("Developer") == "developer"
    with pytest.raises(InvalidRequest):
        accounts.role_of("root")


def test_a_gateway_admin_has_no_tenant_and_everyone_else_one() -> None:
    assert accounts.new_user("g@example.com", "acme", "gateway_admin", "admin", NOW).tenant_id == ""
    with pytest.raises(InvalidRequest):
        accounts.new_user("d@example.com", "", "developer", "admin", NOW)


def test_an_invited_person_has_no_password_until_they_accept() -> None:
    user = accounts.new_user("d@example.com", "acme", "developer", "admin", NOW)
    assert accounts.state_of(user) == "invited"
    assert accounts.state_of(accounts.with_password(user, "$argon2id$...")) == "active"
    assert accounts.state_of(accounts.with_disabled(user, True)) == "disabled"


def test_an_invitation_expires_and_needs_an_enabled_person() -> None:
    user = accounts.new_user("d@example.com", "acme", "developer", "admin", NOW)
    token, invitation = accounts.new_invitation(user, NOW, 1000)
    assert tokens.plausible(token) and invitation.user_id == user.id
    assert accounts.invitation_usable(invitation, user, NOW + 999)
    assert not accounts.invitation_usable(invitation, user, NOW + 1000)
    assert not accounts.invitation_usable(invitation, None, NOW)
    assert not accounts.invitation_usable(invitation, accounts.with_disabled(user, True), NOW)


def test_a_password_set_or_a_disable_ends_every_link_made_before() -> None:
    # Two links for one person (a reset sent twice): the one used sets the
    # password, and the other must not set it again days later.
    user = accounts.new_user("a@example.com", "acme", "developer", "admin", NOW)
    _, first = accounts.new_invitation(user, NOW, 1000)
    _, second = accounts.new_invitation(user, NOW, 1000)
    signed_up = accounts.with_password(user, "hash")
    assert not accounts.invitation_usable(first, signed_up, NOW)
    assert not accounts.invitation_usable(second, signed_up, NOW)
    _, reset = accounts.new_invitation(signed_up, NOW, 1000)
    assert accounts.invitation_usable(reset, signed_up, NOW)
    back = accounts.with_disabled(accounts.with_disabled(signed_up, True), False)
    assert not accounts.invitation_usable(reset, back, NOW)


def test_a_session_holds_until_it_expires() -> None:
    user = accounts.with_password(accounts.new_user("d@example.com", "acme", "developer", "a", NOW), "h")
    token, session = accounts.new_session(user, NOW, 60_000)
    assert tokens.plausible(token) and tokens.plausible(session.csrf) and token != session.csrf
    assert accounts.session_valid(session, user, NOW + 59_999)
    assert not accounts.session_valid(session, user, NOW + 60_000)
    assert not accounts.session_valid(session, None, NOW)


def test_disabling_a_person_or_changing_their_password_ends_their_sessions() -> None:
    user = accounts.with_password(accounts.new_user("d@example.com", "acme", "developer", "a", NOW), "h")
    _, session = accounts.new_session(user, NOW, 60_000)
    assert not accounts.session_valid(session, accounts.with_disabled(user, True), NOW)
    # Enabling again does not bring the old session back.
    again = accounts.with_disabled(accounts.with_disabled(user, True), False)
    assert not again.disabled and not accounts.session_valid(session, again, NOW)
    assert not accounts.session_valid(session, accounts.with_password(user, "h2"), NOW)
    # A change that is not one bumps nothing.
    assert accounts.with_disabled(user, False) is user


def test_a_gateway_admin_invites_into_any_tenant_and_makes_gateway_admins() -> None:
    assert accounts.check_grant(GATEWAY, "acme", "developer") == "acme"
    assert accounts.check_grant(GATEWAY, "acme", "gateway_admin") == ""
    with pytest.raises(InvalidRequest):
        accounts.check_grant(GATEWAY, "", "developer")


def test_a_tenant_admin_invites_into_its_own_tenant_only() -> None:
    assert accounts.check_grant(ACME_ADMIN, "", "developer") == "acme"
    assert accounts.check_grant(ACME_ADMIN, "acme", "tenant_admin") == "acme"
    with pytest.raises(RecordNotFound):  # another tenant does not exist for it
        accounts.check_grant(ACME_ADMIN, "globex", "developer")
    with pytest.raises(PermissionDenied):
        accounts.check_grant(ACME_ADMIN, "acme", "gateway_admin")


def test_a_developer_manages_nobody() -> None:
    with pytest.raises(PermissionDenied):
        accounts.check_grant(ACME_DEV, "acme", "developer")


def test_another_tenants_person_is_missing_not_forbidden() -> None:
    theirs = accounts.new_user("x@globex.com", "globex", "developer", "admin", NOW)
    ours = accounts.new_user("y@acme.com", "acme", "developer", "admin", NOW)
    gateway_admin = accounts.new_user("g@example.com", "", "gateway_admin", "admin", NOW)
    assert accounts.require_sees(ACME_ADMIN, ours, ours.id) is ours
    assert accounts.require_sees(GATEWAY, theirs, theirs.id) is theirs
    for hidden in (theirs, gateway_admin, None):
        with pytest.raises(RecordNotFound):
            accounts.require_sees(ACME_ADMIN, hidden, "usr_x")


def test_tokens_are_random_and_kept_as_digests() -> None:
    a, b = tokens.new_token(), tokens.new_token()
    assert a != b and len(a) == 43 and tokens.plausible(a)
    assert token_digest(a) != a and len(token_digest(a)) == 64
    assert not tokens.plausible("short") and not tokens.plausible("x" * 65) and not tokens.plausible("a" * 30 + "/..")


def test_csrf_compares_whole_tokens() -> None:
    t = tokens.new_token()
    assert tokens.same(t, t)
    assert not tokens.same(t, t[:-1]) and not tokens.same(t, "") and not tokens.same("", "")
    assert not tokens.same(t, t + "é")


def test_a_forms_csrf_value_is_not_the_cookie() -> None:
    cookie = tokens.new_token()
    assert tokens.form_csrf(cookie) != cookie
    assert tokens.form_csrf(cookie) == tokens.form_csrf(cookie) != tokens.form_csrf(tokens.new_token())
