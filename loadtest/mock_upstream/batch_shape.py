"""The mock's provider batch APIs: OpenAI's Files and Batch APIs
(``/v1/files``, ``/v1/batches``), Azure OpenAI's (``/openai/files``,
``/openai/batches`` with ``?api-version=``, or under ``/openai/v1/``) and
Anthropic's Message Batches (``/v1/messages/batches``), each also under a
"/@<name>/" prefix: one named upstream's files and batches are unknown to
another, and PUT /mock/upstreams/<name> makes its calls slow, hang or fail
as it does the rest of that upstream. A batch's lines are answered as the
mock answers each request posted alone (``batch_lines``), over the batch's
delay (``batch_run``).

None of these calls is an upstream request in ``Stats.requests``; this
module keeps its own counts. Each line of a batch accepted bumps
``Stats.repeated`` when its body was seen before, as a direct request does.

Control, for tests: GET /mock/batches (per batch: status, lines, each
custom_id's usage and whether it was answered; totals), PUT /mock/batches
``{"delay_ms": N}`` (for batches created afterwards; default 300), DELETE
/mock/batches (forget every batch, file and count; the delay stays)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import msgspec

from loadtest.mock_upstream import anthropic_shape, openai_shape
from loadtest.mock_upstream.batch_anthropic import MAX_BODY_BYTES, AnthropicBatches
from loadtest.mock_upstream.batch_files import (
    FORM_SLACK,
    MAX_FILE_BYTES,
    BadForm,
    FileStore,
    TooLarge,
    read_bounded,
    read_form,
)
from loadtest.mock_upstream.batch_http import Reply, Request, anthropic_error, openai_error, query_of
from loadtest.mock_upstream.batch_openai import OpenAIBatches
from loadtest.mock_upstream.batch_run import BatchRun
from loadtest.mock_upstream.faults import Behaviour

DEFAULT_DELAY_MS = 300
MAX_DELAY_MS = 24 * 3600 * 1000
# What a call other than an upload or a create may carry.
SMALL_BODY_BYTES = 1024 * 1024

# The bodies that may be large: an upload, and a Message Batch (its requests ride in the body).
_BODY_LIMITS = {
    ("openai", "files.create"): MAX_FILE_BYTES + FORM_SLACK,
    ("azure", "files.create"): MAX_FILE_BYTES + FORM_SLACK,
    ("anthropic", "batches.create"): MAX_BODY_BYTES,
}

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_ROUTE = re.compile(
    r"/(?:v1/(?P<messages>messages/)?|openai/(?P<v1>v1/)?)(?P<kind>files|batches)"
    r"(?:/(?P<id>[^/]+)(?:/(?P<action>[a-z]+))?)?/?"
)
# (family, kind, has an id, action, method) -> the operation, named as the SDKs name their methods.
_OPERATIONS = {
    **{
        (family, "files", has_id, action, method): op
        for family in ("openai", "azure")
        for has_id, action, method, op in (
            (False, None, "POST", "files.create"),
            (False, None, "GET", "files.list"),
            (True, None, "GET", "files.retrieve"),
            (True, None, "DELETE", "files.delete"),
            (True, "content", "GET", "files.content"),
        )
    },
    **{
        (family, "batches", has_id, action, method): op
        for family in ("openai", "azure")
        for has_id, action, method, op in (
            (False, None, "POST", "batches.create"),
            (False, None, "GET", "batches.list"),
            (True, None, "GET", "batches.retrieve"),
            (True, "cancel", "POST", "batches.cancel"),
        )
    },
    **{
        ("anthropic", "batches", has_id, action, method): op
        for has_id, action, method, op in (
            (False, None, "POST", "batches.create"),
            (False, None, "GET", "batches.list"),
            (True, None, "GET", "batches.retrieve"),
            (True, None, "DELETE", "batches.delete"),
            (True, "results", "GET", "batches.results"),
            (True, "cancel", "POST", "batches.cancel"),
        )
    },
}


def _family(path: str) -> tuple[str, re.Match[str]] | None:
    found = _ROUTE.fullmatch(path)
    if found is None:
        return None
    if found["messages"]:
        return ("anthropic", found) if found["kind"] == "batches" else None
    return ("azure" if path.startswith("/openai/") else "openai"), found


def is_batch(path: str) -> bool:
    """Whether ``path`` (after any "/@<name>" prefix) is one of the batch APIs'."""
    return _family(path) is not None


