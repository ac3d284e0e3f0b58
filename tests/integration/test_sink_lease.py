"""One sink replica writes at a time: the lease in NATS KV (issue 24),
against a real nats-server. Time is a clock each holder owns and the test
moves, as two machines' clocks would, so nothing here waits for a lease to
run out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from analytics import sink
from analytics.lease import BUCKET, KEY, LEASE_S, PUBLISH, Lease, ensure_bucket
from services.bus import process
from services.cli import nats_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clients(nats_url: str) -> AsyncIterator[list[Client]]:
    ncs = [await process.connect(f"lease-{i}", nats_url) for i in range(2)]
    await ensure_bucket(ncs[0])
    await (await ncs[0].jetstream().key_value(BUCKET)).purge(KEY)  # each test starts with no holder
    yield ncs
    for nc in ncs:
        await nc.close()


def replica(nc: Client, name: str, **options: object) -> tuple[Lease, Clock]:
    clock = Clock()
    return Lease(nc, name, clock=clock, **options), clock  # type: ignore[arg-type]


async def test_two_replicas_racing_for_a_free_lease_leave_exactly_one_writer(clients: list[Client]) -> None:
    (a, _), (b, _) = replica(clients[0], "a"), replica(clients[1], "b")
    for _ in range(5):
        await asyncio.gather(a.step(), b.step())
        assert [lease.may_write() for lease in (a, b)].count(True) == 1
    assert a.held != b.held


async def test_a_standby_takes_over_only_once_the_writer_stops_renewing(clients: list[Client]) -> None:
    (a, a_clock), (b, b_clock) = replica(clients[0], "a"), replica(clients[1], "b")
    await a.step()
    assert a.may_write()
    # While the writer renews, a standby never takes over, however long it watches.
    for _ in range(3):
        await b.step()
        b_clock.now += LEASE_S
        a_clock.now += 1
        await a.step()
        assert a.may_write() and not b.held
    # The writer stops renewing (paused, or cut off): first it stops writing ...
    a_clock.now += LEASE_S / 2
    assert not a.may_write()
    # ... and a lease later the standby takes over.
    await b.step()
    b_clock.now += LEASE_S - 0.1
    await b.step()
    assert not b.held
    b_clock.now += 0.1
    await b.step()
    assert b.may_write()
    # The old writer, back, finds it gone at its next renewal and stands by.
    await a.step()
    assert not a.held and not a.may_write()


async def test_a_writer_that_stops_gives_the_lease_up_at_once(clients: list[Client]) -> None:
    (a, _), (b, _) = replica(clients[0], "a"), replica(clients[1], "b")
    await a.step()
    await b.step()
    await a.release()
    assert not a.may_write()
    await b.step()
    assert b.may_write()


async def test_a_writer_sure_to_be_alone_does_not_wait_out_a_dead_predecessor(clients: list[Client]) -> None:
    (dead, _), (embedded, _) = (
        replica(clients[0], "dead"),
        replica(clients[1], "new", take_over_at_once=True),
    )
    await dead.step()  # then it dies without giving the lease up
    await embedded.step()
    assert embedded.may_write()


async def test_running_replicas_hand_over_when_the_writer_dies(clients: list[Client]) -> None:
    # Real time, a short lease: the writer's task dies (no release), the standby takes over.
    a = Lease(clients[0], "a", lease_s=1.0, renew_s=0.1)
    b = Lease(clients[1], "b", lease_s=1.0, renew_s=0.1)
    stop = asyncio.Event()
    running_a = asyncio.create_task(a.run(stop))
    await until(lambda: a.may_write())
    running_b = asyncio.create_task(b.run(stop))
    running_a.cancel()
    await until(lambda: b.may_write())
    assert not a.may_write()
    stop.set()
    await running_b
    assert not b.held  # given up on stopping


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_a_renewal_whose_answer_was_lost_is_adopted_not_waited_out(clients: list[Client]) -> None:
    (a, _), (b, _) = replica(clients[0], "a"), replica(clients[1], "b")
    await a.step()
    kv = await clients[0].jetstream().key_value(BUCKET)
    await kv.update(KEY, a.holder, last=a.revision)  # a's renewal landed; its answer never came
    await a.step()
    assert not a.may_write()  # its revision was stale: it may not write on it
    await b.step()
    await a.step()
    assert a.may_write() and not b.held


async def test_without_the_bucket_no_replica_writes_unless_the_engine_is_its_alone(clients: list[Client]) -> None:
    await clients[0].jetstream().delete_key_value(BUCKET)  # the fixture makes it again for the next test
    for dsn, may in (("http://clickhouse:8123", False), ("chdb:///tmp/nowhere", True)):
        writer, may_write = sink._writer_lease(clients[1], "sink", dsn)
        await writer.step()
        assert (writer.held, writer.failing, may_write()) == (False, True, may)


def test_the_subjects_granted_for_the_lease_are_all_it_needs(tmp_path: Path) -> None:
    users = [
        {"user": "admin", "password": "a", "permissions": {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}}},
        {
            "user": "sink",
            "password": "s",
            "permissions": {"publish": {"allow": list(PUBLISH)}, "subscribe": {"allow": ["_INBOX.sink.>"]}},
        },
    ]
    port = nats_server.free_port()
    server = nats_server.start(tmp_path / "nats", port, authorization="authorization " + json.dumps({"users": users}))
    url = f"nats://127.0.0.1:{port}"

    async def hold_renew_and_give_up() -> tuple[bool, bool, bool]:
        admin = await nats.connect(url, user="admin", password="a")
        await ensure_bucket(admin)  # made at start-up, by the supervisor
        own = await nats.connect(url, user="sink", password="s", inbox_prefix="_INBOX.sink")
        try:
            writer = Lease(own, "sink")
            await writer.step()
            took = writer.may_write()
            await writer.step()
            renewed = writer.may_write() and not writer.failing
            await writer.release()
            gone = await (await admin.jetstream().key_value(BUCKET)).get(KEY)
        except KeyNotFoundError:
            gone = None
        finally:
            await own.close()
            await admin.close()
        return took, renewed, gone is None

    try:
        assert asyncio.run(hold_renew_and_give_up()) == (True, True, True)
    finally:
        server.terminate()
        server.wait(10)
