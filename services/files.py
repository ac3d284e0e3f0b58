"""The Files API's rules, apart from any I/O: which purposes an upload may
name, what a file id looks like, how large a file may be, when it expires,
and which of a tenant's files one page of ``GET /v1/files`` shows.

A file id is "file-" and a ``schemas.ids.new_id``: 80 random bits (a
caller cannot guess another's) after the creation time in milliseconds, so
ids sort in creation order. Listing and its ``after`` cursor compare ids
alone, so a page needs no record of where the previous one ended, and a
cursor whose file was deleted meanwhile still says where to go on.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal, cast
from urllib.parse import quote

import msgspec

from schemas.control import Tenant
from schemas.errors import InvalidRequest
from schemas.files import FilePurpose, FileRecord
from schemas.ids import CROCKFORD, new_id
from services.config import GatewaySettings

ID_PREFIX = "file-"
_ID = re.compile(rf"{ID_PREFIX}[{CROCKFORD}]{{26}}")
# What a caller may upload for; "batch_output" is made by the gateway alone.
UPLOAD_PURPOSES: tuple[FilePurpose, ...] = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# The purposes whose files expire by default (OpenAI: batch input and output
# files after 30 days); the others are kept until deleted.
EXPIRING_PURPOSES: frozenset[str] = frozenset({"batch", "batch_output"})
# OpenAI's bounds on ``expires_after[seconds]``: an hour to 30 days.
MIN_EXPIRY_S = 3600
MAX_EXPIRY_S = 30 * 86400
# OpenAI's bounds on ``limit`` when listing, and its default.
MAX_LIST_LIMIT = 10_000
MAX_FILENAME_CHARS = 255
# What a download may be served as when the upload said so; anything else
# (text/html, an SVG, a type with parameters a browser would act on) goes
# out as bytes: the gateway's origin also serves the portal, and a file is
# whatever its uploader made it.
SAFE_TYPES = frozenset(
    {
        "application/json",
        "application/jsonl",
        "application/pdf",
        "text/plain",
        "text/csv",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "audio/mpeg",
        "audio/wav",
        "audio/ogg",
        "audio/flac",
        "audio/webm",
        "audio/mp4",
    }
)
OCTET_STREAM = "application/octet-stream"
JSONL = "application/jsonl"

Order = Literal["asc", "desc"]


class ListQuery(msgspec.Struct, frozen=True):
    """``GET /v1/files``'s query, checked."""

    limit: int = MAX_LIST_LIMIT
    order: Order = "desc"
    after: str = ""
    purpose: str = ""


def new_file_id(now_ns: int | None = None) -> str:
    return ID_PREFIX + new_id(now_ns)


def is_file_id(text: str) -> bool:
    """Whether ``text`` could name a file: anything else is a 404 without a lookup."""
    return _ID.fullmatch(text) is not None


def not_found(file_id: str) -> InvalidRequest:
    # Said alike of an id of another tenant's, an expired one and one never
    # made: none of them tells a caller that a file exists.
    shown = file_id[:64].encode("ascii", "replace").decode()
    return InvalidRequest(f"No such File object: {shown}", status=404, code="not_found")


def upload_purpose(value: str) -> FilePurpose:
    if value not in UPLOAD_PURPOSES:
        shown = value[:40].encode("ascii", "replace").decode()
        raise InvalidRequest(f"'{shown}' is not one of {list(UPLOAD_PURPOSES)} - 'purpose'", code="invalid_purpose")
    return cast(FilePurpose, value)


def expires_at(
    purpose: FilePurpose, created_at: int, anchor: str | None, seconds: str | None, retention_s: float
) -> int | None:
    """When a file expires (Unix seconds), or None: kept until deleted.
    ``anchor`` and ``seconds`` are the upload's ``expires_after[...]`` fields
    as sent; without them a batch file lives ``retention_s`` (0: for ever)."""
    if anchor is None and seconds is None:
        if purpose in EXPIRING_PURPOSES and retention_s > 0:
            return created_at + int(retention_s)
        return None
    if anchor != "created_at":
        raise InvalidRequest("'expires_after[anchor]' must be 'created_at'.", code="invalid_expires_after")
    if seconds is None or not seconds.isascii() or not seconds.isdigit() or len(seconds) > 9:
        raise InvalidRequest("'expires_after[seconds]' must be an integer.", code="invalid_expires_after")
    if not MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S:
        raise InvalidRequest(
            f"'expires_after[seconds]' must be between {MIN_EXPIRY_S} and {MAX_EXPIRY_S}.",
            code="invalid_expires_after",
        )
    return created_at + int(seconds)


def is_expired(record: FileRecord, now_s: float) -> bool:
    return record.expires_at is not None and now_s >= record.expires_at


def cap_of(tenant: Tenant | None, default: int) -> int:
    """The largest file a tenant may upload, in bytes (0 on the tenant: the gateway's)."""
    return (tenant.files_max_bytes if tenant is not None else 0) or default


class StorageLimits(msgspec.Struct, frozen=True):
    """What a tenant may keep: one file's bytes, and all its files' bytes
    and number together (0: no total)."""

    max_bytes: int
    total_bytes: int
    max_count: int


