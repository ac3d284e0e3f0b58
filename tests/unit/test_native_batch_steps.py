"""Native batches, the I/O half: each step (``tasks.native_batch.call``)
against an in-process fake of the provider's batch API (httpx.MockTransport)
and a dict-backed object store: the lines sent are exactly what each
family's adapter sends alone, a submit sent again adopts the batch an
earlier one made (OpenAI, Azure), results become one ``NativeLineEnds``
blob at the batch price, and upstream failures end the step as the walk
expects."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest

from schemas.chat import ChatBody, EmbeddingsBody, Message
from schemas.envelope import Deployment
from schemas.errors import InvalidRequest, UpstreamRateLimited
from schemas.native_batch import NativeLine, NativeLineEnds, NativeLines
from schemas.replies import Failure, Final
from schemas.tasks import BlobRef, NativeBatchRequest, NativeBatchResult
from services.providers.anthropic.chat import AnthropicChat
from services.providers.azure.chat import AzureOpenAIChat
from services.providers.call import CallFailed, CallOutcome, CallProgress
from services.providers.http import UpstreamHTTP
from services.providers.openai.chat import OpenAIChat
from services.providers.tasks import native_batch
from services.providers.tasks.native_anthropic import UNFIT_IDS

OPENAI = Deployment(
    "oa", "openai", "https://api.openai.test/v1", "gpt-4o-mini", catalog_model="gpt-4o-mini", api_key_env="NB_KEY"
)
AZURE = Deployment(
    "az",
    "azure",
    "https://res.openai.azure.test",
    "my-batch-4o",
    api_version="2024-10-21",
    catalog_model="azure/gpt-4o-mini",
    api_key_env="NB_KEY",
)
CLAUDE = Deployment(
    "cl",
    "anthropic",
    "https://api.anthropic.test",
    "claude-3-5-haiku-20241022",
    catalog_model="claude-3-5-haiku-20241022",
    api_key_env="NB_KEY",
)
EMBED = Deployment(
    "em",
    "openai",
    "https://api.openai.test/v1",
    "text-embedding-3-small",
    catalog_model="text-embedding-3-small",
    api_key_env="NB_KEY",
)
BATCH = "batch_01JNATIVE000000000000000001"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB_KEY", "sk-up")


def chat(text: str, **fields: Any) -> ChatBody:
    return ChatBody(model="alias", messages=[Message(role="user", content=text)], **fields)


class MemoryBlobs:
    """``BlobAccess`` over a dict; reads in small slices, as the store does."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> BlobRef:
        self.kept[name] = bytes(data)
        return BlobRef(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def write(self, name: str, data: bytes, content_type: str, ttl_s: float) -> BlobRef:
        assert content_type == "application/x-msgpack" and ttl_s >= 86400
        return self.put(name, data)

    async def read(self, ref: BlobRef) -> AsyncIterator[bytes]:
        data = self.kept[ref.name]
        for at in range(0, len(data), 97):
            yield data[at : at + 97]


class Client(UpstreamHTTP):
    """``UpstreamHTTP`` with the GET a batch's poll and results need."""

    async def get(self, url: str, headers: dict[str, str], read_timeout_s: float) -> httpx.Response:
        return await self.transport.handle_async_request(httpx.Request("GET", url, headers=headers))


def lines_blob(blobs: MemoryBlobs, lines: list[NativeLine]) -> BlobRef:
    """The lines as the driver writes them: a map of one array32, a line at a time."""
    encode = msgspec.msgpack.Encoder().encode
    data = b"\x81\xa5lines\xdd" + len(lines).to_bytes(4, "big") + b"".join(encode(line) for line in lines)
    assert msgspec.msgpack.decode(data, type=NativeLines).lines == lines
    return blobs.put("-/upload/lines", data)


def multipart_file(request: httpx.Request) -> tuple[dict[str, str], bytes]:
    """The form fields and the file of a multipart upload."""
    boundary = request.headers["content-type"].split("boundary=")[1].encode()
    fields: dict[str, str] = {}
    content = b""
    for part in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        if b"filename=" in head:
            content = body[:-2]
        else:
            fields[name] = body[:-2].decode()
    assert int(request.headers["content-length"]) == len(request.content)
    return fields, content


class FakeOpenAI:
    """OpenAI's Files and Batch APIs (``root`` "/v1"), or Azure's ("/openai",
    ``api-version`` asked): what a test needs of them, as their references say."""

    def __init__(self, root: str = "/v1", page: int = 100) -> None:
        self.root = root
        self.page = page
        self.files: dict[str, bytes] = {}
        self.batches: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.refuse: dict[str, httpx.Response] = {}
        self._ids = itertools.count(1)

    def batch(self, batch_id: str) -> dict[str, Any]:
        return next(b for b in self.batches if b["id"] == batch_id)

    def finish(self, batch_id: str, output: list[bytes], errors: list[bytes], status: str = "completed") -> None:
        b = self.batch(batch_id)
        b["status"] = status
        b["request_counts"] = {"total": len(output) + len(errors), "completed": len(output), "failed": len(errors)}
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = f"file-out{next(self._ids)}"
                self.files[file_id] = b"\n".join(lines) + b"\n"
                b[key] = file_id

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.root == "/openai":
            assert request.url.params["api-version"] == "2024-10-21"
            assert request.headers["api-key"] == "sk-up" and "authorization" not in request.headers
        else:
            assert request.headers["authorization"] == "Bearer sk-up"
        path = request.url.path.removeprefix(self.root)
        refused = self.refuse.get(f"{request.method} {path}")
        if refused is not None:
            return refused
        if request.method == "POST" and path == "/files":
            fields, content = multipart_file(request)
            assert fields == {"purpose": "batch"}
            file_id = f"file-in{next(self._ids)}"
            self.files[file_id] = content
            return httpx.Response(
                200, json={"id": file_id, "object": "file", "purpose": "batch", "bytes": len(content)}
            )
        if request.method == "POST" and path == "/batches":
            doc = json.loads(request.content)
            batch = {
                "id": f"batch_up{next(self._ids)}",
                "object": "batch",
                "endpoint": doc["endpoint"],
                "input_file_id": doc["input_file_id"],
                "completion_window": doc["completion_window"],
                "status": "validating",
                "created_at": 1711471533,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "metadata": doc.get("metadata"),
            }
            self.batches.append(batch)
            return httpx.Response(200, json=batch)
        if request.method == "GET" and path == "/batches":
            newest = self.batches[::-1]
            after = request.url.params.get("after")
            if after:
                newest = newest[[b["id"] for b in newest].index(after) + 1 :]
            shown = newest[: self.page]
            last = shown[-1]["id"] if shown else None
            return httpx.Response(
                200, json={"object": "list", "data": shown, "has_more": len(newest) > len(shown), "last_id": last}
            )
        if request.method == "GET" and path.startswith("/batches/"):
            return httpx.Response(200, json=self.batch(path.split("/")[2]))
        if request.method == "POST" and path.endswith("/cancel"):
            b = self.batch(path.split("/")[2])
            if b["status"] in ("completed", "failed", "expired", "cancelled"):
                error = {
                    "message": f"Cannot cancel a batch with status {b['status']}.",
                    "type": "invalid_request_error",
                }
                return httpx.Response(400, json={"error": error})
            b["status"] = "cancelling"
            return httpx.Response(200, json=b)
        if request.method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            return httpx.Response(200, content=self.files[path.split("/")[2]])
        return httpx.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        data = self.files[self.batch(batch_id)["input_file_id"]]
        return [json.loads(line) for line in data.splitlines()]

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.url.path == self.root + path)


