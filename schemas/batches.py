"""OpenAI's Batch API: a batch as callers see it (``Batch``) and as the
gateway keeps it (``BatchRecord``: the same fields, plus whose it is), the
line each queued job carries (``BatchLine``), and the outcome each line
ends with (``BatchOutput``, one line of the output or error file).

A record is kept in ``subjects.KV_BATCHES`` under "<tenant>.<batch id>";
each line's outcome in ``subjects.KV_BATCH_LINES`` under
"<batch id>.o.<line>", written once (a KV create): ``request_counts`` are
counted from those, never kept in memory, so they hold across restarts.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.native_batch import NativeRun

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
# The endpoints a batch may name: each line is a request to it.
BatchEndpoint = Literal["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages"]


class BatchError(msgspec.Struct):
    """Why a batch failed (one of ``Batch.errors``), or why one line has no answer."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(msgspec.Struct):
    data: list[BatchError] = []
    object: Literal["list"] = "list"


class RequestCounts(msgspec.Struct):
    total: int = 0
    completed: int = 0
    failed: int = 0


class Batch(msgspec.Struct):
    """OpenAI's ``batch`` object, field for field (``GET /v1/batches/{id}``)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: BatchStatus
    created_at: int
    object: Literal["batch"] = "batch"
    errors: BatchErrors | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = msgspec.field(default_factory=RequestCounts)
    metadata: dict[str, str] | None = None


class BatchRecord(Batch, kw_only=True):
    """What ``KV_BATCHES`` holds: the caller-visible fields, and the tenant
    and key whose it is (its lines run under that key, by id)."""

    tenant_id: str
    key_id: str
    # A batch run as one batch of its model's provider (``schemas.native_batch``).
    native: NativeRun | None = None
    # ``output_expires_after[seconds]``: how long its output and error files
    # are kept (0: the gateway's ``files_retention_s``).
    output_expires_after_s: int = 0

    def public(self) -> Batch:
        """The record as its owner sees it: nothing of the gateway's own."""
        return Batch(**{name: getattr(self, name) for name in Batch.__struct_fields__})


class BatchList(msgspec.Struct):
    """``GET /v1/batches``'s answer: one page, OpenAI's cursor shape."""

    data: list[Batch]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: Literal["list"] = "list"


class BatchLine(msgspec.Struct, omit_defaults=True):
    """A queued job of a batch (JSON, on ``sluice.v1.batchq.<tenant>.<api>``):
    the line's body as the caller wrote it, and where its outcome goes."""

    batch_id: str
    line: int
    custom_id: str
    body: msgspec.Raw


class LineResponse(msgspec.Struct):
    """What the endpoint answered the line's request: its HTTP status and
    body, exactly as ``POST <endpoint>`` would have."""

    status_code: int
    request_id: str
    body: msgspec.Raw


class BatchOutput(msgspec.Struct):
    """One line of the output file (a 2xx answer) or the error file (any
    other answer, or ``error``: the line never ran, e.g. "batch_cancelled")."""

    id: str
    custom_id: str
    response: LineResponse | None
    error: BatchError | None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.response is not None and 200 <= self.response.status_code < 300


encode_record = msgspec.msgpack.Encoder().encode
decode_record = msgspec.msgpack.Decoder(BatchRecord).decode
encode_line = msgspec.json.Encoder().encode
decode_line = msgspec.json.Decoder(BatchLine).decode
encode_output = msgspec.json.Encoder().encode
decode_output = msgspec.json.Decoder(BatchOutput).decode
