"""/admin/v1/users' rules without a gateway: what an update makes of a
person, within what the admin may grant, and how a person is shown."""

from __future__ import annotations

import pytest

from ingress.admin.users import _changed, user_out
from schemas.admin_people import UserUpdate
from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from services.control import Actor
from services.people import accounts

GATEWAY = Actor(key_id="admin", role="gateway_admin", tenant_id="")
ACME = Actor(key_id="k1", role="tenant_admin", tenant_id="acme")
TENANTS = {"acme", "globex"}.__contains__
DEV = accounts.new_user("dev@acme.test", "acme", "developer", "admin", 1_700_000_000_000)


def test_a_tenant_admin_promotes_within_its_tenant() -> None:
    after = _changed(ACME, DEV, UserUpdate(role="tenant-admin"), TENANTS)
    assert after.role == "tenant_admin" and after.tenant_id == "acme"


def test_a_tenant_admin_neither_makes_gateway_admins_nor_moves_people() -> None:
    with pytest.raises(PermissionDenied):
        _changed(ACME, DEV, UserUpdate(role="gateway_admin"), TENANTS)
    with pytest.raises(RecordNotFound):
        _changed(ACME, DEV, UserUpdate(tenant="globex"), TENANTS)


def test_a_gateway_admin_moves_people_between_tenants_that_exist() -> None:
    assert _changed(GATEWAY, DEV, UserUpdate(tenant="globex"), TENANTS).tenant_id == "globex"
    with pytest.raises(RecordNotFound):
        _changed(GATEWAY, DEV, UserUpdate(tenant="nowhere"), TENANTS)
    admin = _changed(GATEWAY, DEV, UserUpdate(role="gateway_admin"), TENANTS)
    assert admin.role == "gateway_admin" and admin.tenant_id == ""
    with pytest.raises(InvalidRequest):  # back to a tenant role: which tenant?
        _changed(GATEWAY, admin, UserUpdate(role="developer"), TENANTS)
    assert _changed(GATEWAY, admin, UserUpdate(role="developer", tenant="acme"), TENANTS).tenant_id == "acme"


def test_disabling_through_an_update_ends_sessions() -> None:
    after = _changed(ACME, DEV, UserUpdate(disabled=True, name="  Dev   Eloper "), TENANTS)
    assert after.disabled and after.session_epoch == DEV.session_epoch + 1 and after.name == "Dev Eloper"
    assert _changed(ACME, DEV, UserUpdate(), TENANTS) == DEV


def test_a_person_is_shown_without_secrets() -> None:
    shown = user_out(accounts.with_password(DEV, "$argon2id$v=19$secret"))
    assert shown.state == "active" and shown.signs_in_with == ["password"] and shown.tenant == "acme"
    assert "argon2" not in repr(shown)
    assert user_out(DEV).state == "invited" and user_out(DEV).signs_in_with == []
