"""Two sink replicas against one ClickHouse and one events stream (issue
24): only the holder of the lease pulls and inserts; when it dies, the
standby takes over and the rest lands, each request once. Both replicas run
the sink's own consumer in this process (the embedded ClickHouse is one
process's), each on its own NATS connection with its own lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

from nats.aio.client import Client

from analytics import lease, sink
from analytics.rows import Rows
from analytics.store import Store
from schemas import bus, subjects
from schemas.events import EventBatch, RequestEvent
from schemas.ids import new_id
from services.bus import process
from services.cli import bootstrap


class Replica:
    """One sink: its connection, its lease, its consumer; and what it inserted."""

    def __init__(self, nc: Client, name: str, store: Store) -> None:
        self.nc, self.store, self.inserted = nc, store, 0
        self.lease = lease.Lease(nc, name, lease_s=1.0, renew_s=0.1)
        self.stop = asyncio.Event()
        self.tasks = [
            asyncio.create_task(self.lease.run(self.stop)),
            asyncio.create_task(sink.consume_events(self, nc, self.stop, may_write=self.lease.may_write)),
        ]

    def insert(self, rows: Rows, guard: Callable[[], None] | None = None) -> None:
        self.store.insert(rows, guard=partial(self._count, guard))

    def _count(self, guard: Callable[[], None] | None) -> None:
        if guard is not None:
            guard()
        self.inserted += 1  # past the guard: this replica writes

    def die(self) -> None:
        """As a SIGKILL would: nothing given up, nothing acked."""
        for task in self.tasks:
            task.cancel()


async def publish(nc: Client, tenant: str, n: int) -> list[str]:
    now = time.time_ns()
    events = [
        RequestEvent(
            event_id=new_id(), request_id=new_id(), received_at_ns=now + i, origin="nats", api="chat", model="m",
            status=200, tenant_id=tenant, cost_pico_usd=1000 + i,
        )
        for i in range(n)
    ]  # fmt: skip
    js = nc.jetstream()
    for lo in range(0, n, 10):
        batch = EventBatch(id=new_id(), events=events[lo : lo + 10])
        await js.publish(subjects.events("provider"), bus.encode(batch), headers={"Nats-Msg-Id": batch.id})
    return [e.request_id for e in events]


def raw_and_rolled_up(store: Store, tenant: str) -> tuple[int, int, int]:
    """Raw rows (no FINAL), distinct requests, and the hourly rollup's count."""
    _, raw = store.query(
        "SELECT count(), uniqExact(request_id) FROM requests WHERE tenant_id = {t:String}", {"t": tenant}
    )
    _, hourly = store.query(
        "SELECT countMerge(requests) FROM requests_hourly WHERE tenant_id = {t:String}", {"t": tenant}
    )
    return raw[0][0], raw[0][1], hourly[0][0]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_only_the_lease_holder_writes_and_a_standby_takes_over_when_it_dies(nats_url: str, store: Store) -> None:
    admin = await process.connect("test", nats_url)
    await bootstrap.ensure_stream(admin)
    await lease.ensure_bucket(admin)
    ncs = [await process.connect(f"sink-{i}", nats_url) for i in range(2)]
    replicas = [Replica(ncs[0], "sink-a", store), Replica(ncs[1], "sink-b", store)]
    try:
        await until(lambda: any(r.lease.may_write() for r in replicas))
        writer, standby = sorted(replicas, key=lambda r: not r.lease.may_write())
        await publish(admin, "replicas", 50)
        await until(lambda: raw_and_rolled_up(store, "replicas")[0] >= 50)
        assert writer.inserted > 0 and standby.inserted == 0

        writer.die()
        await until(standby.lease.may_write)
        assert not writer.lease.may_write()
        await publish(admin, "replicas", 50)
        await until(lambda: raw_and_rolled_up(store, "replicas")[2] >= 100)
        await asyncio.sleep(sink.ACK_WAIT_S + 1)  # what the dead writer held unacked has come again
        assert standby.inserted > 0
        assert raw_and_rolled_up(store, "replicas") == (100, 100, 100)
    finally:
        for r in replicas:
            r.stop.set()
        await asyncio.gather(*(t for r in replicas for t in r.tasks), return_exceptions=True)
        for nc in [*ncs, admin]:
            await nc.close()
