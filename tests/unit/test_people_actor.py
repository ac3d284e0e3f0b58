"""Whoever manages people is a ``services.control.Actor``, as for every
other admin rule: an admin key (the admin API) or a signed-in person (the
portal, ``Person.actor``), one record for both. The people store's rules
and audit trail take it as it is (on a KV bucket in memory)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError

from ingress.portal.auth import Person
from ingress.portal.people_store import PeopleStore
from schemas.errors import PermissionDenied, RecordNotFound
from schemas.events import AuditEvent
from schemas.people import PortalSession, User, kv_encode
from services.control import Actor
from services.people import accounts
from services.people.settings import PortalConfig

DEV = accounts.new_user("dev@acme.test", "acme", "developer", "admin", 0)


class FakeKv:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> Any:
        if key not in self.data:
            raise KeyNotFoundError
        return SimpleNamespace(value=self.data[key], revision=1)

    async def create(self, key: str, value: bytes) -> int:
        self.data[key] = value
        return 1

    async def update(self, key: str, value: bytes, last: int) -> int:
        self.data[key] = value
        return 2


class FakeJs:
    def __init__(self) -> None:
        self.buckets: dict[str, FakeKv] = {}

    async def key_value(self, bucket: str) -> FakeKv:
        return self.buckets.setdefault(bucket, FakeKv())


def store_with(*users: User) -> tuple[PeopleStore, list[AuditEvent]]:
    trail: list[AuditEvent] = []
    mirror = SimpleNamespace(items={u.id: u for u in users}, apply=lambda k, v: None)
    tenants = SimpleNamespace(items={"acme": object()})
    store = PeopleStore(FakeJs(), mirror, tenants, trail.append, PortalConfig())  # type: ignore[arg-type]
    for u in users:
        store.js.buckets.setdefault("sluice_users", FakeKv()).data[u.id] = kv_encode(u)  # type: ignore[attr-defined]
    return store, trail


def person(email: str, role: str, tenant: str = "acme") -> Person:
    user = accounts.new_user(email, tenant, role, "admin", 0)  # type: ignore[arg-type]
    return Person(user=user, session=PortalSession(user.id, "csrf", 0, 2**62))


def test_a_signed_in_person_acts_as_an_actor() -> None:
    lead = person("lead@acme.test", "tenant_admin").actor
    assert lead == Actor(key_id=f"user:{accounts.user_id_for('lead@acme.test')}", role="tenant_admin", tenant_id="acme")
    # A developer manages nothing, here as with a caller key.
    assert person("dev2@acme.test", "developer").actor.role == "caller"


async def test_the_people_store_takes_an_actor_and_audits_it() -> None:
    store, trail = store_with(DEV)
    lead = person("lead@acme.test", "tenant_admin").actor
    invited = await store.new_link(DEV.id, lead, "http://gw.test")
    assert invited.user == DEV and trail[-1].actor == lead.key_id and trail[-1].action == "invite"
    changed = await store.change_user(DEV.id, lead, "disable", lambda u: accounts.with_disabled(u, True))
    assert changed.disabled and trail[-1].actor == lead.key_id
    key = Actor(key_id="k1", role="gateway_admin", tenant_id="")
    made = await store.invite("new@acme.test", "acme", "developer", key, "http://gw.test")
    assert made.user.invited_by == "k1" and trail[-1].actor == "k1"


async def test_a_developer_or_another_tenants_admin_manages_no_one() -> None:
    store, _ = store_with(DEV)
    with pytest.raises(PermissionDenied):
        await store.new_link(DEV.id, person("dev2@acme.test", "developer").actor, "http://gw.test")
    with pytest.raises(RecordNotFound):
        await store.new_link(DEV.id, person("boss@globex.test", "tenant_admin", "globex").actor, "http://gw.test")