def storage_limits(tenant: Tenant | None, settings: GatewaySettings) -> StorageLimits:
    """The tenant's limits, each 0 on the tenant standing for the gateway's."""
    own = tenant if tenant is not None else Tenant(id="")
    return StorageLimits(
        max_bytes=cap_of(tenant, settings.files_max_bytes),
        total_bytes=own.files_total_bytes or settings.files_total_bytes,
        max_count=own.files_max_count or settings.files_max_count,
    )


def reservation(limits: StorageLimits, declared: str | None) -> int:
    """The bytes an upload holds against its tenant's total until its size
    is known: no more than the body it declared (``content-length``, which
    also carries the form around the file), one file's cap, or the total
    itself (a file past the total could never be kept). The upload may keep
    no more than this."""
    held = limits.max_bytes
    if declared is not None and declared.isascii() and declared.isdigit() and len(declared) <= 18:
        held = min(held, int(declared))
    if limits.total_bytes:
        held = min(held, limits.total_bytes)
    return held


def over_total(limits: StorageLimits, total_bytes: int, total_count: int) -> bool:
    """Whether the tenant's counters, with a new file held, pass its totals."""
    return bool(
        (limits.total_bytes and total_bytes > limits.total_bytes)
        or (limits.max_count and total_count > limits.max_count)
    )


def storage_full(limits: StorageLimits) -> InvalidRequest:
    # OpenAI answers its organisations' storage limit with a 400
    # invalid_request_error ("You have exceeded your file storage quota...").
    return InvalidRequest(
        "You have exceeded your file storage quota: this tenant may keep"
        f" {_total_text(limits)}, the files being uploaded counted at their declared size."
        " Please delete old files or attempt with a smaller file size.",
        code="file_storage_limit",
    )


def _total_text(limits: StorageLimits) -> str:
    parts = []
    if limits.total_bytes:
        parts.append(f"{limits.total_bytes} bytes")
    if limits.max_count:
        parts.append(f"{limits.max_count} files")
    return " in ".join(parts) or "no more files"


def list_query(query: dict[str, list[str]]) -> ListQuery:
    """The query string of ``GET /v1/files`` (one value per name), checked."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    limit_text = one("limit")
    limit = MAX_LIST_LIMIT
    if limit_text is not None:
        digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6
        if not digits or not 1 <= int(limit_text) <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIST_LIMIT}.", code="invalid_limit")
        limit = int(limit_text)
    order = one("order") or "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", code="invalid_order")
    after = one("after") or ""
    if after and not is_file_id(after):
        raise InvalidRequest("'after' must be a file id.", code="invalid_after")
    purpose = one("purpose") or ""
    if len(purpose) > 64:
        raise InvalidRequest("'purpose' is not a purpose.", code="invalid_purpose")
    return ListQuery(limit=limit, order=cast(Order, order), after=after, purpose=purpose)


class Pager:
    """One page of a tenant's files in ``q.order`` of creation, after
    ``q.after``: records are offered one at a time as they are read, and
    only ``q.limit + 1`` are held, whatever the number of files."""

    def __init__(self, q: ListQuery, now_s: float) -> None:
        self.q = q
        self.now_s = now_s
        # A heap of (sort key, id, record) whose top is the one to drop
        # first: the page's last place, so it holds the best ``limit + 1``.
        self._heap: list[tuple[str, str, FileRecord]] = []

    def _wanted(self, r: FileRecord) -> bool:
        q = self.q
        if (q.purpose and r.purpose != q.purpose) or is_expired(r, self.now_s):
            return False
        if not q.after:
            return True
        return r.id > q.after if q.order == "asc" else r.id < q.after

    def offer(self, r: FileRecord) -> None:
        if not self._wanted(r):
            return
        # Ascending keeps the smallest ids: the heap's top is the largest
        # (ids negated by their complement); descending keeps the largest.
        key = _inverse(r.id) if self.q.order == "asc" else r.id
        entry = (key, r.id, r)
        if len(self._heap) <= self.q.limit:
            heapq.heappush(self._heap, entry)
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)

    def result(self) -> tuple[list[FileRecord], bool]:
        """The page, and whether more follow it."""
        ordered = [r for _, _, r in sorted(self._heap, reverse=True)]
        return ordered[: self.q.limit], len(ordered) > self.q.limit


def _inverse(file_id: str) -> str:
    # An id's characters mirrored in the alphabet: sorts in reverse.
    return file_id.translate(_MIRROR)


_MIRROR = str.maketrans(CROCKFORD, CROCKFORD[::-1])


def page(records: Iterable[FileRecord], q: ListQuery, now_s: float) -> tuple[list[FileRecord], bool]:
    """``Pager`` over records at hand."""
    pager = Pager(q, now_s)
    for r in records:
        pager.offer(r)
    return pager.result()


def safe_filename(name: str) -> str:
    """The name a file is listed under: the last part of what the caller
    sent, without control characters, at most ``MAX_FILENAME_CHARS``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    return kept.strip()[:MAX_FILENAME_CHARS] or "file"


def download_type(record: FileRecord) -> str:
    """The content type a file's content is served with."""
    if record.purpose in EXPIRING_PURPOSES:
        return JSONL
    declared = record.blob.content_type.strip().lower()
    return declared if declared in SAFE_TYPES else OCTET_STREAM


def content_disposition(filename: str) -> str:
    """An attachment named as listed (RFC 6266/5987: any character survives
    as its UTF-8, percent-encoded; nothing the caller chose reaches the
    header unescaped)."""
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
