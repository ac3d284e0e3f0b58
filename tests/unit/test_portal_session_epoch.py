"""A session made by a password change on one ingress replica holds on
another whose copy of the person has not caught up yet (the bucket is asked),
while a session older than the person's epoch still ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ingress.portal.auth import NotSignedIn, person_of
from schemas.people import PortalSession, User

TOKEN = "a-plausible-session-token-0123456789"
FAR = 2**62


class FakeStore:
    def __init__(self, mirrored: User, stored: User, session: PortalSession) -> None:
        self.mirrored, self.stored, self._session = mirrored, stored, session
        self.ended: list[str] = []

    async def session(self, token: str) -> PortalSession | None:
        return self._session if token == TOKEN else None

    def user(self, user_id: str) -> User | None:
        return self.mirrored if user_id == self.mirrored.id else None

    async def read_user(self, user_id: str) -> tuple[User | None, int]:
        return (self.stored, 7) if user_id == self.stored.id else (None, 0)

    async def end_session(self, token: str) -> None:
        self.ended.append(token)


def request_for(store: FakeStore) -> Any:
    gateway = SimpleNamespace(people=store)
    return SimpleNamespace(
        scope={}, cookies={"sluice_portal": TOKEN}, app=SimpleNamespace(state=SimpleNamespace(gateway=gateway))
    )


def test_a_session_newer_than_this_replicas_copy_holds() -> None:
    before, after = (
        User(id="usr_1", email="a@x.test", session_epoch=3),
        User(id="usr_1", email="a@x.test", session_epoch=4),
    )
    store = FakeStore(before, after, PortalSession("usr_1", "csrf", 0, FAR, session_epoch=4))
    person = asyncio.run(person_of(request_for(store)))
    assert person.user.session_epoch == 4 and store.ended == []


def test_a_session_older_than_the_persons_epoch_ends() -> None:
    now = User(id="usr_1", email="a@x.test", session_epoch=4)
    store = FakeStore(now, now, PortalSession("usr_1", "csrf", 0, FAR, session_epoch=3))
    with pytest.raises(NotSignedIn):
        asyncio.run(person_of(request_for(store)))
    assert store.ended == [TOKEN]


def test_a_newer_session_the_bucket_does_not_back_ends() -> None:
    # Not a lagging copy: the bucket's person has no such epoch either.
    now = User(id="usr_1", email="a@x.test", session_epoch=3)
    store = FakeStore(now, now, PortalSession("usr_1", "csrf", 0, FAR, session_epoch=9))
    with pytest.raises(NotSignedIn):
        asyncio.run(person_of(request_for(store)))