async def step(
    dep: Deployment, task: NativeBatchRequest, handler: Callable[[httpx.Request], httpx.Response], blobs: MemoryBlobs
) -> tuple[NativeBatchResult, CallOutcome, CallProgress]:
    progress = CallProgress()
    async with contextlib.aclosing(Client(httpx.MockTransport(handler))) as client:
        outcome = await native_batch.call(client, dep, task, progress, blobs)
    assert isinstance(outcome.task_result, NativeBatchResult)
    return outcome.task_result, outcome, progress


def submit(lines: BlobRef, endpoint: str = "/v1/chat/completions", count: int = 2) -> NativeBatchRequest:
    return NativeBatchRequest(
        model="alias", op="submit", batch_id=BATCH, endpoint=endpoint, lines=lines, line_count=count
    )


def later(op: str, upstream_id: str, dep: Deployment = OPENAI) -> NativeBatchRequest:
    return NativeBatchRequest(model="alias", op=op, batch_id=BATCH, upstream_id=upstream_id, deployment=dep.name)  # type: ignore[arg-type]


def output_line(custom_id: str, text: str, prompt: int, completion: int) -> bytes:
    body = {
        "id": f"chatcmpl-{custom_id}",
        "object": "chat.completion",
        "created": 1711475054,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
    response = {"status_code": 200, "request_id": "req_1", "body": body}
    return json.dumps({"id": "batch_req_1", "custom_id": custom_id, "response": response, "error": None}).encode()


def ends_of(blobs: MemoryBlobs, result: NativeBatchResult) -> dict[str, Final | Failure]:
    assert result.results is not None
    decoded = msgspec.msgpack.decode(blobs.kept[result.results.name], type=NativeLineEnds)
    return {end.custom_id: end.reply for end in decoded.ends}


# -- OpenAI ------------------------------------------------------------------
async def test_a_submit_uploads_each_line_as_the_chat_adapter_sends_it_and_creates_one_batch() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    bodies = [chat("What is 2+2?", max_tokens=20), chat("Hi", temperature=0.5)]
    ref = lines_blob(blobs, [NativeLine("request-1", chat=bodies[0]), NativeLine("request-2", chat=bodies[1])])
    result, outcome, progress = await step(OPENAI, submit(ref), up.handler, blobs)
    assert (result.upstream_id, result.deployment, result.state, result.upstream_status) == (
        "batch_up2",
        "oa",
        "running",
        "validating",
    )
    assert result.results is None and outcome.cost.total == 0 and outcome.usage.total_tokens == 0
    sent = up.input_lines("batch_up2")
    direct = [json.loads(OpenAIChat().build_request(OPENAI, b, "sk-up", stream=False).content) for b in bodies]
    assert sent == [
        {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": direct[0]},
        {"custom_id": "request-2", "method": "POST", "url": "/v1/chat/completions", "body": direct[1]},
    ]
    assert up.batch("batch_up2")["metadata"] == {"sluice_batch_id": BATCH}
    assert up.batch("batch_up2")["endpoint"] == "/v1/chat/completions"
    assert up.count("POST", "/files") == 1 and up.count("POST", "/batches") == 1
    # The upstream calls bill nothing themselves, even cut short.
    assert progress.sent and progress.cost is not None and progress.cost.total == 0


async def test_a_submit_sent_again_adopts_the_batch_an_earlier_one_made() -> None:
    up, blobs = FakeOpenAI(page=2), MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine("a", chat=chat("x")), NativeLine("b", chat=chat("y"))])
    first, _, _ = await step(OPENAI, submit(ref), up.handler, blobs)
    for other in range(3):  # made since by other batches: the earlier one is on a later page
        other_task = msgspec.structs.replace(submit(ref), batch_id=f"batch_other{other}")
        await step(OPENAI, other_task, up.handler, blobs)
    up.requests.clear()
    again, _, _ = await step(OPENAI, submit(ref), up.handler, blobs)
    assert again.upstream_id == first.upstream_id and again.state == "running"
    assert up.count("POST", "/files") == 0 and up.count("POST", "/batches") == 0
    assert up.count("GET", "/batches") == 2  # two pages looked at