class MockBatches:
    """``mock``: the app (its named upstreams' behaviour, its repeat count, its ``_send``)."""

    def __init__(self, mock: Any) -> None:
        self.mock = mock
        self.delay_ms = DEFAULT_DELAY_MS
        self.files = FileStore()
        self.openai = OpenAIBatches(self.files, mock._count_repeat)
        self.anthropic = AnthropicBatches(mock._count_repeat)
        self.calls: dict[str, int] = {}
        self.by_upstream: dict[str, int] = {}

    async def handle(self, name: str, path: str, scope: dict, receive: Any, send: Any) -> None:
        found = _family(path)
        assert found is not None  # routed here by is_batch
        family, match = found
        method = scope["method"]
        op = _OPERATIONS.get((family, match["kind"], match["id"] is not None, match["action"], method))
        error = anthropic_error if family == "anthropic" else openai_error
        query = query_of(scope)
        if op is None:
            return await self._reply(send, error(404, f"No route for {method} {path}."))
        if family == "azure" and not match["v1"] and "api-version" not in query:
            # Azure's answer to a data-plane call without its api-version.
            return await self._reply(send, Reply(404, b'{"error":{"code":"404","message":"Resource not found"}}'))
        self.calls[f"{family} {op}"] = self.calls.get(f"{family} {op}", 0) + 1
        if name:
            self.by_upstream[name] = self.by_upstream.get(name, 0) + 1
        limit = _BODY_LIMITS.get((family, op), SMALL_BODY_BYTES)
        try:
            body = await read_bounded(receive, limit)
        except TooLarge:
            return await self._reply(send, error(413, f"The body is larger than {limit} bytes."))
        base = self.mock.upstreams.get(name, self.mock.defaults) if name else self.mock.defaults
        if await self._fault(family, base, send):
            return
        req = Request(
            method=method,
            family=family,
            owner=f"{name}/{family}",
            kind=match["kind"],
            id=match["id"],
            action=match["action"],
            query=query,
            origin=_origin(scope),
            prefix=f"/@{name}" if name else "",
            body=body,
        )
        await self._reply(send, await self._operate(op, req, base, scope))

    async def _operate(self, op: str, req: Request, base: Behaviour, scope: dict) -> Reply:
        delay_s = self.delay_ms / 1000
        if req.family == "anthropic":
            anthropic = self.anthropic
            if op == "batches.create":
                return await anthropic.create(req, delay_s, base)
            if op == "batches.list":
                return await anthropic.list(req)
            if op == "batches.cancel":
                return await anthropic.cancel(req)
            if op == "batches.delete":
                return await anthropic.delete(req)
            return await anthropic.retrieve(req)
        openai = self.openai
        if op == "files.create":
            try:
                fields, files = read_form(_header(scope, b"content-type"), req.body)
            except BadForm as exc:
                return openai_error(400, f"The upload is not a valid multipart form: {exc}.")
            try:
                return openai.upload(req, fields, files)
            except TooLarge:
                return openai_error(413, "The mock holds no more files: delete some.", "file")
        if op.startswith("files."):
            return openai.file_request(req)
        if op == "batches.create":
            return await openai.create(req, delay_s, base)
        if op == "batches.list":
            return await openai.list(req)
        if op == "batches.cancel":
            return await openai.cancel(req)
        return await openai.retrieve(req)

    async def _fault(self, family: str, b: Behaviour, send: Any) -> bool:
        """A named upstream's behaviour for the call itself: hang, wait, or answer its status."""
        if b.hang:
            await asyncio.Event().wait()
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.status == 200:
            return False
        body = anthropic_shape.error(b.status) if family == "anthropic" else openai_shape.error(b.status)
        await self._reply(send, Reply(b.status, _json.encode(body)))
        return True

    async def _reply(self, send: Any, reply: Reply) -> None:
        await self.mock._send(send, reply.status, reply.body, [(b"content-type", reply.content_type)])

    # Control

    async def control(self, scope: dict, receive: Any, send: Any) -> None:
        method = scope["method"]
        raw = await read_bounded(receive, SMALL_BODY_BYTES) if method == "PUT" else b""
        if method == "GET":
            return await self._reply(send, Reply(200, _json.encode(await self.report())))
        if method == "DELETE":
            self.forget()
            return await self._reply(send, Reply(200, b"{}"))
        if method == "PUT":
            try:
                delay = _decode(raw).get("delay_ms")
            except msgspec.DecodeError:
                delay = None
            if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= MAX_DELAY_MS:
                return await self._reply(send, openai_error(400, f"'delay_ms' must be an integer 0..{MAX_DELAY_MS}."))
            self.delay_ms = delay
            return await self._reply(send, Reply(200, b"{}"))
        await self._reply(send, openai_error(404, f"No route for {method} /mock/batches."))

    def forget(self) -> None:
        self.files.clear()
        self.openai.batches.clear()
        self.anthropic.batches.clear()
        self.calls.clear()
        self.by_upstream.clear()

    async def report(self) -> dict[str, Any]:
        """Every batch brought up to now: status, lines and each custom_id's outcome; and totals."""
        now = time.time()
        batches: dict[str, Any] = {}
        answered = cancelled = 0
        for batch in self.openai.batches.values():
            if batch.run is not None:
                await batch.run.advance(now)
            batches[batch.id] = _described(batch.owner, batch.status(), batch.run)
        for message_batch in self.anthropic.batches.values():
            await message_batch.run.advance(now)
            batches[message_batch.id] = _described(message_batch.owner, message_batch.status(), message_batch.run)
        for described in batches.values():
            answered += described["answered"]
            cancelled += described["cancelled"]
        return {
            "delay_ms": self.delay_ms,
            "created": len(batches),
            "lines_answered": answered,
            "lines_cancelled": cancelled,
            "files": len(self.files.files),
            "calls": self.calls,
            "by_upstream": self.by_upstream,
            "batches": batches,
        }


def _described(owner: str, status: str, run: BatchRun | None) -> dict[str, Any]:
    upstream, _, family = owner.partition("/")
    lines = run.lines if run is not None else []
    return {
        "family": family,
        "upstream": upstream,
        "status": status,
        "lines": len(lines),
        "answered": run.answered if run is not None else 0,
        "cancelled": run.unanswered if run is not None else 0,
        "custom_ids": {
            line.custom_id: {
                "answered": line.answer is not None,
                "status": line.answer.status if line.answer is not None else None,
                "usage": line.answer.usage if line.answer is not None else None,
            }
            for line in lines
        },
    }


def _header(scope: dict, name: bytes) -> str:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), b"").decode("latin-1")


def _origin(scope: dict) -> str:
    host = _header(scope, b"host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"
