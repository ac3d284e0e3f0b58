"""What the portal keeps to show once (a new key's secret, a new link):
taken once, by the browser and person that made it, within its time; the
bucket holds neither the secret nor the token that opens it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ingress.portal import once
from schemas.people import token_digest

TOKEN = "browser-session-token-0123456789abcdef"
OTHER = "another-browser-token-0123456789abcdef"
SECRET = "sk-sluice-very-secret-value"


@dataclass
class Entry:
    value: bytes | None
    revision: int | None


class FakeBucket:
    """A KV bucket as far as slots use one: revisions, and a delete that
    fails when the key changed since the revision read."""

    def __init__(self) -> None:
        self.data: dict[str, Entry] = {}
        self.seq = 0
        self.reads = 0

    async def put(self, key: str, value: bytes) -> int:
        self.seq += 1
        self.data[key] = Entry(value, self.seq)
        return self.seq

    async def get(self, key: str) -> Entry:
        self.reads += 1
        await asyncio.sleep(0)  # let another taker read too, as two tabs would
        if key not in self.data:
            raise KeyNotFoundError
        return self.data[key]

    async def delete(self, key: str, last: int | None = None) -> bool:
        entry = self.data.get(key)
        if entry is None or (last is not None and entry.revision != last):
            raise KeyWrongLastSequenceError
        del self.data[key]
        return True


def test_a_slot_is_taken_once_then_is_gone() -> None:
    async def run() -> None:
        bucket = FakeBucket()
        await once.keep(bucket, TOKEN, "key:key_1", "usr_a", {"secret": SECRET}, now_ms=1000)
        assert await once.take(bucket, TOKEN, "key:key_1", "usr_a", now_ms=2000) == {"secret": SECRET}
        assert await once.take(bucket, TOKEN, "key:key_1", "usr_a", now_ms=2001) is None
        assert bucket.data == {}

    asyncio.run(run())


def test_two_tabs_taking_at_once_show_it_once() -> None:
    async def run() -> None:
        bucket = FakeBucket()
        await once.keep(bucket, TOKEN, "key:key_1", "usr_a", {"secret": SECRET}, now_ms=0)
        got = await asyncio.gather(*(once.take(bucket, TOKEN, "key:key_1", "usr_a", now_ms=1) for _ in range(2)))
        assert sorted(got, key=bool) == [None, {"secret": SECRET}]

    asyncio.run(run())


@pytest.mark.parametrize(
    ("token", "purpose", "user", "at"),
    [
        (OTHER, "key:key_1", "usr_a", 1),  # another browser
        (TOKEN, "key:key_2", "usr_a", 1),  # another key
        (TOKEN, "key:key_1", "usr_b", 1),  # another person
        (TOKEN, "key:key_1", "usr_a", once.SLOT_MS),  # too late
    ],
)
def test_nothing_is_shown_to_another_browser_purpose_person_or_too_late(
    token: str, purpose: str, user: str, at: int
) -> None:
    async def run() -> None:
        bucket = FakeBucket()
        await once.keep(bucket, TOKEN, "key:key_1", "usr_a", {"secret": SECRET}, now_ms=0)
        assert await once.take(bucket, token, purpose, user, now_ms=at) is None

    asyncio.run(run())


def test_the_bucket_holds_neither_the_secret_nor_the_token() -> None:
    async def run() -> FakeBucket:
        bucket = FakeBucket()
        await once.keep(bucket, TOKEN, "key:key_1", "usr_a", {"secret": SECRET}, now_ms=0)
        return bucket

    bucket = asyncio.run(run())
    ((name, entry),) = bucket.data.items()
    stored = name.encode() + (entry.value or b"")
    for leaked in (SECRET, TOKEN, token_digest(TOKEN), "key_1"):
        assert leaked.encode() not in stored
    assert name.startswith("once.") and name == once.slot_name(TOKEN, "key:key_1")


def test_a_slot_moved_to_another_person_does_not_open() -> None:
    slot = once.seal(TOKEN, "link:usr_x", "usr_a", {"link": "https://x/portal/invitations/t"}, 10)
    moved = once.Slot(user_id="usr_b", expires_at_ms=slot.expires_at_ms, nonce=slot.nonce, sealed=slot.sealed)
    assert once.unseal(TOKEN, "link:usr_x", "usr_b", moved) is None
    assert once.unseal(TOKEN, "link:usr_x", "usr_a", slot) == {"link": "https://x/portal/invitations/t"}
