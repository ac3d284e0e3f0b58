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


async def keep_record(gw: Gateway, record: FileRecord) -> FileRecord:
    """Make the record of a blob already kept; the blob is deleted if the
    record cannot be made (nothing would ever name it)."""
    try:
        await gw.files.create(record)
    except BaseException:
        await discard_blob(gw, record.blob.name)
        raise
    return record


async def create_file(
    gw: Gateway, tenant_id: str, key_id: str, filename: str, purpose: FilePurpose, chunks: AsyncIterator[bytes]
) -> FileRecord:
    """Keep a file the gateway made (a batch's output or error file,
    ``purpose`` "batch_output") from ``chunks`` as they come, under the
    tenant and the key it is made for; its record. Expires as the gateway's
    ``files_retention_s`` says for its purpose. No size cap: the gateway's
    own output, bounded by what made it."""
    created_at = int(time.time())
    blob = await gw.blobs.put_stream(blob_name(gw, tenant_id), chunks, content_type=files.JSONL, filename=filename)
    expires_at = files.expires_at(purpose, created_at, None, None, gw.settings.files_retention_s)
    record = record_of(
        tenant_id=tenant_id,
        key_id=key_id,
        filename=filename,
        purpose=purpose,
        blob=blob,
        created_at=created_at,
        expires_at=expires_at,
    )
    return await keep_record(gw, record)


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
    retried DELETE, two sweeps at once) is harmless."""
    await gw.blobs.delete(record.blob.name)
    await gw.files.delete(record.tenant_id, record.id)


async def discard_blob(gw: Gateway, name: str) -> None:
    """Delete bytes no record will name, without raising: the caller is
    already answering another error."""
    try:
        await gw.blobs.delete(name)
    except Exception:
        log.exception("could not delete the blob %s; it is left in the store", name)
