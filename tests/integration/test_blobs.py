"""The object stores against a real nats-server: a large stream kept and
read back in bounded memory, refusals and abandoned writes that leave
nothing behind, NATS's own object store client reading ours (and ours its),
and the roles' permissions as the server enforces them."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import ObjectMeta

from ingress.http import ClientDisconnected
from schemas import subjects
from schemas.errors import InternalError, InvalidRequest, RecordNotFound, RequestTooLarge
from schemas.tasks import BlobRef
from services.bus import blobs, credentials, process
from services.bus.blobs import BlobStore
from services.cli import bootstrap, nats_server
from services.config import ControlRecords

MB = 1024 * 1024


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await process.connect("blobs-test", nats_url)
    await blobs.ensure_stores(client.jetstream(), media_ttl_s=3600)
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def store(nc: Client) -> BlobStore:
    s = BlobStore(nc.jetstream())
    await s.start()
    return s


async def pieces(total: int, size: int, seed: bytes = b"") -> AsyncIterator[bytes]:
    """``total`` bytes in pieces of ``size`` (the last shorter), made as they
    are asked for: never all in memory."""
    block = hashlib.sha256(seed).digest() * (size // 32 + 1)
    sent = n = 0
    while sent < total:
        piece = (n.to_bytes(8, "big") + block)[: min(size, total - sent)]
        sent += len(piece)
        n += 1
        yield piece


async def chunk_messages(nc: Client, bucket: str) -> int:
    info = await nc.jetstream().stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.C.>")
    return info.state.messages


async def read_all(store: BlobStore, ref: BlobRef) -> bytes:
    return b"".join([piece async for piece in store.read(ref)])


@pytest.mark.timeout(180)
async def test_a_200_mb_stream_is_kept_and_read_back_in_bounded_memory(store: BlobStore) -> None:
    total = 200 * MB
    # Warm up (code paths, the ack inbox, the allocator's arenas) before the baseline.
    warm = await store.put_stream(blobs.new_name("acme", "file"), pieces(2 * MB, 65536))
    await read_all(store, warm)
    base = rss_bytes()
    peak = base
    sent = hashlib.sha256()

    async def measured() -> AsyncIterator[bytes]:
        nonlocal peak
        async for piece in pieces(total, 65536, b"big"):
            sent.update(piece)
            peak = max(peak, rss_bytes()) if piece[7] == 0 else peak  # every 256th piece
            yield piece

    ref = await store.put_stream(
        blobs.new_name("acme", "file"), measured(), content_type="application/octet-stream", filename="big.bin"
    )
    assert ref.size == total and ref.sha256 == sent.hexdigest()
    assert ref.filename == "big.bin" and ref.content_type == "application/octet-stream"
    put_peak = peak

    got, size, count = hashlib.sha256(), 0, 0
    async for chunk in store.read(ref):
        got.update(chunk)
        size += len(chunk)
        count += 1
        if count % 64 == 0:
            peak = max(peak, rss_bytes())
    assert size == total and got.hexdigest() == ref.sha256
    assert count == total // blobs.CHUNK_BYTES
    print(
        f"\nRSS baseline {base / MB:.1f} MB; peak growth writing 200 MB {(put_peak - base) / MB:.2f} MB, "
        f"reading it back {(peak - base) / MB:.2f} MB"
    )
    assert put_peak - base < 64 * MB
    assert peak - base < 64 * MB
    await store.delete(ref.name)
    await store.delete(warm.name)


async def test_past_max_bytes_the_write_is_refused_and_nothing_is_left(nc: Client, store: BlobStore) -> None:
    before = await chunk_messages(nc, subjects.OBJ_MEDIA)
    name = blobs.new_name("acme", "upload")
    with pytest.raises(RequestTooLarge) as refused:
        await store.put_stream(name, pieces(3 * MB, 100_000), max_bytes=2 * MB)
    assert refused.value.code == "file_too_large" and refused.value.status == 413
    assert await chunk_messages(nc, subjects.OBJ_MEDIA) == before
    assert await store.info(name) is None
    # Exactly at the limit is allowed.
    ref = await store.put_stream(name, pieces(2 * MB, 100_000), max_bytes=2 * MB)
    assert ref.size == 2 * MB
    await store.delete(name)
    assert await chunk_messages(nc, subjects.OBJ_MEDIA) == before


async def test_a_write_whose_client_left_is_removed(nc: Client, store: BlobStore) -> None:
    before = await chunk_messages(nc, subjects.OBJ_MEDIA)
    name = blobs.new_name("acme", "upload")

    async def leaves() -> AsyncIterator[bytes]:
        async for piece in pieces(MB, 50_000):
            yield piece
        raise ClientDisconnected

    with pytest.raises(ClientDisconnected):
        await store.put_stream(name, leaves())
    assert await chunk_messages(nc, subjects.OBJ_MEDIA) == before
    assert await store.info(name) is None


async def test_nats_object_store_reads_ours_and_we_read_its(nc: Client, store: BlobStore) -> None:
    js = nc.jetstream()
    name = blobs.new_name("acme", "file")
    data = os.urandom(300_000)
    ref = await store.write(name, data, "image/png", 3600)
    assert ref == BlobRef(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), content_type="image/png")
    theirs = await js.object_store(subjects.OBJ_BLOBS)
    got = await theirs.get(name)  # checks the digest itself (DigestMismatchError)
    assert got.data == data and got.info.size == len(data) and got.info.chunks == 3
    assert got.info.headers == {"Content-Type": ["image/png"]}

    other = blobs.new_name("acme", "file")
    await theirs.put(other, data[:200_000], meta=ObjectMeta(name=other))
    assert await read_all(store, BlobRef(name=other, size=200_000)) == data[:200_000]
    await store.delete(other)
    await store.delete(name)


async def test_empty_and_odd_sized_objects(store: BlobStore) -> None:
    empty = await store.write(blobs.new_name("-", "image"), b"", "image/png", 60)
    assert empty.size == 0 and await read_all(store, empty) == b""
    odd = await store.put_stream(blobs.new_name("-", "image"), pieces(blobs.CHUNK_BYTES + 1, 7))
    assert len(await read_all(store, odd)) == blobs.CHUNK_BYTES + 1
    for ref in (empty, odd):
        await store.delete(ref.name)


async def test_a_deleted_object_is_gone_and_deleting_again_is_harmless(nc: Client, store: BlobStore) -> None:
    before = await chunk_messages(nc, subjects.OBJ_BLOBS)
    ref = await store.write(blobs.new_name("acme", "file"), b"x" * 1000, "text/plain", 0)
    await store.delete(ref.name)
    await store.delete(ref.name)
    assert await chunk_messages(nc, subjects.OBJ_BLOBS) == before
    with pytest.raises(RecordNotFound):
        await read_all(store, ref)


async def test_what_is_stored_must_be_what_the_ref_names(store: BlobStore) -> None:
    ref = await store.write(blobs.new_name("acme", "image"), b"y" * 5000, "image/png", 60)
    with pytest.raises(InternalError):  # the digest, checked at the end
        await read_all(store, BlobRef(name=ref.name, size=ref.size, sha256="0" * 64))
    with pytest.raises(InternalError):  # the size, checked first
        await read_all(store, BlobRef(name=ref.name, size=ref.size + 1))
    await store.delete(ref.name)


async def test_media_age_follows_the_setting(nc: Client) -> None:
    js = nc.jetstream()
    await blobs.ensure_stores(js, media_ttl_s=120)
    assert (await js.stream_info(f"OBJ_{subjects.OBJ_MEDIA}")).config.max_age == 120
    assert not (await js.stream_info(f"OBJ_{subjects.OBJ_BLOBS}")).config.max_age
    await blobs.ensure_stores(js, media_ttl_s=3600)


async def test_the_bootstrap_makes_the_stores_with_the_configured_age(nc: Client) -> None:
    js = nc.jetstream()
    # (responses_ttl_s and mcp_session_ttl_s given: their defaults are GatewaySettings' descriptors)
    records = ControlRecords(keys={}, tenants={}, routes={}, responses_ttl_s=60, mcp_session_ttl_s=60, media_ttl_s=900)
    await bootstrap.prepare(nc, records)
    assert (await js.stream_info(f"OBJ_{subjects.OBJ_MEDIA}")).config.max_age == 900
    await blobs.ensure_stores(js, media_ttl_s=3600)


@pytest.mark.parametrize(
    "name",
    [
        "acme/file/../../etc/passwd",
        "acme/file/abc",  # too short an id
        "acme/file/" + "a" * 65,
        "acme/files/" + "a" * 24,
        "ac me/file/" + "a" * 24,
        "acme/file/" + "a" * 23 + "*",
        "acme/file/" + "a" * 23 + ">",
        "acme/file/" + "a" * 23 + ".",
        "/file/" + "a" * 24,
        "acme/file/" + "a" * 24 + "/x",
        "acme/file/" + "a" * 24 + "\n",
        "",
    ],
)
def test_names_not_of_the_gateway_form_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        blobs.bucket_of(name)


def test_new_names_say_their_store_and_are_unguessable() -> None:
    assert blobs.bucket_of(blobs.new_name("acme", "file")) == subjects.OBJ_BLOBS
    assert blobs.bucket_of(blobs.new_name("acme", "upload")) == subjects.OBJ_MEDIA
    assert blobs.bucket_of(blobs.new_name("", "image")) == subjects.OBJ_MEDIA
    assert blobs.tenant_of(blobs.new_name("", "image")) == ""
    assert len({blobs.new_name("acme", "file") for _ in range(1000)}) == 1000
    with pytest.raises(InvalidRequest):
        blobs.new_name("acme", "secret")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A nats-server enforcing the roles' permissions; the credentials' home."""
    home = tmp_path_factory.mktemp("home")
    port = nats_server.free_port()
    url = f"nats://127.0.0.1:{port}"
    users = {u: credentials.ensure(home, u, url) for u in ("admin", "ingress", "provider", "policy")}
    server = nats_server.start(home / "nats", port, authorization=credentials.server_block(users))
    yield url, home
    server.terminate()
    server.wait(10)


