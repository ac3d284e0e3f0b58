"""``KvMirror.start`` returns once the mirror holds the bucket as it was,
even when nats-py's "no more initial values" marker comes before them
(as it can: the marker follows the consumer's count of pending messages,
not what this process has read)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from nats.js.kv import KV_DEL

from services.bus.kv import KvMirror


def entry(key: str, value: bytes, revision: int, delta: int, operation: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(key=key, value=value, revision=revision, delta=delta, operation=operation)


class FakeKv:
    def __init__(self, updates: list[SimpleNamespace | None], last_seq: int, messages: int) -> None:
        self.updates, self.state = updates, SimpleNamespace(last_seq=last_seq, messages=messages)

    async def status(self) -> SimpleNamespace:
        return SimpleNamespace(stream_info=SimpleNamespace(state=self.state))

    async def watchall(self) -> AsyncIterator[SimpleNamespace | None]:
        async def updates() -> AsyncIterator[SimpleNamespace | None]:
            for update in self.updates:
                await asyncio.sleep(0.01)  # each read its own turn of the loop, as from the socket
                yield update
            await asyncio.Event().wait()  # the watch stays open

        return updates()


def js_of(kv: FakeKv) -> SimpleNamespace:
    async def key_value(bucket: str) -> FakeKv:
        return kv

    return SimpleNamespace(key_value=key_value)


async def started(kv: FakeKv) -> dict[str, bytes]:
    mirror: KvMirror[bytes] = KvMirror("b", lambda raw: raw)
    await mirror.start(js_of(kv), timeout=2)  # type: ignore[arg-type]
    items = dict(mirror.items)
    await mirror.stop()
    return items


async def test_a_marker_ahead_of_the_values_does_not_end_the_start() -> None:
    kv = FakeKv([None, entry("a", b"1", 2, 1), entry("b", b"2", 3, 0)], last_seq=3, messages=2)
    assert await started(kv) == {"a": b"1", "b": b"2"}


async def test_a_deleted_key_counts_toward_catching_up() -> None:
    kv = FakeKv([entry("a", b"1", 1, 1), None, entry("b", b"", 4, 0, KV_DEL)], last_seq=4, messages=2)
    assert await started(kv) == {"a": b"1"}


@pytest.mark.parametrize(("last_seq", "messages"), [(0, 0), (9, 0)])  # empty, or every message expired
async def test_an_empty_bucket_is_ready_at_the_marker(last_seq: int, messages: int) -> None:
    assert await started(FakeKv([None], last_seq=last_seq, messages=messages)) == {}
