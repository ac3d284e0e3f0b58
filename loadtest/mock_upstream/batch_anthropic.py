"""Anthropic's Message Batches in the mock, as the API reference has them
(the ``anthropic`` SDK's ``types/messages/message_batch*.py`` and
``resources/messages/batches.py``): ``POST /v1/messages/batches`` with
``requests: [{custom_id, params}]``, get, list (newest first, ``after_id``
/ ``before_id``), cancel, delete (an ended batch), and the results at
``results_url`` as JSONL, once the batch ended.

``request_counts`` are all ``processing`` until the batch ends, as the
reference says; then succeeded, errored and canceled (the lines a cancel
left unanswered). A request's ``params`` are checked when its turn comes,
not at the create: a bad one ends ``errored`` (invalid_request_error)."""

from __future__ import annotations

import asyncio
import datetime
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec

from loadtest.mock_upstream.batch_http import Reply, Request, anthropic_error, limit_of, ok, page
from loadtest.mock_upstream.batch_lines import LineAnswer, answer_anthropic
from loadtest.mock_upstream.batch_run import BatchRun, Line
from loadtest.mock_upstream.faults import Behaviour

_json = msgspec.json.Encoder()
MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024
EXPIRES_S = 24 * 3600
# Requests checked between two turns of the event loop.
CHECK_SLICE = 1000
_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class _Request(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _Create(msgspec.Struct):
    requests: list[_Request]


class _Object(msgspec.Struct):
    """Any JSON object (a request's ``params`` must be one)."""


_decode_create = msgspec.json.Decoder(_Create).decode
_decode_object = msgspec.json.Decoder(_Object).decode


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat().replace("+00:00", "Z")


def _result(custom_id: str, answer: LineAnswer) -> bytes:
    if answer.status < 400:
        result: dict[str, Any] = {"type": "succeeded", "message": answer.body}
    else:
        result = {"type": "errored", "error": answer.body}
    return _json.encode({"custom_id": custom_id, "result": result}) + b"\n"


class AnthropicBatch:
    def __init__(self, owner: str, run: BatchRun) -> None:
        self.id = f"msgbatch_{secrets.token_hex(12)}"
        self.owner = owner
        self.run = run
        # The cancel was answered (canceling): every later read says ended.
        self.cancel_told = False
        # Deleted (DELETE): unknown to the API, still in GET /mock/batches.
        self.deleted = False
        self._results: bytes | None = None

    def status(self) -> str:
        if self.run.cancelled_at is not None:
            return "ended" if self.cancel_told else "canceling"
        return "ended" if self.run.phase() == "ended" else "in_progress"

    def results(self) -> bytes:
        """The results file of an ended batch (made once)."""
        if self._results is None:
            run = self.run
            canceled = b"".join(
                _json.encode({"custom_id": line.custom_id, "result": {"type": "canceled"}}) + b"\n"
                for line in run.lines[run.answered :]
            )
            self._results = bytes(run.ok_out) + bytes(run.error_out) + canceled
            run.ok_out = bytearray()
            run.error_out = bytearray()
        return self._results

    def object(self, req: Request) -> dict[str, Any]:
        run = self.run
        status = self.status()
        ended = status == "ended"
        counts = {"processing": len(run.lines), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            counts = {
                "processing": 0,
                "succeeded": run.succeeded,
                "errored": run.failed,
                "canceled": run.unanswered,
                "expired": 0,
            }
        results_url = f"{req.origin}{req.prefix}/v1/messages/batches/{self.id}/results" if ended else None
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _iso(run.ended_at) if ended else None,
            "created_at": _iso(run.created),
            "expires_at": _iso(run.created + EXPIRES_S),
            "archived_at": None,
            "cancel_initiated_at": _iso(run.cancelled_at),
            "results_url": results_url,
        }


class AnthropicBatches:
    """The Message Batches of every Anthropic upstream the mock plays.
    ``on_line``: called with each request's params as a batch is accepted (the app's repeat count)."""

    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.batches: dict[str, AnthropicBatch] = {}
        self._on_line = on_line

    async def create(self, req: Request, delay_s: float, base: Behaviour) -> Reply:
        try:
            create = _decode_create(req.body)
        except msgspec.ValidationError as exc:
            return anthropic_error(400, f"Invalid request: {exc}")
        except msgspec.DecodeError:
            return anthropic_error(400, "The body is not valid JSON.")
        requests = create.requests
        if not requests or len(requests) > MAX_REQUESTS:
            return anthropic_error(400, f"requests: a batch holds 1 to {MAX_REQUESTS} requests.")
        seen: set[str] = set()
        for i, r in enumerate(requests):
            if i % CHECK_SLICE == CHECK_SLICE - 1:
                await asyncio.sleep(0)
            if not _CUSTOM_ID.fullmatch(r.custom_id):
                return anthropic_error(400, f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$.")
            if r.custom_id in seen:
                return anthropic_error(400, f"requests.{i}.custom_id: '{r.custom_id}' is not unique in the batch.")
            seen.add(r.custom_id)
            try:
                _decode_object(r.params)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return anthropic_error(400, f"requests.{i}.params: must be an object.")
        lines = [Line(r.custom_id, bytes(r.params)) for r in requests]
        for line in lines:
            self._on_line(line.body or b"")
        batch = AnthropicBatch(req.owner, BatchRun(lines, delay_s, lambda raw: answer_anthropic(raw, base), _result))
        self.batches[batch.id] = batch
        return ok(batch.object(req))

    def get(self, req: Request) -> AnthropicBatch | None:
        batch = self.batches.get(req.id or "")
        return batch if batch is not None and batch.owner == req.owner and not batch.deleted else None

    async def retrieve(self, req: Request) -> Reply:
        batch = self.get(req)
        if batch is None:
            return _no_batch(req.id)
        await batch.run.advance()
        if req.action != "results":
            return ok(batch.object(req))
        if batch.status() != "ended":
            return anthropic_error(404, f"Message Batch {batch.id} has not ended: its results are not ready.")
        return Reply(200, batch.results(), b"application/binary")

    async def cancel(self, req: Request) -> Reply:
        batch = self.get(req)
        if batch is None:
            return _no_batch(req.id)
        if not await batch.run.cancel() and batch.run.cancelled_at is None:
            return anthropic_error(400, f"Message Batch {batch.id} has ended and cannot be canceled.")
        reply = ok(batch.object(req))
        batch.cancel_told = True
        return reply

    async def delete(self, req: Request) -> Reply:
        batch = self.get(req)
        if batch is None:
            return _no_batch(req.id)
        await batch.run.advance()
        if batch.status() != "ended":
            return anthropic_error(400, f"Message Batch {batch.id} is still processing: cancel it first.")
        batch.deleted = True
        return ok({"id": batch.id, "type": "message_batch_deleted"})

    async def list(self, req: Request) -> Reply:
        limit = limit_of(req.query, 20, 1000)
        if limit is None:
            return anthropic_error(400, "limit: must be an integer from 1 to 1000.")
        owned = [b for b in reversed(self.batches.values()) if b.owner == req.owner and not b.deleted]
        ids = [b.id for b in owned]
        chosen, more = page(owned, ids, req.query.get("after_id"), req.query.get("before_id"), limit)
        now = time.time()
        for batch in chosen:
            await batch.run.advance(now)
        data = [b.object(req) for b in chosen]
        return ok(
            {
                "data": data,
                "has_more": more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )


def _no_batch(batch_id: str | None) -> Reply:
    return anthropic_error(404, f"Message Batch {batch_id} not found.")