@pytest.mark.timeout(60)
async def test_the_roles_may_what_their_grants_say(secured: tuple[str, Path]) -> None:
    url, home = secured
    admin = await process.connect("admin", url, str(credentials.path_of(home, "admin")))
    ingress = await process.connect("ingress", url, str(credentials.path_of(home, "ingress")))
    provider = await process.connect("provider", url, str(credentials.path_of(home, "provider")))
    policy = await process.connect("policy", url, str(credentials.path_of(home, "policy")))
    try:
        await blobs.ensure_stores(admin.jetstream(), media_ttl_s=3600)
        at_ingress = BlobStore(ingress.jetstream())
        at_provider = BlobStore(provider.jetstream(), may_purge=False)
        await at_ingress.start()
        await at_provider.start()
        upload = await at_ingress.put_stream(blobs.new_name("acme", "upload"), pieces(300_000, 65536))
        file = await at_ingress.put_stream(blobs.new_name("acme", "file"), pieces(1000, 1000))
        assert len(await read_all(at_ingress, file)) == 1000
        # The provider reads uploads and writes images...
        assert len(await read_all(at_provider, upload)) == 300_000
        image = await at_provider.write(blobs.new_name("acme", "image"), b"png" * 1000, "image/png", 60)
        assert len(await read_all(at_ingress, image)) == 3000
        # ...but neither reads nor writes files (a refused request is answered by no one: a 503 after the timeout)
        js = provider.jetstream(timeout=1)
        with pytest.raises(InternalError):
            await read_all(BlobStore(js), file)
        # A stage with no grant reads nothing.
        with pytest.raises(InternalError):
            await read_all(BlobStore(policy.jetstream(timeout=1)), upload)
        for ref in (upload, file, image):
            await at_ingress.delete(ref.name)
            assert await at_ingress.info(ref.name) is None
    finally:
        for client in (admin, ingress, provider, policy):
            await client.close()
