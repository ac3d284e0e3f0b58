"""The Files API's records in their KV bucket (``subjects.KV_FILES``):
"<tenant>.<file id>" -> ``schemas.files.FileRecord``.

A tenant's files are read with a watch filtered on its own keys (the
stream's last record per key, then the end), not from a copy kept in
memory: every ingress replica sees a file the moment another made it, a
listing costs what the one tenant holds, and no process keeps every
tenant's records. Records never change once made.

A file being written has a hold (``schemas.files.FileHold``) under
"<tenant>.hold.<file id>": three tokens, so neither a tenant's listing nor
the sweep of records ("*.*") reads one. Holds change at their revision, and
a record or hold is removed at the revision it was read at (a purge that
expects it): of two processes removing the same one, exactly one does, and
only that one settles the tenant's totals. The purge's marker ages out
after ``MARKER_TTL_S``, so deleted files and finished writes leave nothing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import aclosing, contextmanager

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, MSG_ROLLUP_SUBJECT, KeyValue

from schemas import subjects
from schemas.control import NO_TENANT
from schemas.errors import InternalError
from schemas.files import FileHold, FileRecord, decode_hold, decode_record, encode_hold, encode_record
from services.bus.kv import ensure_kv, kv_key

# How long the marker a removal leaves is kept: long enough for a watch
# that began before it to see it, then gone (the bucket allows per-message TTLs).
MARKER_TTL_S = 300.0
# JetStream's "wrong last sequence" errors: a change expected another revision.
_WRONG_LAST = (10071, 10164)

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


def hold_key(tenant_id: str, file_id: str) -> str:
    return f"{tenant_token(tenant_id)}.hold.{kv_key(file_id)}"


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
        found = await self.entry(tenant_id, file_id)
        return found[0] if found is not None else None

    async def entry(self, tenant_id: str, file_id: str) -> tuple[FileRecord, int] | None:
        """The tenant's record of that id and its revision, or None."""
        kv = await self._bucket()
        with _available():
            try:
                entry = await kv.get(record_key(tenant_id, file_id))
            except KeyNotFoundError:  # deleted ones too (KeyDeletedError is one)
                return None
        record = decode_record(entry.value) if entry.value else None
        # The key names the tenant; the record says it too, and both must.
        return (record, entry.revision) if record is not None and record.tenant_id == tenant_id else None

    async def remove(self, tenant_id: str, file_id: str, revision: int) -> bool:
        """The record gone if it is still at ``revision``; whether this call removed it."""
        return await self._remove(record_key(tenant_id, file_id), revision)

    async def create_hold(self, hold: FileHold) -> int:
        """Keep a new hold; its revision."""
        kv = await self._bucket()
        with _available():
            return await kv.create(hold_key(hold.tenant_id, hold.file_id), encode_hold(hold))

    async def renew_hold(self, hold: FileHold, revision: int) -> int | None:
        """Write ``hold`` over the one at ``revision``; the new revision, or
        None when it is no longer there at that revision (another process
        settled it)."""
        kv = await self._bucket()
        with _available():
            try:
                return await kv.update(hold_key(hold.tenant_id, hold.file_id), encode_hold(hold), last=revision)
            except KeyWrongLastSequenceError:
                return None

    async def drop_hold(self, hold: FileHold, revision: int) -> bool:
        """The hold gone if it is still at ``revision``; whether this call removed it."""
        return await self._remove(hold_key(hold.tenant_id, hold.file_id), revision)

    async def _remove(self, key: str, revision: int) -> bool:
        # A purge that expects the revision read: refused when the key
        # changed or went since. Its marker ages out.
        headers = {
            KV_OP: KV_PURGE,
            api.Header.ROLLUP: MSG_ROLLUP_SUBJECT,
            api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision),
        }
        await self._bucket()
        with _available():
            try:
                await self._js.publish(
                    f"$KV.{subjects.KV_FILES}.{key}", headers=headers, msg_ttl=MARKER_TTL_S, timeout=5.0
                )
            except APIError as exc:
                if exc.err_code in _WRONG_LAST:
                    return False
                raise
        return True

    def of_tenant(self, tenant_id: str) -> AsyncGenerator[FileRecord, None]:
        """Each of the tenant's records, as the stream has them now (close
        it when done early: that ends the watch). The keys watched name the
        tenant; a record that says it is another's is not its, whatever its key."""
        return self._watch(f"{tenant_token(tenant_id)}.*", tenant_id)

    def every(self) -> AsyncGenerator[FileRecord, None]:
        """Every tenant's records (the retention sweep); no hold."""
        return self._watch("*.*")

    async def holds(self) -> AsyncGenerator[tuple[FileHold, int], None]:
        """Every tenant's holds, each with its revision."""
        async with aclosing(self._entries("*.hold.*")) as entries:
            async for value, revision in entries:
                try:
                    hold = decode_hold(value)
                except ValueError:
                    continue
                yield hold, revision

    async def _watch(self, keys: str, tenant_id: str | None = None) -> AsyncGenerator[FileRecord, None]:
        async with aclosing(self._entries(keys)) as entries:
            async for value, _ in entries:
                try:
                    record = decode_record(value)
                except ValueError:  # not a record of this version: never shown, never swept
                    continue
                # The key names the tenant; the record says it too, and both must.
                if tenant_id is None or record.tenant_id == tenant_id:
                    yield record

    async def _entries(self, keys: str) -> AsyncGenerator[tuple[bytes, int], None]:
        kv = await self._bucket()
        with _available():
            watcher = await kv.watch(keys, ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # the keys that were there are all read
                    return
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    continue
                yield entry.value, entry.revision
        finally:
            await watcher.stop()
