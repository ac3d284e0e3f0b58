"""OpenAI's Files API: a file as callers see it (``FileObject``) and as the
gateway keeps it (``FileRecord``: the same fields, plus whose it is and
where its bytes are).

A record is kept in ``subjects.KV_FILES`` under "<tenant>.<file id>", so a
key finds only its own tenant's; the bytes are a blob of kind "file" in
``subjects.OBJ_BLOBS``, never on the bus.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.tasks import BlobRef

# What a file is for. Callers upload the first six; "batch_output" is the
# gateway's own (a batch's output and error files), never an upload's.
FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals", "batch_output"]


class FileObject(msgspec.Struct):
    """OpenAI's ``file`` object, field for field (``GET /v1/files/{id}``).
    ``status`` is deprecated upstream and always "processed" here: a file is
    whole and kept before its record exists."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    object: Literal["file"] = "file"
    status: Literal["processed"] = "processed"
    # Unix seconds; None: kept until deleted.
    expires_at: int | None = None


class FileRecord(FileObject, kw_only=True):
    """What ``KV_FILES`` holds: the caller-visible fields and the owner's
    tenant and key, and the blob with the bytes (its size and sha256)."""

    tenant_id: str
    key_id: str
    blob: BlobRef

    def public(self) -> FileObject:
        """The record as its owner sees it: nothing of the gateway's own."""
        return FileObject(**{name: getattr(self, name) for name in FileObject.__struct_fields__})


class FileDeleted(msgspec.Struct):
    """``DELETE /v1/files/{id}``'s answer."""

    id: str
    deleted: bool
    object: Literal["file"] = "file"


class FileList(msgspec.Struct):
    """``GET /v1/files``'s answer: one page, OpenAI's cursor shape."""

    data: list[FileObject]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: Literal["list"] = "list"


encode_record = msgspec.msgpack.Encoder().encode
decode_record = msgspec.msgpack.Decoder(FileRecord).decode


class FileHold(msgspec.Struct, kw_only=True):
    """A file being kept, counted in its tenant's totals before its size is
    known (``services.bus.file_usage``): in ``KV_FILES`` under
    "<tenant>.hold.<file id>" from before the first byte until its record
    is made or it is given up. Its writer renews ``until`` while the bytes
    move; one past it was left by a process that died mid-write, and the
    sweep settles it (to the record's size if the record was made, else
    to nothing, its bytes deleted)."""

    tenant_id: str
    file_id: str
    blob_name: str
    # Bytes counted for it in the tenant's total (it counts as one file too).
    reserved: int
    # Unix seconds.
    until: float


encode_hold = msgspec.msgpack.Encoder().encode
decode_hold = msgspec.msgpack.Decoder(FileHold).decode
