"""OpenAI's Files and Batch APIs in the mock, and Azure OpenAI's (the same
shapes under ``/openai/files`` and ``/openai/batches``), as the API
reference has them (github.com/openai/openai-openapi; the ``openai`` SDK's
``types/batch*.py``, ``file_object.py``).

A batch's input file is checked line by line at ``POST /v1/batches``: a
line that does not parse, a duplicate ``custom_id``, a ``method`` other than
POST, a ``url`` other than the batch's endpoint, a body that is not an
object, or lines naming different models fail the batch (``status``
``failed``, OpenAI's ``errors`` list) before any line runs. Otherwise the
batch moves validating -> in_progress -> finalizing -> completed (see
``batch_run``), or cancelling -> cancelled; its ``output_file_id`` holds the
lines answered 2xx, its ``error_file_id`` the others, each in OpenAI's batch
output format. Lines a cancel left unanswered are in neither file and
counted neither completed nor failed. Azure's lines name the deployment as
``model`` and ``/chat/completions`` as ``url`` (``/v1/chat/completions`` is
taken too); Azure's ``endpoint`` may be either."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from loadtest.mock_upstream.batch_files import MAX_FILE_BYTES, PURPOSES, FileStore, StoredFile
from loadtest.mock_upstream.batch_http import Reply, Request, limit_of, ok, openai_error, page
from loadtest.mock_upstream.batch_lines import OPENAI_ENDPOINTS, LineAnswer, answer_openai
from loadtest.mock_upstream.batch_run import ANSWERED_BY, VALIDATED_AT, BatchRun, Line
from loadtest.mock_upstream.faults import Behaviour

_json = msgspec.json.Encoder()
# OpenAI's limits on a batch's input file.
MAX_LINES = 50_000
# How many of a failed batch's errors it lists.
MAX_ERRORS = 100
EXPIRES_S = 24 * 3600
# Lines checked between two turns of the event loop.
CHECK_SLICE = 1000


class _InputLine(msgspec.Struct):
    custom_id: str
    method: str
    url: str
    body: msgspec.Raw


class _BodyHead(msgspec.Struct):
    model: str | None = None


_decode_line = msgspec.json.Decoder(_InputLine).decode
_decode_head = msgspec.json.Decoder(_BodyHead).decode
_decode_create = msgspec.json.Decoder(dict[str, Any]).decode


def endpoint_of(family: str, url: str) -> str:
    """The endpoint a line's url or a batch's endpoint names (Azure writes it without "/v1")."""
    if family == "azure" and not url.startswith("/v1/"):
        return "/v1" + url
    return url


class _Checked(msgspec.Struct):
    lines: list[Line]
    errors: list[dict[str, Any]]
    model: str | None


async def _check(family: str, endpoint: str, data: bytes) -> _Checked:
    """The input file's lines, or the errors that fail the batch."""
    errors: list[dict[str, Any]] = []
    lines: list[Line] = []
    seen: set[str] = set()
    model: str | None = None

    def error(code: str, message: str, param: str | None, number: int | None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append({"code": code, "message": message, "param": param, "line": number})

    number = 0
    for raw in _lines_of(data):
        number += 1
        if number > MAX_LINES:
            error("too_many_tasks", f"A batch's input file holds at most {MAX_LINES} requests.", None, number)
            break
        if number % CHECK_SLICE == 0:
            await asyncio.sleep(0)
        try:
            line = _decode_line(raw)
            head = _decode_head(line.body)
        except msgspec.ValidationError as exc:
            error("invalid_request", f"This line is not a valid request: {exc}.", None, number)
            continue
        except (msgspec.DecodeError, UnicodeDecodeError):
            error("invalid_json_line", "This line is not parseable as valid JSON.", None, number)
            continue
        if line.custom_id in seen:
            message = (
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch."
            )
            error("duplicate_custom_id", message, "custom_id", number)
            continue
        seen.add(line.custom_id)
        if line.method != "POST":
            error("invalid_request", "Only POST is supported.", "method", number)
        elif endpoint_of(family, line.url) != endpoint:
            error("invalid_url", f"The url must match the batch's endpoint ({endpoint}).", "url", number)
        elif head.model is not None and model is not None and head.model != model:
            error("mismatched_model", "All requests in a batch must name the same model.", "body.model", number)
        else:
            model = model or head.model
            lines.append(Line(line.custom_id, bytes(line.body)))
    if number == 0:
        error("empty_file", "The input file holds no requests.", None, None)
    return _Checked(lines, errors, model)


def _lines_of(data: bytes) -> Iterator[bytes]:
    """The file's lines that are not blank, one copy at a time (a 200 MB file is not split all at once)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end == -1 else end
        line = data[start:end]
        start = end + 1
        if line.strip():
            yield line


class OpenAIBatch:
    def __init__(self, owner: str, create: dict[str, Any], checked: _Checked, now: float) -> None:
        self.id = f"batch_{secrets.token_hex(16)}"
        self.owner = owner
        self.create = create
        self.checked_errors = checked.errors
        self.model = checked.model
        self.created = now
        # None: its input file failed the checks.
        self.run: BatchRun | None = None
        # The cancel was answered (cancelling): every later read says cancelled.
        self.cancel_told = False
        self.output_file_id: str | None = None
        self.error_file_id: str | None = None
        self.usage = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}

    def render_line(self, custom_id: str, answer: LineAnswer) -> bytes:
        """A line in OpenAI's batch output format; its usage added to the batch's."""
        usage = answer.body.get("usage") if answer.status < 400 else None
        if isinstance(usage, dict):
            self._add_usage(usage)
        response = {"status_code": answer.status, "request_id": f"req_{secrets.token_hex(12)}", "body": answer.body}
        line = {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": custom_id, "response": response, "error": None}
        return _json.encode(line) + b"\n"

    def _add_usage(self, usage: dict[str, Any]) -> None:
        # Chat and embeddings say prompt/completion tokens, Responses input/output tokens.
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        out_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        self.usage["input_tokens"] += int(usage.get("prompt_tokens", usage.get("input_tokens")) or 0)
        self.usage["cached_tokens"] += int(details.get("cached_tokens") or 0)
        self.usage["output_tokens"] += int(usage.get("completion_tokens", usage.get("output_tokens")) or 0)
        self.usage["reasoning_tokens"] += int(out_details.get("reasoning_tokens") or 0)

    def status(self) -> str:
        if self.run is None:
            return "failed"
        if self.run.cancelled_at is not None:
            return "cancelled" if self.cancel_told else "cancelling"
        return _STATUS[self.run.phase()]

    def _finish(self, files: FileStore) -> None:
        """Once ended: its output and error files (each only if it holds a line)."""
        run = self.run
        if run is None or not (run.ok_out or run.error_out):
            return
        if run.ok_out:
            name = f"batch_{self.id}_output.jsonl"
            self.output_file_id = files.add(self.owner, name, "batch_output", bytes(run.ok_out), False).id
        if run.error_out:
            name = f"batch_{self.id}_error.jsonl"
            self.error_file_id = files.add(self.owner, name, "batch_output", bytes(run.error_out), False).id
        run.ok_out = bytearray()
        run.error_out = bytearray()

    def object(self, files: FileStore, fresh: bool = False) -> dict[str, Any]:
        """OpenAI's batch object; ``fresh``: the create's answer (OpenAI's says validating)."""
        status = "validating" if fresh else self.status()
        if status in ("completed", "cancelled"):
            self._finish(files)
        run = self.run
        created = int(self.created)
        cancelled_at = run.cancelled_at if run is not None else None
        started = run is not None and not fresh and run.seen >= run.at(VALIDATED_AT)
        finalized = run is not None and status in ("finalizing", "completed")
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.create["endpoint"],
            "model": self.model,
            "errors": {"object": "list", "data": self.checked_errors} if status == "failed" else None,
            "input_file_id": self.create["input_file_id"],
            "completion_window": self.create["completion_window"],
            "status": status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": created,
            "in_progress_at": int(run.at(VALIDATED_AT)) if run is not None and started else None,
            "expires_at": created + EXPIRES_S,
            "finalizing_at": int(run.at(ANSWERED_BY)) if run is not None and finalized else None,
            "completed_at": int(run.at(1.0)) if run is not None and status == "completed" else None,
            "failed_at": created if status == "failed" else None,
            "expired_at": None,
            "cancelling_at": int(cancelled_at) if cancelled_at is not None else None,
            "cancelled_at": int(cancelled_at) if cancelled_at is not None and status == "cancelled" else None,
            "request_counts": {
                "total": len(run.lines) if run else 0,
                "completed": run.succeeded if run else 0,
                "failed": run.failed if run else 0,
            },
            "metadata": self.create.get("metadata"),
            "usage": {
                "input_tokens": self.usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": self.usage["cached_tokens"]},
                "output_tokens": self.usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": self.usage["reasoning_tokens"]},
                "total_tokens": self.usage["input_tokens"] + self.usage["output_tokens"],
            },
        }


_STATUS = {"validating": "validating", "running": "in_progress", "finalizing": "finalizing", "ended": "completed"}


class OpenAIBatches:
    """The Files and Batch APIs of every OpenAI and Azure upstream the mock plays.
    ``on_line``: called with each line's body as a batch is accepted (the app's repeat count)."""

    def __init__(self, files: FileStore, on_line: Callable[[bytes], None]) -> None:
        self.files = files
        self.batches: dict[str, OpenAIBatch] = {}
        self._on_line = on_line

    # Files

    def upload(self, req: Request, fields: dict[str, str], form_files: dict[str, tuple[str, bytes]]) -> Reply:
        purpose = fields.get("purpose", "")
        if "file" not in form_files:
            return openai_error(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter")
        if purpose not in PURPOSES:
            return openai_error(400, f"Invalid value for 'purpose': {purpose!r}.", "purpose", "invalid_value")
        filename, data = form_files["file"]
        if len(data) > MAX_FILE_BYTES:
            return openai_error(413, f"A file may be at most {MAX_FILE_BYTES} bytes.", "file", "file_too_large")
        stored = self.files.add(req.owner, filename or "file", purpose, data)
        return ok(stored.object())

    def file_request(self, req: Request) -> Reply:
        """GET /v1/files, GET or DELETE /v1/files/{id}, GET /v1/files/{id}/content."""
        if req.id is None:
            return self._list_files(req)
        stored = self.files.get(req.owner, req.id)
        if stored is None:
            return openai_error(404, f"No such File object: {req.id}", "id")
        if req.action == "content":
            return Reply(200, stored.data, b"application/octet-stream")
        if req.method == "DELETE":
            self.files.delete(req.owner, req.id)
            return ok({"id": req.id, "object": "file", "deleted": True})
        return ok(stored.object())

    def _list_files(self, req: Request) -> Reply:
        limit = limit_of(req.query, 10_000, 10_000)
        if limit is None:
            return openai_error(400, "'limit' must be an integer from 1 to 10000.", "limit")
        owned: list[StoredFile] = self.files.owned(req.owner)
        if req.query.get("purpose"):
            owned = [f for f in owned if f.purpose == req.query["purpose"]]
        if req.query.get("order") == "asc":
            owned.reverse()
        chosen, more = page(owned, [f.id for f in owned], req.query.get("after"), None, limit)
        return ok(_listing([f.object() for f in chosen], more))

    # Batches

    async def create(self, req: Request, delay_s: float, base: Behaviour) -> Reply:
        try:
            create = _decode_create(req.body)
        except msgspec.DecodeError:
            return openai_error(400, "The body is not valid JSON.")
        refused = self._refuse(req, create)
        if refused is not None:
            return refused
        endpoint = endpoint_of(req.family, create["endpoint"])
        stored = self.files.get(req.owner, create["input_file_id"])
        assert stored is not None  # checked by _refuse
        checked = await _check(req.family, endpoint, stored.data)
        now = time.time()
        batch = OpenAIBatch(req.owner, create, checked, now)
        if not checked.errors:
            for line in checked.lines:
                self._on_line(line.body or b"")
            batch.run = BatchRun(
                checked.lines, delay_s, lambda raw: answer_openai(endpoint, raw, base), batch.render_line, now
            )
        self.batches[batch.id] = batch
        return ok(batch.object(self.files, fresh=True))

    def _refuse(self, req: Request, create: dict[str, Any]) -> Reply | None:
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(create.get(name), str):
                return openai_error(400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if create["completion_window"] != "24h":
            return openai_error(400, "'completion_window' must be '24h'.", "completion_window", "invalid_value")
        if endpoint_of(req.family, create["endpoint"]) not in OPENAI_ENDPOINTS:
            message = f"The mock runs batches of {', '.join(OPENAI_ENDPOINTS)}, not {create['endpoint']!r}."
            return openai_error(400, message, "endpoint", "invalid_value")
        metadata = create.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
            return openai_error(400, "'metadata' holds at most 16 pairs.", "metadata", "invalid_value")
        stored = self.files.get(req.owner, create["input_file_id"])
        if stored is None:
            return openai_error(400, f"No such File object: {create['input_file_id']}", "input_file_id")
        if stored.purpose != "batch":
            return openai_error(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")
        return None

    def get(self, req: Request) -> OpenAIBatch | None:
        batch = self.batches.get(req.id or "")
        return batch if batch is not None and batch.owner == req.owner else None

    async def retrieve(self, req: Request) -> Reply:
        batch = self.get(req)
        if batch is None:
            return _no_batch(req.id)
        if batch.run is not None:
            await batch.run.advance()
        return ok(batch.object(self.files))

    async def cancel(self, req: Request) -> Reply:
        batch = self.get(req)
        if batch is None:
            return _no_batch(req.id)
        # Cancelling one being cancelled answers it again; one that ended otherwise cannot be.
        cancelled = batch.run is not None and (await batch.run.cancel() or batch.run.cancelled_at is not None)
        if not cancelled:
            status = batch.status()
            return openai_error(409, f"Cannot cancel a batch with status '{status}'.", None, "batch_not_cancellable")
        reply = ok(batch.object(self.files))
        batch.cancel_told = True
        return reply

    async def list(self, req: Request) -> Reply:
        limit = limit_of(req.query, 20, 100)
        if limit is None:
            return openai_error(400, "'limit' must be an integer from 1 to 100.", "limit")
        owned = [b for b in reversed(self.batches.values()) if b.owner == req.owner]
        chosen, more = page(owned, [b.id for b in owned], req.query.get("after"), None, limit)
        now = time.time()
        for batch in chosen:
            if batch.run is not None:
                await batch.run.advance(now)
        return ok(_listing([b.object(self.files) for b in chosen], more))


def _no_batch(batch_id: str | None) -> Reply:
    return openai_error(404, f"No batch found with id '{batch_id}'.", "batch_id")


def _listing(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }
