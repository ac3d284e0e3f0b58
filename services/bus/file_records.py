"""The Files API's records in their KV bucket (``subjects.KV_FILES``):
"<tenant>.<file id>" -> ``schemas.files.FileRecord``.

A tenant's files are read with a watch filtered on its own keys (the
stream's last record per key, then the end), not from a copy kept in
memory: every ingress replica sees a file the moment another made it, a
listing costs what the one tenant holds, and no process keeps every
tenant's records. Records never change once made; a deleted one leaves
only its purge marker (a few bytes).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from schemas import subjects
from schemas.control import NO_TENANT
from schemas.errors import InternalError
from schemas.files import FileRecord, decode_record, encode_record
from services.bus.kv import ensure_kv, kv_key


async def ensure_bucket(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_kv(
        js, KeyValueConfig(bucket=subjects.KV_FILES, history=1, storage=StorageType.FILE, replicas=replicas)
    )


@contextmanager
def _available() -> Iterator[None]:
    """NATS's trouble (no bucket, no answer, refused) as a 503."""
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        raise InternalError(f"The files' records are not available ({exc!r}).", status=503) from exc


def tenant_token(tenant_id: str) -> str:
    return kv_key(tenant_id) if tenant_id else NO_TENANT


def record_key(tenant_id: str, file_id: str) -> str:
    return f"{tenant_token(tenant_id)}.{kv_key(file_id)}"


class FileRecords:
    """The bucket, opened with its first use rather than at start: a
    process that never serves a file never asks for it."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            with _available():
                self._kv = await self._js.key_value(subjects.KV_FILES)
        return self._kv

    async def create(self, record: FileRecord) -> None:
        """Keep a new record (its id is new: a create, never an overwrite)."""
        kv = await self._bucket()
        with _available():
            await kv.create(record_key(record.tenant_id, record.id), encode_record(record))

    async def get(self, tenant_id: str, file_id: str) -> FileRecord | None:
        """The tenant's record of that id; None when it has none (another
        tenant's file is not looked at: the key names the tenant)."""
        kv = await self._bucket()
        with _available():
            try:
                entry = await kv.get(record_key(tenant_id, file_id))
            except KeyNotFoundError:  # deleted ones too (KeyDeletedError is one)
                return None
        record = decode_record(entry.value) if entry.value else None
        # The key names the tenant; the record says it too, and both must.
        return record if record is not None and record.tenant_id == tenant_id else None

    async def delete(self, tenant_id: str, file_id: str) -> None:
        """Gone, with its history (no error if it was not there)."""
        kv = await self._bucket()
        with _available():
            await kv.purge(record_key(tenant_id, file_id))

    def of_tenant(self, tenant_id: str) -> AsyncGenerator[FileRecord, None]:
        """Each of the tenant's records, as the stream has them now (close
        it when done early: that ends the watch). The keys watched name the
        tenant; a record that says it is another's is not its, whatever its key."""
        return self._watch(f"{tenant_token(tenant_id)}.*", tenant_id)

    def every(self) -> AsyncGenerator[FileRecord, None]:
        """Every tenant's records (the retention sweep)."""
        return self._watch(">")

    async def _watch(self, keys: str, tenant_id: str | None = None) -> AsyncGenerator[FileRecord, None]:
        kv = await self._bucket()
        with _available():
            watcher = await kv.watch(keys, ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # the records that were there are all read
                    return
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    continue
                try:
                    record = decode_record(entry.value)
                except ValueError:  # not a record of this version: never shown, never swept
                    continue
                if tenant_id is None or record.tenant_id == tenant_id:
                    yield record
        finally:
            await watcher.stop()
