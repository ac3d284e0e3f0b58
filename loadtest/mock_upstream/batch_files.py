"""The mock's Files API store (OpenAI's ``/v1/files``, Azure's ``/openai/files``):
files in memory, each at most MAX_FILE_BYTES (OpenAI's limit for a batch's
input file), all uploads together at most MAX_STORED_BYTES; a body is read
no further into memory than its limit allows. Batch outputs are kept here too."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import msgspec

MAX_FILE_BYTES = 200 * 1024 * 1024
# A form's fields and part heads beside its file.
FORM_SLACK = 64 * 1024
MAX_STORED_BYTES = 1024 * 1024 * 1024
# The purposes OpenAI's file object may carry.
PURPOSES = frozenset(
    {"assistants", "assistants_output", "batch", "batch_output", "fine-tune", "fine-tune-results", "vision"}
    | {"user_data", "evals"}
)
# OpenAI: files of purpose batch (and a batch's outputs) expire after 30 days.
BATCH_FILE_TTL_S = 30 * 24 * 3600
_PARAM = re.compile(r'([A-Za-z0-9_*-]+)="([^"]*)"')


class TooLarge(Exception):
    pass


class BadForm(Exception):
    pass


class StoredFile(msgspec.Struct):
    id: str
    # Who may see it: "<upstream name>/<family>" (a file of one named upstream is unknown to another).
    owner: str
    filename: str
    purpose: str
    created_at: int
    data: bytes

    def object(self) -> dict[str, Any]:
        """OpenAI's file object."""
        expires = self.created_at + BATCH_FILE_TTL_S if self.purpose in ("batch", "batch_output") else None
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": expires,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.uploaded_bytes = 0

    def add(self, owner: str, filename: str, purpose: str, data: bytes, upload: bool = True) -> StoredFile:
        """Raises TooLarge when an upload would take the store past MAX_STORED_BYTES."""
        if upload and self.uploaded_bytes + len(data) > MAX_STORED_BYTES:
            raise TooLarge
        stored = StoredFile(f"file-{secrets.token_hex(12)}", owner, filename, purpose, int(time.time()), data)
        self.files[stored.id] = stored
        if upload:
            self.uploaded_bytes += len(data)
        return stored

    def get(self, owner: str, file_id: str) -> StoredFile | None:
        stored = self.files.get(file_id)
        return stored if stored is not None and stored.owner == owner else None

    def delete(self, owner: str, file_id: str) -> bool:
        stored = self.get(owner, file_id)
        if stored is None:
            return False
        del self.files[file_id]
        if stored.purpose != "batch_output":
            self.uploaded_bytes -= len(stored.data)
        return True

    def owned(self, owner: str) -> list[StoredFile]:
        """The owner's files, newest first."""
        return [f for f in reversed(self.files.values()) if f.owner == owner]

    def clear(self) -> None:
        self.files.clear()
        self.uploaded_bytes = 0


async def read_bounded(receive: Any, limit: int) -> bytes:
    """The request's body; TooLarge past ``limit`` bytes (the rest is read and dropped)."""
    body = bytearray()
    over = False
    while True:
        msg = await receive()
        chunk = msg.get("body", b"")
        if not over and len(body) + len(chunk) > limit:
            over = True
            body = bytearray()
        if not over:
            body += chunk
        if not msg.get("more_body"):
            break
    if over:
        raise TooLarge
    return bytes(body)


def read_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart/form-data body: its text fields, and its files by field name
    (filename, content), each file copied out of the body once. Raises BadForm."""
    kind, _, params = content_type.partition(";")
    boundary = next(
        (v.strip().strip('"') for k, _, v in (p.strip().partition("=") for p in params.split(";")) if k == "boundary"),
        "",
    )
    if kind.strip().lower() != "multipart/form-data" or not boundary:
        raise BadForm("not multipart/form-data")
    delimiter = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    at = body.find(delimiter)
    while at != -1:
        start = at + len(delimiter)
        if body.startswith(b"--", start):
            return fields, files
        start += 2 if body.startswith(b"\r\n", start) else 0
        head_end = body.find(b"\r\n\r\n", start)
        end = body.find(b"\r\n" + delimiter, head_end + 4) if head_end != -1 else -1
        if end == -1:
            raise BadForm("a part is cut short")
        head = body[start:head_end].decode("latin-1")
        disposition = next((h for h in head.split("\r\n") if h.lower().startswith("content-disposition")), "")
        found = dict(_PARAM.findall(disposition))
        name = found.get("name", "")
        if "filename" in found:
            files[name] = (found["filename"], body[head_end + 4 : end])
        else:
            fields[name] = body[head_end + 4 : end].decode("utf-8", "replace")
        at = end + 2
    raise BadForm("no closing boundary")