async def test_poll_results_and_the_lines_at_the_batch_price() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine(c, chat=chat(c)) for c in ("r1", "r2", "r3", "r4")])
    made, _, _ = await step(OPENAI, submit(ref, count=4), up.handler, blobs)
    polled, _, _ = await step(OPENAI, later("poll", made.upstream_id), up.handler, blobs)
    assert polled.state == "running"
    early, _, _ = await step(OPENAI, later("results", made.upstream_id), up.handler, blobs)
    assert early.state == "running" and early.results is None
    refused = {"message": "Invalid 'max_tokens'.", "type": "invalid_request_error", "code": "invalid_value"}
    errors = [
        json.dumps({"custom_id": "r3", "response": {"status_code": 400, "body": {"error": refused}}, "error": None}),
        json.dumps({"custom_id": "r4", "response": None, "error": {"code": "batch_expired", "message": "late"}}),
    ]
    up.finish(
        made.upstream_id,
        [output_line("r1", "one", 10, 4), b"{garbled", output_line("r2", "two", 12, 6)],
        [e.encode() for e in errors],
    )
    polled, _, _ = await step(OPENAI, later("poll", made.upstream_id), up.handler, blobs)
    assert (polled.state, polled.upstream_status, polled.completed, polled.failed) == ("ended", "completed", 3, 2)
    result, _, _ = await step(OPENAI, later("results", made.upstream_id), up.handler, blobs)
    assert result.state == "ended" and result.results is not None
    ends = ends_of(blobs, result)
    assert sorted(ends) == ["r1", "r2", "r3"]  # r4 never ran; the garbled line names no one
    one = ends["r1"]
    assert isinstance(one, Final) and one.message is not None and one.message.content == "one"
    assert one.model == "gpt-4o-mini-2024-07-18" and one.deployment == "oa"
    assert one.cost.total == (10 * 150000 + 4 * 600000) // 2 == one.cost_pico_usd
    three = ends["r3"]
    assert isinstance(three, Failure) and (three.status, three.code) == (400, "invalid_value")


