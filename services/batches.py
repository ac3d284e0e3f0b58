"""The Batch API's rules, apart from any I/O: what a create asks for, what
an input line must be (checked line by line before any line is queued),
what each line ends with in the output and error files, how a batch's
status moves, and which of a tenant's batches one page of
``GET /v1/batches`` shows.

A batch id is "batch_" and a ``schemas.ids.new_id``: 80 random bits (a
caller cannot guess another's) after the creation time, so ids sort in
creation order, and listing's ``after`` compares ids alone.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Iterator

import msgspec

from schemas.batches import (
    BatchError,
    BatchErrors,
    BatchLine,
    BatchOutput,
    BatchRecord,
    BatchStatus,
    LineResponse,
    RequestCounts,
)
from schemas.errors import GatewayError, InvalidRequest, RecordConflict
from schemas.ids import CROCKFORD, new_id
from schemas.native_batch import NativeRun
from services.apis.base import Parsed

ID_PREFIX = "batch_"
_ID = re.compile(rf"{ID_PREFIX}[{CROCKFORD}]{{26}}")
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/messages")
COMPLETION_WINDOW = "24h"
WINDOW_S = 24 * 3600
# OpenAI's limits: requests per batch (here lines of its input file, blank
# ones too: each costs a step of the check); the input file's size; metadata
# pairs and their sizes.
MAX_LINES = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
MAX_METADATA = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
# A custom_id longer than this is refused: it is echoed on every output line.
MAX_CUSTOM_ID = 512
# What a line holds beside its body: custom_id, method and url.
LINE_OVERHEAD_BYTES = 8192
# A failed batch lists this many line errors at most (the first ones).
MAX_ERRORS = 100
# ``GET /v1/batches``: OpenAI's bounds on ``limit`` and its default.
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
# Statuses that end a batch: nothing changes it afterwards.
ENDED: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
CANCELLED = ("batch_cancelled", "This request was not executed because the batch was cancelled.")
EXPIRED = ("batch_expired", "This request could not be executed before the completion window expired.")


class ExpiresAfter(msgspec.Struct):
    anchor: str
    seconds: int


class CreateRequest(msgspec.Struct):
    """``POST /v1/batches``'s body."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: ExpiresAfter | None = None


class InputLine(msgspec.Struct):
    """One line of an input file, as OpenAI defines it."""

    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


_decode_create = msgspec.json.Decoder(CreateRequest).decode
_decode_input = msgspec.json.Decoder(InputLine).decode


def new_batch_id(now_ns: int | None = None) -> str:
    return ID_PREFIX + new_id(now_ns)


def is_batch_id(text: str) -> bool:
    """Whether ``text`` could name a batch: anything else is a 404 without a lookup."""
    return _ID.fullmatch(text) is not None


def not_found(batch_id: str) -> InvalidRequest:
    # Said alike of another tenant's batch and one never made.
    shown = batch_id[:64].encode("ascii", "replace").decode()
    return InvalidRequest(f"No batch found with id '{shown}'.", status=404, code="not_found")


def create_request(raw: bytes) -> CreateRequest:
    """``POST /v1/batches``'s body, checked (the input file is checked apart)."""
    try:
        req = _decode_create(raw)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}.") from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest("We could not parse the JSON body of your request.", code="invalid_json") from exc
    if req.endpoint not in ENDPOINTS:
        shown = req.endpoint[:80].encode("ascii", "replace").decode()
        raise InvalidRequest(f"'{shown}' is not one of {list(ENDPOINTS)} - 'endpoint'", code="invalid_endpoint")
    if req.completion_window != COMPLETION_WINDOW:
        raise InvalidRequest(f"'completion_window' must be '{COMPLETION_WINDOW}'.", code="invalid_completion_window")
    if req.output_expires_after is not None:
        after = req.output_expires_after
        if after.anchor != "created_at" or not 3600 <= after.seconds <= 30 * 86400:
            raise InvalidRequest(
                "'output_expires_after' takes anchor 'created_at' and seconds from 3600 to 2592000.",
                code="invalid_output_expires_after",
            )
    check_metadata(req.metadata)
    return req


def check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > MAX_METADATA:
        raise InvalidRequest(f"'metadata' holds at most {MAX_METADATA} pairs.", code="invalid_metadata")
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise InvalidRequest(
                f"'metadata' keys are at most {MAX_METADATA_KEY} characters, values {MAX_METADATA_VALUE}.",
                code="invalid_metadata",
            )


def line_bytes(max_body_bytes: int) -> int:
    """The longest line a file may hold: a body as large as the endpoint takes, and the line's own fields."""
    return max_body_bytes + LINE_OVERHEAD_BYTES


