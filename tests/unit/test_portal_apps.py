"""Apps and their keys in the portal: who sees which, and keys made,
rotated and revoked by the admin API's own rules."""

from __future__ import annotations

import pytest

from schemas.control import ApiKey
from schemas.errors import InvalidRequest, PermissionDenied, RecordConflict, RecordNotFound
from schemas.people import App
from services import policy
from services.keys import hash_key
from services.portal_apps import (
    key_ids_of,
    keys_of,
    new_app,
    new_app_key,
    require_app,
    require_key,
    require_owner,
    require_revoker,
    revoked,
    rotated,
    visible_apps,
)
from services.portal_scope import Who

DEV = Who(user_id="usr_dev", role="developer", tenant_id="acme")
DEV2 = Who(user_id="usr_dev2", role="developer", tenant_id="acme")
ADMIN = Who(user_id="usr_adm", role="tenant_admin", tenant_id="acme")
STRANGER = Who(user_id="usr_x", role="tenant_admin", tenant_id="globex")
ROOT = Who(user_id="usr_root", role="gateway_admin")


def app(aid: str, user: str = "usr_dev", tenant: str = "acme") -> App:
    return App(id=aid, tenant_id=tenant, user_id=user, name=aid)


def test_a_new_app_is_the_persons_in_their_tenant() -> None:
    made = new_app(DEV, " Billing bot ", "sends invoices", 7)
    assert (made.tenant_id, made.user_id, made.name, made.created_at_ms) == ("acme", "usr_dev", "Billing bot", 7)
    assert made.id.startswith("app_")
    with pytest.raises(InvalidRequest):
        new_app(DEV, "", "", 7)
    with pytest.raises(InvalidRequest):
        new_app(DEV, "x" * 65, "", 7)
    with pytest.raises(InvalidRequest):
        new_app(DEV, "tab\there", "", 7)
    with pytest.raises(InvalidRequest):  # a gateway admin has no tenant to own it
        new_app(ROOT, "ops", "", 7)


def test_developers_see_their_own_apps_admins_their_tenants_strangers_none() -> None:
    apps = [app("a1"), app("a2", user="usr_dev2"), app("b1", user="usr_x", tenant="globex")]
    assert [a.id for a in visible_apps(DEV, apps)] == ["a1"]
    assert [a.id for a in visible_apps(DEV2, apps)] == ["a2"]
    assert [a.id for a in visible_apps(ADMIN, apps)] == ["a1", "a2"]
    assert [a.id for a in visible_apps(STRANGER, apps)] == ["b1"]
    assert len(visible_apps(ROOT, apps)) == 3
    # Another's app is missing, as a missing one is.
    with pytest.raises(RecordNotFound) as seen:
        require_app(DEV2, apps[0], "a1")
    with pytest.raises(RecordNotFound) as missing:
        require_app(DEV2, None, "a1")
    assert seen.value.message == missing.value.message
    with pytest.raises(RecordNotFound):
        require_app(STRANGER, apps[0], "a1")
    assert require_app(ADMIN, apps[0], "a1") is apps[0]


def test_an_apps_key_is_a_caller_key_of_its_tenant_shown_once() -> None:
    owner = app("a1")
    key, secret = new_app_key(owner, "ci", 100)
    assert (key.tenant_id, key.role, key.app_id, key.name, key.owner) == ("acme", "caller", "a1", "ci", "api")
    assert key.secrets[0].sha256 == hash_key(secret) and secret not in repr(key)
    # The gateway takes it as any caller key.
    assert policy.authenticate(f"Bearer {secret}", {hash_key(secret): key}, 101) is key
    with pytest.raises(InvalidRequest):
        new_app_key(owner, "", 100)


def test_keys_of_an_app_are_its_own_and_of_its_tenant() -> None:
    owner = app("a1")
    keys = [
        ApiKey(id="k1", tenant_id="acme", app_id="a1", created_at_ms=2),
        ApiKey(id="k0", tenant_id="acme", app_id="a1", created_at_ms=1),
        ApiKey(id="k2", tenant_id="acme", app_id="a2"),
        ApiKey(id="forged", tenant_id="globex", app_id="a1"),
        ApiKey(id="admin", tenant_id="acme"),
    ]
    assert [k.id for k in keys_of(owner, keys)] == ["k0", "k1"]
    with pytest.raises(RecordNotFound):
        require_key(owner, keys[2], "k2")
    with pytest.raises(RecordNotFound):
        require_key(owner, keys[3], "forged")
    assert require_key(owner, keys[0], "k1") is keys[0]
    apps = [owner, app("a2", user="usr_dev2")]
    assert key_ids_of(DEV, apps, keys) == ["k0", "k1"]
    assert key_ids_of(ADMIN, apps, keys) == ["k0", "k1", "k2"]
    assert key_ids_of(STRANGER, apps, keys) == []


def test_rotation_keeps_the_old_secret_for_its_grace_and_revoking_ends_every_secret() -> None:
    key, old = new_app_key(app("a1"), "ci", 1_000)
    after, new = rotated(key, 3600, 2_000)
    by_hash = {s.sha256: after for s in after.secrets}
    assert policy.authenticate(f"Bearer {new}", by_hash, 3_000) is after
    assert policy.authenticate(f"Bearer {old}", by_hash, 2_000 + 3600_000 - 1) is after
    with pytest.raises(Exception, match="grace"):
        policy.authenticate(f"Bearer {old}", by_hash, 2_000 + 3600_000)
    with pytest.raises(InvalidRequest):
        rotated(key, -1, 2_000)
    gone = revoked(after)
    with pytest.raises(Exception, match="disabled"):
        policy.authenticate(f"Bearer {new}", {s.sha256: gone for s in gone.secrets}, 3_000)
    config_key = ApiKey(id="k", tenant_id="acme", app_id="a1", owner="config")
    with pytest.raises(RecordConflict):
        revoked(config_key)


def test_the_owner_makes_keys_an_admin_may_only_revoke_them() -> None:
    owned = app("a1")
    require_owner(DEV, owned)
    require_revoker(DEV, owned)
    require_revoker(ADMIN, owned)
    require_revoker(ROOT, owned)
    for who in (ADMIN, ROOT, DEV2):
        with pytest.raises(PermissionDenied):
            require_owner(who, owned)
    with pytest.raises(PermissionDenied):
        require_revoker(DEV2, owned)
