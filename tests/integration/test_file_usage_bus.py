"""A tenant's file totals against a real nats-server enforcing the roles'
permissions, as the ingress role: two ingress replicas holding files at
once never pass the total (the counters are the only order), a record and
a hold are removed once, at the revision read, their markers age out, and
the sweep settles a write whose process died."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from nats.aio.client import Client

from ingress import file_store
from schemas import subjects
from schemas.errors import InvalidRequest
from schemas.files import FileRecord
from schemas.tasks import BlobRef
from services import files
from services.bus import blobs, credentials, file_records, process, quota_ledger
from services.bus.blobs import BlobStore
from services.bus.file_records import FileRecords
from services.bus.file_usage import FileUsage
from services.bus.quota_ledger import Counters
from services.cli import nats_server

LIMITS = files.StorageLimits(max_bytes=500, total_bytes=1000, max_count=100)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A nats-server enforcing the roles' permissions; the credentials' home."""
    home = tmp_path_factory.mktemp("home")
    port = nats_server.free_port()
    url = f"nats://127.0.0.1:{port}"
    users = {u: credentials.ensure(home, u, url) for u in ("admin", "ingress")}
    server = nats_server.start(home / "nats", port, authorization=credentials.server_block(users))
    yield url, home
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
async def replicas(secured: tuple[str, Path]) -> AsyncIterator[list[Client]]:
    """Two ingress processes' connections, the buckets and streams made by the admin."""
    url, home = secured
    admin = await process.connect("admin", url, str(credentials.path_of(home, "admin")))
    await quota_ledger.ensure_streams(admin)
    await file_records.ensure_bucket(admin.jetstream())
    await blobs.ensure_stores(admin.jetstream(), media_ttl_s=3600)
    await admin.close()
    clients = [await process.connect("ingress", url, str(credentials.path_of(home, "ingress"))) for _ in range(2)]
    yield clients
    for client in clients:
        await client.close()


def usage_of(nc: Client) -> FileUsage:
    return FileUsage(Counters(nc.jetstream()), FileRecords(nc.jetstream()))


async def record_on(usage: FileUsage, tenant: str, file_id: str, name: str, size: int) -> FileRecord:
    record = FileRecord(
        id=file_id,
        bytes=size,
        created_at=int(time.time()),
        filename="f.txt",
        purpose="user_data",
        tenant_id=tenant,
        key_id="k",
        blob=BlobRef(name=name, size=size),
    )
    await usage.records.create(record)
    return record


@pytest.mark.timeout(60)
async def test_two_replicas_holding_at_once_never_pass_the_total(replicas: list[Client]) -> None:
    usages = [usage_of(nc) for nc in replicas]
    tenant = "race"
    ids = [files.new_file_id() for _ in range(24)]
    results = await asyncio.gather(
        *(usages[i % 2].hold(tenant, fid, blobs.new_name(tenant, "file"), 100, LIMITS) for i, fid in enumerate(ids)),
        return_exceptions=True,
    )
    held = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(held) == 10 and all(isinstance(r, InvalidRequest) and r.code == "file_storage_limit" for r in refused)
    assert await usages[0].used(tenant) == (1000, 10)
    # Settled to their sizes (a record each), then two given back: room for the next.
    for h in held[:8]:
        await record_on(h.usage, tenant, h.hold.file_id, h.hold.blob_name, 50)
        await h.settle(50)
    for h in held[8:]:
        await h.release()
    assert await usages[1].used(tenant) == (400, 8)
    assert [h async for h in usages[0].records.holds()] == []
    assert await usages[0].used("another") == (0, 0)


@pytest.mark.timeout(60)
async def test_a_record_is_removed_once_and_its_marker_ages_out(
    replicas: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_records, "MARKER_TTL_S", 2.0)
    usage = usage_of(replicas[0])
    tenant = "removal"
    name = blobs.new_name(tenant, "file")
    gw = SimpleNamespace(files=usage.records, counters=usage.counters, blobs=BlobStore(replicas[0].jetstream()))
    held = await usage.hold(tenant, files.new_file_id(), name, 300, LIMITS)
    record = await record_on(usage, tenant, held.hold.file_id, name, 120)
    await held.settle(120)
    # The tenant's listing and the sweep of records read records only, never a hold.
    other = await usage.hold(tenant, files.new_file_id(), blobs.new_name(tenant, "file"), 10, LIMITS)
    assert [r.id async for r in usage.records.of_tenant(tenant)] == [record.id]
    assert record.id in [r.id async for r in usage.records.every()]
    assert [h.file_id async for h, _ in usage.records.holds()] == [other.hold.file_id]
    await other.release()
    assert await usage.used(tenant) == (120, 1)
    # Deletes at once from both replicas: the record goes once, given back once.
    gw2 = SimpleNamespace(files=FileRecords(replicas[1].jetstream()), counters=usage.counters, blobs=gw.blobs)
    await asyncio.gather(file_store.delete_file(gw, record), file_store.delete_file(gw2, record))  # type: ignore[arg-type]
    assert await usage.records.get(tenant, record.id) is None
    assert await usage.used(tenant) == (0, 0)
    key = f"$KV.{subjects.KV_FILES}.{file_records.record_key(tenant, record.id)}"
    stream = f"KV_{subjects.KV_FILES}"
    js = replicas[0].jetstream()
    assert ((await js.stream_info(stream, subjects_filter=key)).state.subjects or {}).get(key) == 1  # the marker
    deadline = time.monotonic() + 10
    while ((await js.stream_info(stream, subjects_filter=key)).state.subjects or {}).get(key):
        assert time.monotonic() < deadline, "the removal's marker was kept"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(60)
async def test_the_sweep_settles_the_writes_of_a_process_that_died(replicas: list[Client]) -> None:
    usage = usage_of(replicas[0])
    store = BlobStore(replicas[0].jetstream())
    await store.start()
    tenant = "dead"

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    # One died mid-write (its bytes kept, no record); one after its record was made.
    lost = await usage.hold(tenant, files.new_file_id(), blobs.new_name(tenant, "file"), 400, LIMITS)
    await store.put_stream(lost.hold.blob_name, one(b"x" * 100))
    made = await usage.hold(tenant, files.new_file_id(), blobs.new_name(tenant, "file"), 400, LIMITS)
    await record_on(usage, tenant, made.hold.file_id, made.hold.blob_name, 30)
    assert await usage.used(tenant) == (800, 2)
    # Swept by the other replica once they ran out.
    sweeper = usage_of(replicas[1])
    assert await sweeper.settle_abandoned(BlobStore(replicas[1].jetstream()), now_s=time.time()) == 0
    assert await sweeper.settle_abandoned(BlobStore(replicas[1].jetstream()), now_s=made.hold.until + 1) == 2
    assert await usage.used(tenant) == (30, 1)
    assert await store.info(lost.hold.blob_name) is None
    assert [h async for h in usage.records.holds()] == []