class LineSplitter:
    """An input file's lines as its chunks arrive, numbered from 1, each at
    most ``max_bytes`` (a longer one is yielded as None: it is never held
    whole). Blank lines are skipped, as OpenAI's JSONL reader does, but
    counted: past ``max_lines`` lines of any kind it stops (``too_many``),
    so a file of newlines costs no more than one of requests."""

    def __init__(self, max_bytes: int, max_lines: int = MAX_LINES) -> None:
        self.max_bytes = max_bytes
        self.max_lines = max_lines
        # Requests yielded (their numbers run 1..number, with no gaps), and lines read (blank ones too).
        self.number = 0
        self.read = 0
        self._part = bytearray()
        self._too_long = False

    @property
    def too_many(self) -> bool:
        return self.read > self.max_lines

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        start = 0
        while not self.too_many:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return
            self._keep(chunk[start:end])
            yield from self._line()
            start = end + 1

    def finish(self) -> Iterator[tuple[int, bytes | None]]:
        if self._part or self._too_long:  # a last line with no newline after it
            yield from self._line()

    def _keep(self, piece: bytes) -> None:
        if self._too_long:
            return
        if len(self._part) + len(piece) > self.max_bytes:
            self._too_long = True
            self._part.clear()
            return
        self._part += piece

    def _line(self) -> Iterator[tuple[int, bytes | None]]:
        too_long, line = self._too_long, bytes(self._part).strip()
        self._part.clear()
        self._too_long = False
        self.read += 1
        if self.too_many or (not too_long and not line):
            return
        self.number += 1
        yield self.number, None if too_long else line