async def test_an_embeddings_batch_runs_at_the_embeddings_endpoint() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine("e1", embeddings=EmbeddingsBody(model="alias", input=["a", "b"]))])
    made, _, _ = await step(EMBED, submit(ref, "/v1/embeddings", 1), up.handler, blobs)
    (line,) = up.input_lines(made.upstream_id)
    assert line["url"] == "/v1/embeddings" and line["body"]["model"] == "text-embedding-3-small"
    assert up.batch(made.upstream_id)["endpoint"] == "/v1/embeddings"
    vectors = [{"object": "embedding", "index": i, "embedding": [i, 0.5]} for i in (1, 0)]
    body = {
        "object": "list",
        "data": vectors,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    answer = {"custom_id": "e1", "response": {"status_code": 200, "body": body}, "error": None}
    up.finish(made.upstream_id, [json.dumps(answer).encode()], [])
    result, _, _ = await step(EMBED, later("results", made.upstream_id, EMBED), up.handler, blobs)
    end = ends_of(blobs, result)["e1"]
    assert isinstance(end, Final) and end.embeddings == [[0, 0.5], [1, 0.5]]
    assert end.cost.total == 4 * 20000 // 2


async def test_cancel_and_a_cancel_refused_because_it_ended() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine("a", chat=chat("x"))])
    made, _, _ = await step(OPENAI, submit(ref, count=1), up.handler, blobs)
    cancelled, _, _ = await step(OPENAI, later("cancel", made.upstream_id), up.handler, blobs)
    assert (cancelled.state, cancelled.upstream_status) == ("running", "cancelling")
    up.finish(made.upstream_id, [], [], status="cancelled")
    again, _, _ = await step(OPENAI, later("cancel", made.upstream_id), up.handler, blobs)
    assert (again.state, again.upstream_status) == ("ended", "cancelled")


async def test_a_failed_batch_is_ended_with_its_reason() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    made, _, _ = await step(
        OPENAI, submit(lines_blob(blobs, [NativeLine("a", chat=chat("x"))]), count=1), up.handler, blobs
    )
    up.batch(made.upstream_id).update(
        status="failed", errors={"data": [{"code": "x", "message": "bad file", "line": 1}]}
    )
    polled, _, _ = await step(OPENAI, later("poll", made.upstream_id), up.handler, blobs)
    assert polled.state == "ended" and polled.error == "line 1: bad file"


