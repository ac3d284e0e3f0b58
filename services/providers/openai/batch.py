"""OpenAI's Batch API and the Files API it reads from, as an upstream: pure
translation, no I/O (``services.providers.tasks.native_batch`` does the calls).

A batch is a JSONL file uploaded with purpose "batch" (a line
``{"custom_id", "method": "POST", "url", "body"}``, the body exactly what
the family's chat or embeddings adapter sends alone), then ``POST /batches``
naming it, with Sluice's batch id in ``metadata`` so that a submit sent
again finds the batch it made. Its answers come back as two JSONL files
(output and error), a line ``{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`` each. Azure OpenAI serves the same shapes
under other paths (``services.providers.azure.batch``).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, urlencode

import msgspec

from schemas.envelope import Deployment
from schemas.errors import UpstreamError
from services.providers.openai.chat import OpenAIChat
from services.providers.tasks.batch_types import BatchState, LineAnswer, UnreadableLine, named_in

LineKind = Literal["chat", "embeddings"]
# What OpenAI takes in one batch (its input file's limits).
MAX_LINES = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
# The most batches one page of ``GET /batches`` lists.
LIST_LIMIT = 100
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Error codes of lines the upstream never ran: the driver ends them itself.
NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})
METADATA_KEY = "sluice_batch_id"
UPLOAD_NAME = "sluice-batch.jsonl"
# What the official SDK sends a JSONL as (httpx guesses nothing for ".jsonl").
UPLOAD_TYPE = "application/octet-stream"
_encode = msgspec.json.Encoder().encode


class _Counts(msgspec.Struct):
    # Azure writes null until the batch runs.
    total: int | None = None
    completed: int | None = None
    failed: int | None = None


class _ErrorItem(msgspec.Struct):
    code: str | None = None
    message: str | None = None
    line: int | None = None


class _Errors(msgspec.Struct):
    data: list[_ErrorItem] | None = None


class _Batch(msgspec.Struct):
    id: str
    status: str
    endpoint: str = ""
    request_counts: _Counts | None = None
    errors: _Errors | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    metadata: dict[str, Any] | None = None


class _BatchList(msgspec.Struct):
    data: list[_Batch]
    has_more: bool = False
    last_id: str | None = None


class _File(msgspec.Struct):
    id: str


class _Response(msgspec.Struct):
    status_code: int
    body: msgspec.Raw = msgspec.Raw(b"")


class _LineError(msgspec.Struct):
    code: str | None = None
    message: str | None = None


class _Line(msgspec.Struct):
    custom_id: str
    response: _Response | None = None
    error: _LineError | None = None


_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_list = msgspec.json.Decoder(_BatchList).decode
_decode_file = msgspec.json.Decoder(_File).decode
_decode_line = msgspec.json.Decoder(_Line).decode


def safe_id(value: str) -> str:
    """An upstream's id as one path segment (it came from the upstream)."""
    if not value or len(value) > 256 or not all(c.isalnum() or c in "-_." for c in value) or value in (".", ".."):
        raise UpstreamError(f"The upstream named an object {value[:80]!r}, which is not an id.")
    return quote(value, safe="")