class LineChecker:
    """Checks an input file's lines one by one against the batch's endpoint
    (``parse``: that endpoint's API, as ``POST <endpoint>`` reads a body; a
    body larger than ``max_body_bytes`` is refused as that endpoint would).
    Holds a 16-byte digest per custom_id, so 50,000 lines take about 4 MB."""

    def __init__(self, endpoint: str, parse: Callable[[bytes], Parsed], max_body_bytes: int) -> None:
        self.endpoint = endpoint
        self.parse = parse
        self.max_body_bytes = max_body_bytes
        self.errors: list[BatchError] = []
        self.lines = 0
        self._seen: set[bytes] = set()
        # The models the lines name (two at most: one is all a native batch needs to know).
        self.models: set[str] = set()

    @property
    def full(self) -> bool:
        """Whether no further line can change the outcome: as many errors as a batch lists."""
        return len(self.errors) >= MAX_ERRORS

    def too_many(self, line: int) -> None:
        """The file went on past MAX_LINES lines (``LineSplitter.too_many``): it was read no further."""
        self._error("too_many_tasks", f"A batch's input file holds at most {MAX_LINES} lines.", None, line)

    def check(self, number: int, raw: bytes | None) -> InputLine | None:
        """The line if it may run; None (its error kept) if not."""
        self.lines = max(self.lines, number)
        if raw is None:
            longest = line_bytes(self.max_body_bytes)
            self._error("invalid_request", f"This line is longer than {longest} bytes.", None, number)
            return None
        try:
            line = _decode_input(raw)
        except msgspec.ValidationError as exc:
            self._error("invalid_request", f"This line is not a valid request: {exc}.", _param_of(exc), number)
            return None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            self._error("invalid_json_line", "This line is not parseable as valid JSON.", None, number)
            return None
        if not line.custom_id or len(line.custom_id) > MAX_CUSTOM_ID:
            self._error("invalid_request", f"'custom_id' must be 1 to {MAX_CUSTOM_ID} characters.", "custom_id", number)
            return None
        digest = hashlib.blake2b(line.custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self._seen:
            self._error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.",
                "custom_id",
                number,
            )
            return None
        self._seen.add(digest)
        if line.method != "POST":
            self._error("invalid_request", "'method' must be 'POST'.", "method", number)
            return None
        if line.url != self.endpoint:
            self._error(
                "url_mismatch",
                f"The url of this request does not match the batch's endpoint ({self.endpoint}).",
                "url",
                number,
            )
            return None
        if len(line.body) > self.max_body_bytes:
            self._error("invalid_request", f"The body is larger than {self.max_body_bytes} bytes.", "body", number)
            return None
        try:
            parsed = self.parse(bytes(line.body))
        except GatewayError as exc:
            self._error("invalid_request", exc.message, "body", number)
            return None
        if len(self.models) < 2:
            self.models.add(parsed.model)
        return line

    def finish(self) -> list[BatchError]:
        """The errors that fail the batch (none: every line may run)."""
        if self.lines == 0 and not self.errors:
            self._error("empty_file", "The input file holds no requests.", None, None)
        return self.errors

    def _error(self, code: str, message: str, param: str | None, line: int | None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(BatchError(code=code, message=message, param=param, line=line))


def _param_of(exc: msgspec.ValidationError) -> str | None:
    # msgspec says where: "... - at `$.custom_id`" or "missing required field `body`".
    found = re.search(r"`\$\.([A-Za-z_]+)`|field `([A-Za-z_]+)`", str(exc))
    return (found.group(1) or found.group(2)) if found else None


def queued_line(batch_id: str, number: int, line: InputLine) -> BatchLine:
    return BatchLine(batch_id=batch_id, line=number, custom_id=line.custom_id, body=line.body)


def answered(custom_id: str, request_id: str, status: int, body: bytes) -> BatchOutput:
    """A line whose request ran: what its endpoint answered (a 2xx goes to
    the output file, any other status to the error file)."""
    return BatchOutput(
        id=f"batch_req_{request_id}",
        custom_id=custom_id,
        response=LineResponse(status_code=status, request_id=request_id, body=msgspec.Raw(body)),
        error=None,
    )


def not_run(custom_id: str, why: tuple[str, str]) -> BatchOutput:
    """A line that never became a request (``CANCELLED``, ``EXPIRED``)."""
    code, message = why
    return BatchOutput(id=f"batch_req_{new_id()}", custom_id=custom_id, response=None, error=BatchError(code, message))


def output_line(output: BatchOutput) -> bytes:
    return msgspec.json.encode(output) + b"\n"


def failed(record: BatchRecord, errors: list[BatchError], now_s: int) -> BatchRecord:
    return msgspec.structs.replace(record, status="failed", failed_at=now_s, errors=BatchErrors(data=errors))


def started(record: BatchRecord, total: int, now_s: int) -> BatchRecord:
    """Every line queued: the batch runs (unless it was cancelled meanwhile)."""
    status: BatchStatus = "in_progress" if record.status == "validating" else record.status
    return msgspec.structs.replace(
        record, status=status, in_progress_at=now_s, request_counts=RequestCounts(total=total)
    )


def started_native(record: BatchRecord, total: int, now_s: int, native: NativeRun) -> BatchRecord:
    """Every line checked, the batch to run as one batch of its provider's own."""
    return msgspec.structs.replace(started(record, total, now_s), native=native)


def cancelling(record: BatchRecord, now_s: int) -> BatchRecord:
    """A cancel: lines not started end as "batch_cancelled", those running
    finish. Cancelling again changes nothing; an ended batch is a conflict."""
    if record.status in ("cancelling", "cancelled"):
        return record
    if record.status not in ("validating", "in_progress"):
        raise RecordConflict(f"Cannot cancel a batch with status '{record.status}'.", code="batch_not_cancellable")
    return msgspec.structs.replace(record, status="cancelling", cancelling_at=now_s)


def finalizing(record: BatchRecord, now_s: int) -> BatchRecord:
    return msgspec.structs.replace(record, status="finalizing", finalizing_at=now_s)


def ended(
    record: BatchRecord, counts: RequestCounts, expired: bool, output_id: str | None, error_id: str | None, now_s: int
) -> BatchRecord:
    """Every line accounted and the files written: cancelled if a cancel
    came, expired if a line ran out of the window, else completed."""
    status: BatchStatus = "completed"
    stamps: dict[str, int] = {"completed_at": now_s}
    if record.cancelling_at is not None:
        status, stamps = "cancelled", {"cancelled_at": now_s}
    elif expired:
        status, stamps = "expired", {"expired_at": now_s}
    return msgspec.structs.replace(
        record, status=status, request_counts=counts, output_file_id=output_id, error_file_id=error_id, **stamps
    )


def line_fate(record: BatchRecord, now_s: float) -> tuple[str, str] | None:
    """Why a line not yet started must not run (its batch was cancelled,
    or failed while queueing, or its window ran out), or None: it runs."""
    if record.status in ("cancelling", "cancelled", "failed") or record.cancelling_at is not None:
        return CANCELLED
    if record.expires_at is not None and now_s >= record.expires_at:
        return EXPIRED
    return None


def list_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIST_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIST_LIMIT}.", code="invalid_limit")
    return int(text)


def page(batch_ids: Iterable[str], after: str, limit: int) -> tuple[list[str], bool]:
    """One page of a tenant's batches (by id: ids sort by creation), newest
    first, after ``after``, and whether more follow; holds ``limit + 1`` ids at most."""
    wanted = (i for i in batch_ids if not after or i < after)
    chosen = heapq.nlargest(limit + 1, wanted)
    return chosen[:limit], len(chosen) > limit