async def test_upstream_errors_end_the_step_as_the_walk_expects() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    up.batches.append({"id": "batch_x", "status": "in_progress"})
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    up.refuse["GET /batches/batch_x"] = httpx.Response(429, json=error, headers={"retry-after": "3"})
    with pytest.raises(CallFailed) as failed:
        await step(OPENAI, later("poll", "batch_x"), up.handler, blobs)
    assert isinstance(failed.value.error, UpstreamRateLimited) and failed.value.error.retry_after_s == 3.0
    assert failed.value.repeatable

    def cut(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(CallFailed) as timed_out:
        await step(OPENAI, later("poll", "batch_x"), cut, blobs)
    assert timed_out.value.error.status == 504 and timed_out.value.repeatable


async def test_a_line_no_adapter_can_send_refuses_the_submit_before_anything_is_sent() -> None:
    up, blobs = FakeOpenAI(), MemoryBlobs()
    ref = lines_blob(
        blobs, [NativeLine("ok", chat=chat("x")), NativeLine("emb", embeddings=EmbeddingsBody(model="a", input="x"))]
    )
    with pytest.raises(CallFailed) as refused:
        await step(OPENAI, submit(ref), up.handler, blobs)
    assert isinstance(refused.value.error, InvalidRequest) and "'emb'" in refused.value.error.message
    assert up.count("POST", "/files") == 0 and up.count("POST", "/batches") == 0


# -- Azure -------------------------------------------------------------------
async def test_azure_runs_the_same_steps_under_its_paths() -> None:
    up, blobs = FakeOpenAI(root="/openai"), MemoryBlobs()
    body = chat("hello", max_tokens=5)
    ref = lines_blob(blobs, [NativeLine("task-0", chat=body)])
    made, _, _ = await step(AZURE, submit(ref, count=1), up.handler, blobs)
    (line,) = up.input_lines(made.upstream_id)
    direct = json.loads(AzureOpenAIChat().build_request(AZURE, body, "k", stream=False).content)
    assert line == {"custom_id": "task-0", "method": "POST", "url": "/chat/completions", "body": direct}
    assert direct["model"] == "my-batch-4o"
    assert up.batch(made.upstream_id)["endpoint"] == "/chat/completions"
    up.finish(made.upstream_id, [output_line("task-0", "hi", 3, 1)], [])
    result, _, _ = await step(AZURE, later("results", made.upstream_id, AZURE), up.handler, blobs)
    end = ends_of(blobs, result)["task-0"]
    assert isinstance(end, Final) and end.deployment == "az" and end.cost.total == (3 * 150000 + 600000) // 2
    again, _, _ = await step(AZURE, submit(ref, count=1), up.handler, blobs)
    assert again.upstream_id == made.upstream_id and up.count("POST", "/batches") == 1


# -- Anthropic ---------------------------------------------------------------
class FakeAnthropic:
    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.results: dict[str, bytes] = {}
        self.seen: list[httpx.Request] = []
        self.create: Callable[[httpx.Request], httpx.Response] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        assert request.headers["x-api-key"] == "sk-up" and request.headers["anthropic-version"] == "2023-06-01"
        path = request.url.path
        if request.method == "POST" and path == "/v1/messages/batches":
            if self.create is not None:
                return self.create(request)
            batch_id = f"msgbatch_{len(self.batches) + 1:04d}"
            self.requests[batch_id] = json.loads(request.content)["requests"]
            counts = {
                "processing": len(self.requests[batch_id]),
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            }
            self.batches[batch_id] = {
                "id": batch_id,
                "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": counts,
            }
            return httpx.Response(200, json=self.batches[batch_id])
        parts = path.split("/")
        batch = self.batches[parts[4]]
        if request.method == "GET" and len(parts) == 5:
            return httpx.Response(200, json=batch)
        if request.method == "POST" and parts[5] == "cancel":
            batch["processing_status"] = "canceling"
            return httpx.Response(200, json=batch)
        assert request.method == "GET" and parts[5] == "results"
        return httpx.Response(200, content=self.results[parts[4]])


async def test_anthropic_submits_the_messages_adapters_params_and_reads_its_results() -> None:
    up, blobs = FakeAnthropic(), MemoryBlobs()
    bodies = [chat("Hello", max_tokens=64), chat("Hi again")]
    ids = ["my-first-request", "my-second-request", "my-third-request"]
    ref = lines_blob(
        blobs,
        [NativeLine(ids[0], chat=bodies[0]), NativeLine(ids[1], chat=bodies[1]), NativeLine(ids[2], chat=bodies[1])],
    )
    made, _, _ = await step(CLAUDE, submit(ref, count=3), up.handler, blobs)
    assert (made.upstream_id, made.state, made.upstream_status) == ("msgbatch_0001", "running", "in_progress")
    direct = [json.loads(AnthropicChat().build_request(CLAUDE, b, "k", stream=False).content) for b in bodies]
    assert up.requests["msgbatch_0001"] == [
        {"custom_id": ids[0], "params": direct[0]},
        {"custom_id": ids[1], "params": direct[1]},
        {"custom_id": ids[2], "params": direct[1]},
    ]
    assert [r.method for r in up.seen] == ["POST"]  # nothing to look for first: Anthropic keeps no metadata
    up.batches["msgbatch_0001"].update(
        processing_status="ended",
        request_counts={"processing": 0, "succeeded": 1, "errored": 1, "canceled": 1, "expired": 0},
    )
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 9, "cache_read_input_tokens": 0},
    }
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    results = [
        {"custom_id": ids[0], "result": {"type": "succeeded", "message": message}},
        {"custom_id": ids[1], "result": {"type": "errored", "error": error}},
        {"custom_id": ids[2], "result": {"type": "canceled"}},
    ]
    up.results["msgbatch_0001"] = b"\n".join(json.dumps(r).encode() for r in results) + b"\n"
    result, _, _ = await step(CLAUDE, later("results", "msgbatch_0001", CLAUDE), up.handler, blobs)
    assert (result.state, result.completed, result.failed) == ("ended", 1, 1)
    assert up.seen[-1].url.path == "/v1/messages/batches/msgbatch_0001/results"
    ends = ends_of(blobs, result)
    assert sorted(ends) == ids[:2]
    hello = ends[ids[0]]
    assert isinstance(hello, Final) and hello.finish_reason == "stop" and hello.usage.prompt_tokens == 10
    assert hello.cost.total == (10 * 800000 + 9 * 4000000) // 2
    refused = ends[ids[1]]
    assert isinstance(refused, Failure) and (refused.status, refused.code) == (400, "invalid_request_error")
    cancelled, _, _ = await step(CLAUDE, later("cancel", "msgbatch_0001", CLAUDE), up.handler, blobs)
    assert cancelled.upstream_status == "canceling"