class OpenAIBatches:
    """OpenAI's shapes; ``chat`` gives the key's headers (an Azure adapter
    its ``api-key``)."""

    # The line ``url`` and batch ``endpoint`` of each kind of line.
    paths: dict[str, str] = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}

    def __init__(self, chat: OpenAIChat) -> None:
        self.chat = chat

    # -- where --------------------------------------------------------------
    def url(self, dep: Deployment, path: str, query: dict[str, str] | None = None) -> str:
        """``path`` under the deployment's API root (``base_url`` is ".../v1")."""
        return f"{dep.base_url}{path}" + (f"?{urlencode(query)}" if query else "")

    def headers(self, api_key: str | None, content_type: str | None = "application/json") -> dict[str, str]:
        headers = {k: v for k, v in self.chat.headers(api_key).items() if k != "content-type"}
        if content_type:
            headers["content-type"] = content_type
        return headers

    def files_url(self, dep: Deployment) -> str:
        return self.url(dep, "/files")

    def file_content_url(self, dep: Deployment, file_id: str) -> str:
        return self.url(dep, f"/files/{safe_id(file_id)}/content")

    def batches_url(self, dep: Deployment) -> str:
        return self.url(dep, "/batches")

    def list_url(self, dep: Deployment, after: str = "") -> str:
        query = {"limit": str(LIST_LIMIT)}
        if after:
            query["after"] = after
        return self.url(dep, "/batches", query)

    def batch_url(self, dep: Deployment, batch_id: str) -> str:
        return self.url(dep, f"/batches/{safe_id(batch_id)}")

    def cancel_url(self, dep: Deployment, batch_id: str) -> str:
        return self.url(dep, f"/batches/{safe_id(batch_id)}/cancel")

    # -- what is sent -------------------------------------------------------
    def line(self, custom_id: str, kind: LineKind, body: bytes) -> bytes:
        """One line of the input file: ``body`` as the adapter built it."""
        head = b'{"custom_id":' + _encode(custom_id) + b',"method":"POST","url":' + _encode(self.paths[kind])
        return head + b',"body":' + body + b"}\n"

    def upload_fields(self) -> list[tuple[str, str]]:
        return [("purpose", "batch")]

    def create_body(self, file_id: str, kind: LineKind, batch_id: str) -> bytes:
        return _encode(
            {
                "input_file_id": file_id,
                "endpoint": self.paths[kind],
                "completion_window": "24h",
                "metadata": {METADATA_KEY: batch_id},
            }
        )

    # -- what comes back ----------------------------------------------------
    def read_file(self, data: bytes) -> str:
        try:
            return _decode_file(data).id
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable file object: {exc}") from exc

    def read_batch(self, data: bytes) -> BatchState:
        try:
            return _state(_decode_batch(data))
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable batch object: {exc}") from exc

    def read_list(self, data: bytes) -> tuple[list[BatchState], str]:
        """One page of batches (newest first), and the cursor of the next page ("" at the last)."""
        try:
            page = _decode_list(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable list of batches: {exc}") from exc
        found = [_state(b) for b in page.data]
        after = (page.last_id or (page.data[-1].id if page.data else "")) if page.has_more else ""
        return found, after

    def read_line(self, line: bytes) -> LineAnswer | None:
        """One line of an output or error file; None for a line the upstream
        never ran (the batch expired or was cancelled first)."""
        try:
            parsed = _decode_line(line)
        except msgspec.DecodeError as exc:
            raise UnreadableLine(f"not a batch output line ({exc})", named_in(line)) from exc
        if parsed.response is not None:
            return LineAnswer(parsed.custom_id, parsed.response.status_code, bytes(parsed.response.body))
        error = parsed.error or _LineError()
        if error.code in NOT_RUN:
            return None
        # Failed without an HTTP answer: its error, in the shape the family's map_error reads.
        detail = {"message": error.message or "The request failed upstream.", "code": error.code}
        return LineAnswer(parsed.custom_id, 500, _encode({"error": detail}))


def _state(b: _Batch) -> BatchState:
    status = b.status.lower()
    counts = b.request_counts or _Counts()
    error = ""
    if status == "failed":
        reasons = [
            f"line {e.line}: {e.message}" if e.line is not None else (e.message or e.code or "")
            for e in (b.errors.data if b.errors and b.errors.data else [])[:5]
        ]
        error = "; ".join(r for r in reasons if r) or "The upstream failed the batch."
    sluice_id = (b.metadata or {}).get(METADATA_KEY)
    return BatchState(
        id=b.id,
        status=status,
        ended=status in ENDED,
        completed=max(counts.completed or 0, 0),
        failed=max(counts.failed or 0, 0),
        error=error[:2000],
        output_file_id=b.output_file_id or "",
        error_file_id=b.error_file_id or "",
        endpoint=b.endpoint,
        sluice_batch_id=sluice_id if isinstance(sluice_id, str) else "",
    )
