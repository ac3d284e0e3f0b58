"""Anthropic's Message Batches as an upstream: pure translation, no I/O
(``services.providers.tasks.native_batch`` does the calls).

``POST /v1/messages/batches`` takes ``{"requests": [{"custom_id", "params"}]}``,
each ``params`` exactly the body the Messages adapter sends alone;
``GET /v1/messages/batches/{id}`` says how far it got (``processing_status``
"in_progress", "canceling", "ended"); once ended, ``GET .../results`` is a
JSONL of ``{"custom_id", "result": {"type": "succeeded", "message"} |
{"type": "errored", "error"} | {"type": "canceled" | "expired"}}``.

Anthropic takes a ``custom_id`` of 1 to 64 letters, digits, "_" and "-"
only, and batches carry no metadata (a submit sent again cannot find the
batch an earlier one made).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from schemas.envelope import Deployment
from schemas.errors import UpstreamError
from services.providers.anthropic.chat import AnthropicChat
from services.providers.openai.batch import safe_id
from services.providers.tasks.batch_types import BatchState, LineAnswer, UnreadableLine, named_in

# What Anthropic takes in one batch.
MAX_LINES = 100_000
MAX_REQUEST_BYTES = 256 * 1024 * 1024
CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# An errored line's error type, as the HTTP status a direct call would have had.
STATUS_OF_ERROR: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_encode = msgspec.json.Encoder().encode


class _Counts(msgspec.Struct):
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


class _Batch(msgspec.Struct):
    id: str
    processing_status: str
    request_counts: _Counts = msgspec.field(default_factory=_Counts)


class _Result(msgspec.Struct):
    type: str
    message: msgspec.Raw = msgspec.Raw(b"")
    error: msgspec.Raw = msgspec.Raw(b"")


class _Line(msgspec.Struct):
    custom_id: str
    result: _Result


class _ErrorObject(msgspec.Struct):
    type: str = "api_error"
    message: str = ""


class _ErrorResponse(msgspec.Struct):
    """``ErrorResponse`` (``{"type": "error", "error": {...}}``); older
    results wrote the error object alone, read as ``type``/``message`` here."""

    error: _ErrorObject | None = None
    type: str = "error"
    message: str = ""


_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_line = msgspec.json.Decoder(_Line).decode
_decode_error = msgspec.json.Decoder(_ErrorResponse).decode


def fits(custom_id: str) -> bool:
    """Whether Anthropic takes ``custom_id`` as it is."""
    return CUSTOM_ID.fullmatch(custom_id) is not None


class AnthropicBatches:
    def __init__(self, chat: AnthropicChat) -> None:
        self.chat = chat

    # -- where --------------------------------------------------------------
    def headers(self, dep: Deployment, api_key: str | None, *, json_body: bool = True) -> dict[str, str]:
        _, headers = self.chat.endpoint(dep, api_key)
        if not json_body:
            headers.pop("content-type", None)
        return headers

    def batches_url(self, dep: Deployment) -> str:
        return f"{dep.base_url}/v1/messages/batches"

    def batch_url(self, dep: Deployment, batch_id: str) -> str:
        return f"{dep.base_url}/v1/messages/batches/{safe_id(batch_id)}"

    def cancel_url(self, dep: Deployment, batch_id: str) -> str:
        return f"{self.batch_url(dep, batch_id)}/cancel"

    def results_url(self, dep: Deployment, batch_id: str) -> str:
        # The path the SDK reads, never the batch's ``results_url`` itself:
        # an upstream's word would otherwise choose where our key is sent.
        return f"{self.batch_url(dep, batch_id)}/results"

    # -- what is sent -------------------------------------------------------
    def opening(self) -> bytes:
        return b'{"requests":['

    def request(self, custom_id: str, params: bytes, *, first: bool) -> bytes:
        """One request of the batch: ``params`` as the Messages adapter built them."""
        return (b"" if first else b",") + b'{"custom_id":' + _encode(custom_id) + b',"params":' + params + b"}"

    def closing(self) -> bytes:
        return b"]}"

    # -- what comes back ----------------------------------------------------
    def read_batch(self, data: bytes) -> BatchState:
        try:
            b = _decode_batch(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError(f"Upstream sent an unreadable message batch: {exc}") from exc
        counts = b.request_counts
        return BatchState(
            id=b.id,
            status=b.processing_status,
            ended=b.processing_status == "ended",
            completed=max(counts.succeeded, 0),
            failed=max(counts.errored, 0),
        )

    def read_line(self, line: bytes) -> LineAnswer | None:
        """One line of the results; None for a request never run (canceled, expired)."""
        try:
            parsed = _decode_line(line)
        except msgspec.DecodeError as exc:
            raise UnreadableLine(f"not a message batch result ({exc})", named_in(line)) from exc
        result = parsed.result
        if result.type == "succeeded":
            return LineAnswer(parsed.custom_id, 200, bytes(result.message))
        if result.type in ("canceled", "expired"):
            return None
        if result.type != "errored":
            raise UnreadableLine(f"a result of type {result.type[:40]!r}", parsed.custom_id)
        kind, body = _error(bytes(result.error))
        return LineAnswer(parsed.custom_id, STATUS_OF_ERROR.get(kind, 500), body)


def _error(raw: bytes) -> tuple[str, bytes]:
    """An errored result's error type, and its body as the Messages adapter's ``map_error`` reads it."""
    try:
        found = _decode_error(raw) if raw else _ErrorResponse()
    except msgspec.DecodeError:
        return "api_error", _encode({"type": "error", "error": {"type": "api_error", "message": "unreadable error"}})
    detail: dict[str, Any] = (
        {"type": found.error.type, "message": found.error.message}
        if found.error is not None
        else {"type": found.type if found.type != "error" else "api_error", "message": found.message}
    )
    return detail["type"], _encode({"type": "error", "error": detail})
