"""Files of the Files API, kept and read by the gateway's own code: the
upload door (``ingress.files_endpoint``), the Batch API (its input file
read, its output and error files written) and the retention sweep.

A file is two things: its bytes, a blob of kind "file" in the object store
(``gw.blobs``), and its record in ``KV_FILES`` (``gw.files``). The blob is
kept first and the record made after, and a delete goes the other way
round (blob, then record), so a record never names bytes that were never
kept, and a crash between the two leaves a record the next delete or
sweep finishes. Bytes stream in and out a slice at a time: a file of any
size never sits in a process's memory.

Every file counts in its tenant's totals (``services.bus.file_usage``):
held before its first byte, settled once its record is made, given back
when it is not kept or is deleted (by whichever delete removes the record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from schemas.files import FilePurpose, FileRecord
from schemas.tasks import BlobRef
from services import files
from services.bus.blobs import new_name
from services.bus.file_usage import FileUsage, Held

if TYPE_CHECKING:
    from ingress.gateway import Gateway

log = logging.getLogger("sluice.files")


def blob_name(gw: Gateway, tenant_id: str) -> str:
    """A new name for a file's bytes, under its tenant."""
    return new_name(tenant_id, "file")


def record_of(
    *,
    tenant_id: str,
    key_id: str,
    filename: str,
    purpose: FilePurpose,
    blob: BlobRef,
    created_at: int,
    expires_at: int | None,
    file_id: str | None = None,
) -> FileRecord:
    return FileRecord(
        id=file_id or files.new_file_id(),
        bytes=blob.size,
        created_at=created_at,
        filename=files.safe_filename(filename),
        purpose=purpose,
        expires_at=expires_at,
        tenant_id=tenant_id,
        key_id=key_id,
        blob=blob,
    )


def usage_of(gw: Gateway) -> FileUsage:
    return FileUsage(gw.counters, gw.files)


async def hold_file(
    gw: Gateway, tenant_id: str, reserved: int, limits: files.StorageLimits | None
) -> tuple[str, str, Held]:
    """A new file's id and blob name, counted in its tenant's totals at
    ``reserved`` bytes (``files.storage_full`` past ``limits``)."""
    file_id, name = files.new_file_id(), blob_name(gw, tenant_id)
    return file_id, name, await usage_of(gw).hold(tenant_id, file_id, name, reserved, limits)


async def keep_record(gw: Gateway, record: FileRecord, held: Held) -> FileRecord:
    """Make the record of a blob already kept under ``held``, and count the
    file at its size; the blob is deleted and the hold given back if the
    record cannot be made (nothing would ever name it)."""
    try:
        await held.renew()  # still held: a sweep that found it run out deleted its bytes
        await gw.files.create(record)
    except BaseException:
        await discard_blob(gw, record.blob.name)
        await held.release()
        raise
    await held.settle(record.bytes)
    return record


async def create_file(
    gw: Gateway,
    tenant_id: str,
    key_id: str,
    filename: str,
    purpose: FilePurpose,
    chunks: AsyncIterator[bytes],
    expires_after_s: int = 0,
) -> FileRecord:
    """Keep a file the gateway made (a batch's output or error file,
    ``purpose`` "batch_output") from ``chunks`` as they come, under the
    tenant and the key it is made for; its record. Expires ``expires_after_s``
    after it is made (its batch's ``output_expires_after``), else as the
    gateway's ``files_retention_s`` says for its purpose. No size cap: the gateway's
    own output, bounded by what made it. It counts in the tenant's totals
    but is never refused by them (the lines it holds ran and were paid for):
    a tenant past them uploads nothing more until it deletes."""
    created_at = int(time.time())
    file_id, name, held = await hold_file(gw, tenant_id, 0, None)
    try:
        blob = await gw.blobs.put_stream(name, held.renewing(chunks), content_type=files.JSONL, filename=filename)
    except BaseException:
        await held.release()
        raise
    expires_at = (
        created_at + expires_after_s
        if expires_after_s > 0
        else files.expires_at(purpose, created_at, None, None, gw.settings.files_retention_s)
    )
    record = record_of(
        tenant_id=tenant_id,
        key_id=key_id,
        filename=filename,
        purpose=purpose,
        blob=blob,
        created_at=created_at,
        expires_at=expires_at,
        file_id=file_id,
    )
    return await keep_record(gw, record, held)


async def open_file(gw: Gateway, tenant_id: str, file_id: str) -> FileRecord:
    """The tenant's file of that id. ``InvalidRequest`` 404 (OpenAI's "No
    such File object") for an id that is not a file id, another tenant's
    file, one deleted or expired: all alike, so none tells that a file exists."""
    record = await gw.files.get(tenant_id, file_id) if files.is_file_id(file_id) else None
    if record is None or record.tenant_id != tenant_id or files.is_expired(record, time.time()):
        raise files.not_found(file_id)
    return record


def read_file(gw: Gateway, record: FileRecord) -> AsyncIterator[bytes]:
    """The file's bytes, a slice at a time, in order; its digest is checked
    at the end (``InternalError`` if the bytes are not what was kept)."""
    return gw.blobs.read(record.blob)


async def delete_file(gw: Gateway, record: FileRecord) -> None:
    """Bytes, then record; each is idempotent, so deleting twice (a
    retried DELETE, two sweeps at once) is harmless. The record is removed
    at the revision read first, so of two deletes at once exactly one
    removes it, and that one gives back what the file counted."""
    found = await gw.files.entry(record.tenant_id, record.id)
    await gw.blobs.delete(record.blob.name)
    if found is None:
        return
    if await gw.files.remove(record.tenant_id, record.id, found[1]):
        await usage_of(gw).adjust(record.tenant_id, -found[0].bytes, -1, f"{record.id}.delete")


async def discard_blob(gw: Gateway, name: str) -> None:
    """Delete bytes no record will name, without raising: the caller is
    already answering another error."""
    try:
        await gw.blobs.delete(name)
    except Exception:
        log.exception("could not delete the blob %s; it is left in the store", name)