async def test_anthropic_refuses_custom_ids_it_cannot_carry_before_sending_anything() -> None:
    up, blobs = FakeAnthropic(), MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine("fine", chat=chat("x")), NativeLine("doc:2 of 3", chat=chat("y"))])
    with pytest.raises(CallFailed) as refused:
        await step(CLAUDE, submit(ref), up.handler, blobs)
    assert refused.value.error.code == UNFIT_IDS and "'doc:2 of 3'" in refused.value.error.message
    assert not refused.value.error.retryable and up.seen == []


async def test_an_anthropic_create_cut_off_is_not_tried_again_but_one_refused_is() -> None:
    blobs = MemoryBlobs()
    ref = lines_blob(blobs, [NativeLine("a", chat=chat("x"))])
    up = FakeAnthropic()

    def cut(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    up.create = cut
    with pytest.raises(CallFailed) as timed_out:
        await step(CLAUDE, submit(ref, count=1), up.handler, blobs)
    assert not timed_out.value.repeatable  # the batch may exist: another try could make a second
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    up.create = lambda request: httpx.Response(529, json=overloaded)
    with pytest.raises(CallFailed) as busy:
        await step(CLAUDE, submit(ref, count=1), up.handler, blobs)
    assert busy.value.repeatable and busy.value.error.retryable and busy.value.error.status == 503


# -- against the project's mock upstream (its batch APIs follow the same references) --
@pytest.mark.parametrize("family", ["openai", "azure", "anthropic"])
async def test_a_whole_run_against_the_mock_upstream(family: str) -> None:
    from loadtest.mock_upstream.app import MockUpstream

    mock, blobs = MockUpstream(), MemoryBlobs()
    dep = {
        "openai": msgspec.structs.replace(OPENAI, base_url="http://mock/v1"),
        "azure": msgspec.structs.replace(AZURE, base_url="http://mock"),
        "anthropic": msgspec.structs.replace(CLAUDE, base_url="http://mock"),
    }[family]
    ids = ["line-1", "line-2", "line-3"]
    prompts = ["Say hello", "Say goodbye", "Fail me [mock:status=400]"]
    ref = lines_blob(blobs, [NativeLine(c, chat=chat(p, max_tokens=30)) for c, p in zip(ids, prompts, strict=True)])
    async with contextlib.aclosing(Client(httpx.ASGITransport(mock))) as client:
        control = httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock")
        async with control:
            assert (await control.put("/mock/batches", json={"delay_ms": 30})).status_code == 200

            async def run(task: NativeBatchRequest) -> NativeBatchResult:
                outcome = await native_batch.call(client, dep, task, CallProgress(), blobs)
                assert isinstance(outcome.task_result, NativeBatchResult)
                return outcome.task_result

            made = await run(submit(ref, count=3))
            assert made.state == "running" and made.deployment == dep.name
            if family != "anthropic":  # sent again: the batch it made is found
                assert (await run(submit(ref, count=3))).upstream_id == made.upstream_id
            for _ in range(100):
                polled = await run(later("poll", made.upstream_id, dep))
                if polled.state == "ended":
                    break
                await asyncio.sleep(0.01)
            assert polled.state == "ended" and (polled.completed, polled.failed) == (2, 1)
            result = await run(later("results", made.upstream_id, dep))
            report = (await control.get("/mock/batches")).json()
    ends = ends_of(blobs, result)
    assert sorted(ends) == ids
    seen = report["batches"][made.upstream_id]["custom_ids"]
    for custom_id in ids[:2]:
        final = ends[custom_id]
        assert isinstance(final, Final) and final.message is not None and final.message.content
        billed = seen[custom_id]["usage"]
        assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (
            billed["prompt_tokens"],
            billed["completion_tokens"],
        )
        assert final.cost.total > 0 and final.deployment == dep.name
    failed = ends["line-3"]
    assert isinstance(failed, Failure) and failed.status == 400
    assert report["created"] == 1 and report["lines_answered"] == 3
