"""The mock upstream's provider batch APIs (``loadtest/mock_upstream/batch_shape``):
OpenAI's Files and Batch APIs, Azure's under ``/openai/``, Anthropic's Message
Batches, driven in-process by the official ``openai`` and ``anthropic`` SDKs,
and every object they read validated against the SDKs' own models."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch, FileObject

from loadtest.mock_upstream import batch_run, batch_shape
from loadtest.mock_upstream.app import MockUpstream

CHAT = "/v1/chat/completions"


@pytest.fixture
def mock() -> MockUpstream:
    return MockUpstream()


@pytest.fixture
async def http(mock: MockUpstream) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(mock), base_url="http://mock") as client:
        yield client


def oai(http: httpx.AsyncClient, prefix: str = "") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-mock", base_url=f"http://mock{prefix}/v1", http_client=http, max_retries=0)


def claude(mock: MockUpstream, prefix: str = "") -> anthropic.AsyncAnthropic:
    # The anthropic SDK takes httpx2's clients alone.
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(mock))
    return anthropic.AsyncAnthropic(api_key="sk-mock", base_url=f"http://mock{prefix}", http_client=http, max_retries=0)


async def set_delay(http: httpx.AsyncClient, ms: int) -> None:
    assert (await http.put("/mock/batches", json={"delay_ms": ms})).status_code == 200


def chat_line(custom_id: str, text: str, url: str = CHAT, model: str = "gpt-mock") -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


async def upload(client: openai.AsyncOpenAI, lines: list[dict[str, Any]]) -> FileObject:
    stored = await client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    FileObject.model_validate(stored.model_dump())
    return stored


async def until_ended(client: openai.AsyncOpenAI, batch_id: str) -> Batch:
    deadline = time.monotonic() + 5
    while True:
        batch = await client.batches.retrieve(batch_id)
        Batch.model_validate(batch.model_dump())
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, batch.status
        await asyncio.sleep(0.02)


async def output_lines(client: openai.AsyncOpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    text = (await client.files.content(file_id)).text
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:  # OpenAI's batch output format: the request output object
        assert set(line) == {"id", "custom_id", "response", "error"} and line["id"].startswith("batch_req_")
        assert set(line["response"]) == {"status_code", "request_id", "body"} and line["error"] is None
    return {line["custom_id"]: line for line in lines}


async def counts(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get("/mock/batches")).json()


async def test_the_openai_sdk_runs_a_batch_each_line_answered_as_alone(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    await set_delay(http, 60)
    client = oai(http)
    lines = [chat_line(f"q{i}", f"Question number {i}") for i in range(4)]
    lines.append(chat_line("late", "Busy now [mock:status=429]"))
    stored = await upload(client, lines)
    assert stored.purpose == "batch" and stored.bytes == len(jsonl(lines)) and stored.filename == "in.jsonl"
    created = await client.batches.create(
        input_file_id=stored.id, endpoint=CHAT, completion_window="24h", metadata={"run": "t1"}
    )
    assert created.status == "validating" and created.metadata == {"run": "t1"}
    batch = await until_ended(client, created.id)
    assert batch.status == "completed" and batch.model == "gpt-mock"
    assert batch.request_counts is not None and batch.request_counts.model_dump() == {
        "completed": 4,
        "failed": 1,
        "total": 5,
    }
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
    assert batch.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at

    answered = await output_lines(client, batch.output_file_id)
    failed = await output_lines(client, batch.error_file_id)
    assert set(answered) == {"q0", "q1", "q2", "q3"} and set(failed) == {"late"}
    assert failed["late"]["response"]["status_code"] == 429 and "error" in failed["late"]["response"]["body"]
    # What a direct POST of the same body (byte for byte, as the file holds it) answers.
    direct = (await http.post(CHAT, content=json.dumps(lines[0]["body"]).encode())).json()
    body = answered["q0"]["response"]["body"]
    assert answered["q0"]["response"]["status_code"] == 200 and body["object"] == "chat.completion"
    assert body["usage"] == direct["usage"] and body["choices"][0]["message"] == direct["choices"][0]["message"]
    assert batch.usage is not None and batch.usage.input_tokens == 4 * direct["usage"]["prompt_tokens"]

    seen = await counts(http)
    per_line = seen["batches"][batch.id]["custom_ids"]
    assert per_line["q1"] == {
        "answered": True,
        "status": 200,
        "usage": {
            "prompt_tokens": answered["q1"]["response"]["body"]["usage"]["prompt_tokens"],
            "completion_tokens": answered["q1"]["response"]["body"]["usage"]["completion_tokens"],
        },
    }
    assert per_line["late"] == {"answered": True, "status": 429, "usage": None}
    assert seen["created"] == 1 and seen["lines_answered"] == 5 and seen["lines_cancelled"] == 0
    assert seen["calls"]["openai batches.create"] == 1 and seen["calls"]["openai files.create"] == 1
    # Only the direct call is an upstream request; the batch's lines had bodies of their own.
    assert mock.stats.requests == 1 and mock.stats.repeated == 1


async def test_lines_are_answered_over_the_delay_and_a_cancel_stops_the_rest(http: httpx.AsyncClient) -> None:
    await set_delay(http, 600)
    client = oai(http)
    lines = [chat_line(f"q{i}", f"Slow question {i}") for i in range(40)]
    created = await client.batches.create(
        input_file_id=(await upload(client, lines)).id, endpoint=CHAT, completion_window="24h"
    )
    await asyncio.sleep(0.3)
    midway = await client.batches.retrieve(created.id)
    assert midway.status == "in_progress" and midway.request_counts is not None
    assert 0 < midway.request_counts.completed < 40 and midway.completed_at is None

    cancelling = await client.batches.cancel(created.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    await asyncio.sleep(0.35)  # past the batch's end: nothing more is answered
    batch = await until_ended(client, created.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None and batch.completed_at is None
    assert batch.request_counts is not None
    ran = batch.request_counts.completed
    assert midway.request_counts.completed <= ran < 40 and batch.request_counts.failed == 0
    assert batch.request_counts.total == 40
    answered = await output_lines(client, batch.output_file_id)
    assert len(answered) == ran and batch.error_file_id is None
    seen = await counts(http)
    assert seen["lines_answered"] == ran and seen["lines_cancelled"] == 40 - ran
    per_line = seen["batches"][batch.id]["custom_ids"]
    assert {cid for cid, line in per_line.items() if line["answered"]} == set(answered)
    # Cancelling again answers the same; a completed batch cannot be cancelled.
    assert (await client.batches.cancel(created.id)).status == "cancelled"
    await set_delay(http, 0)
    done = await client.batches.create(
        input_file_id=(await upload(client, lines[:1])).id, endpoint=CHAT, completion_window="24h"
    )
    assert (await until_ended(client, done.id)).status == "completed"
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(done.id)


async def test_an_invalid_input_file_fails_the_batch_with_openais_errors(http: httpx.AsyncClient) -> None:
    client = oai(http)
    good = json.dumps(chat_line("a", "Hi")).encode()
    other_model = json.dumps(chat_line("c", "Hi", model="gpt-other")).encode()
    wrong_url = json.dumps(chat_line("d", "Hi", url="/v1/embeddings")).encode()
    data = b"\n".join([good, b"{not json", good, other_model, wrong_url, b'{"custom_id": "e"}'])
    stored = await client.files.create(file=("bad.jsonl", data), purpose="batch")
    created = await client.batches.create(input_file_id=stored.id, endpoint=CHAT, completion_window="24h")
    assert created.status == "validating"
    batch = await until_ended(client, created.id)
    assert batch.status == "failed" and batch.failed_at is not None and batch.errors is not None
    found = [(e.code, e.line) for e in batch.errors.data or []]
    assert found == [
        ("invalid_json_line", 2),
        ("duplicate_custom_id", 3),
        ("mismatched_model", 4),
        ("invalid_url", 5),
        ("invalid_request", 6),
    ]
    assert batch.request_counts is not None and batch.request_counts.total == 0
    assert batch.output_file_id is None and batch.error_file_id is None
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(batch.id)
    assert (await counts(http))["batches"][batch.id]["lines"] == 0

    # Refused at the create: a file of another purpose, an unknown file, an endpoint the mock does not run.
    other = await client.files.create(file=("x.jsonl", good), purpose="user_data")
    for file_id, endpoint in ((other.id, CHAT), ("file-nope", CHAT), (stored.id, "/v1/completions")):
        with pytest.raises(openai.BadRequestError):
            await client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]


async def test_embeddings_lines_bill_their_prompt_tokens(http: httpx.AsyncClient) -> None:
    await set_delay(http, 0)
    client = oai(http)
    line = {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings"}
    body = {"model": "embed-mock", "input": ["one two three", "four"]}
    stored = await upload(client, [{**line, "body": body}])
    created = await client.batches.create(input_file_id=stored.id, endpoint="/v1/embeddings", completion_window="24h")
    batch = await until_ended(client, created.id)
    [answer] = (await output_lines(client, batch.output_file_id)).values()
    assert answer["response"]["body"]["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert len(answer["response"]["body"]["data"]) == 2
    line_counts = (await counts(http))["batches"][batch.id]["custom_ids"]["e1"]
    assert line_counts == {"answered": True, "status": 200, "usage": {"prompt_tokens": 4}}


async def test_azure_runs_a_batch_of_its_deployment_under_its_own_paths(http: httpx.AsyncClient) -> None:
    await set_delay(http, 0)
    azure = openai.AsyncAzureOpenAI(
        api_key="k", azure_endpoint="http://mock", api_version="2024-10-21", http_client=http, max_retries=0
    )
    # Azure's docs write the url without "/v1", and the deployment as the model.
    lines = [chat_line("a", "Hi there", url="/chat/completions", model="my-deployment")]
    lines.append(chat_line("b", "Hello there", url="/v1/chat/completions", model="my-deployment"))
    stored = await azure.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    created = await azure.batches.create(input_file_id=stored.id, endpoint="/chat/completions", completion_window="24h")
    batch = await until_ended(azure, created.id)  # type: ignore[arg-type]
    assert batch.status == "completed" and batch.endpoint == "/chat/completions" and batch.model == "my-deployment"
    assert set(await output_lines(azure, batch.output_file_id)) == {"a", "b"}  # type: ignore[arg-type]
    # Azure's classic paths want their api-version; OpenAI's paths know nothing of Azure's batches.
    assert (await http.get(f"/openai/batches/{batch.id}")).status_code == 404
    assert (await http.get(f"/openai/v1/batches/{batch.id}")).status_code == 200
    assert (await http.get(f"/v1/batches/{batch.id}")).status_code == 404
    assert (await counts(http))["batches"][batch.id]["family"] == "azure"


async def test_lists_are_newest_first_with_their_cursors(http: httpx.AsyncClient) -> None:
    client = oai(http)
    stored = await upload(client, [chat_line("a", "Hi")])
    ids = [
        (await client.batches.create(input_file_id=stored.id, endpoint=CHAT, completion_window="24h")).id
        for _ in range(3)
    ]
    first = await client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    assert first.model_dump()["first_id"] == ids[2] and first.model_dump()["last_id"] == ids[1]
    assert [b.id async for b in client.batches.list(limit=2)] == ids[::-1]
    files = await client.files.list()
    assert [f.id for f in files.data] == [stored.id]
    assert (await client.files.delete(stored.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(stored.id)


async def test_the_anthropic_sdk_runs_a_message_batch(mock: MockUpstream, http: httpx.AsyncClient) -> None:
    await set_delay(http, 80)
    client = claude(mock)
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {"model": "claude-mock", "max_tokens": 64, "messages": [{"role": "user", "content": text}]},
        }
        for i, text in enumerate(["Hello there", "Tell me more", "Now fail [mock:status=529]"])
    ]
    created = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    MessageBatch.model_validate(created.model_dump())
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 3 and created.request_counts.succeeded == 0
    await asyncio.sleep(0.1)
    batch = await client.messages.batches.retrieve(created.id)
    MessageBatch.model_validate(batch.model_dump())
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert batch.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    assert batch.results_url == f"http://mock/v1/messages/batches/{batch.id}/results"
    results = {r.custom_id: r async for r in await client.messages.batches.results(batch.id)}
    for result in results.values():
        MessageBatchIndividualResponse.model_validate(result.model_dump())
    assert results["r2"].result.type == "errored"
    assert results["r2"].result.error.error.type == "overloaded_error"
    assert results["r0"].result.type == "succeeded"
    direct = (await http.post("/v1/messages", json=requests[0]["params"])).json()
    assert results["r0"].result.message.usage.input_tokens == direct["usage"]["input_tokens"]
    seen = (await counts(http))["batches"][batch.id]
    assert seen["family"] == "anthropic" and seen["status"] == "ended"
    assert seen["custom_ids"]["r0"]["usage"] == {
        "prompt_tokens": direct["usage"]["input_tokens"],
        "completion_tokens": direct["usage"]["output_tokens"],
    }
    assert mock.stats.requests == 1 and mock.stats.repeated == 1


async def test_an_anthropic_cancel_leaves_the_rest_canceled(mock: MockUpstream, http: httpx.AsyncClient) -> None:
    await set_delay(http, 600)
    client = claude(mock, "/@east")
    requests = [
        {
            "custom_id": f"r{i}",
            "params": {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": f"Q{i}"}]},
        }
        for i in range(30)
    ]
    created = await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    canceling = await client.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 30
    await asyncio.sleep(0.35)
    batch = await client.messages.batches.retrieve(created.id)
    counted = batch.request_counts
    assert batch.processing_status == "ended" and 0 < counted.succeeded < 30
    assert counted.canceled == 30 - counted.succeeded and counted.processing == counted.errored == 0
    assert batch.results_url == f"http://mock/@east/v1/messages/batches/{batch.id}/results"
    kinds = [r.result.type async for r in await client.messages.batches.results(batch.id)]
    assert kinds.count("succeeded") == counted.succeeded and kinds.count("canceled") == counted.canceled
    seen = await counts(http)
    assert seen["lines_cancelled"] == counted.canceled and seen["by_upstream"]["east"] >= 4
    # Another upstream's batches are not this one's; a list pages newest first.
    with pytest.raises(anthropic.NotFoundError):
        await claude(mock, "/@west").messages.batches.retrieve(batch.id)
    later = await client.messages.batches.create(requests=requests[:1])  # type: ignore[arg-type]
    listed = await client.messages.batches.list(limit=1)
    assert [b.id for b in listed.data] == [later.id] and listed.has_more and listed.last_id == later.id
    assert [b.id async for b in client.messages.batches.list(limit=1)] == [later.id, batch.id]
    deleted = await client.messages.batches.delete(batch.id)
    assert deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch.id)


async def test_anthropic_refuses_a_create_it_cannot_run(mock: MockUpstream) -> None:
    client = claude(mock)
    params = {"model": "c", "max_tokens": 9, "messages": [{"role": "user", "content": "Hi"}]}
    for requests in (
        [],
        [{"custom_id": "has space", "params": params}],
        [{"custom_id": "a", "params": params}, {"custom_id": "a", "params": params}],
        [{"custom_id": "a", "params": [1, 2]}],
    ):
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert mock.stats.repeated == 0  # nothing refused reached a model


async def test_a_batch_submitted_twice_shows_as_repeated(mock: MockUpstream, http: httpx.AsyncClient) -> None:
    await set_delay(http, 0)
    client = oai(http)
    stored = await upload(client, [chat_line(f"q{i}", f"Unique question {i}") for i in range(3)])
    for _ in range(2):
        await client.batches.create(input_file_id=stored.id, endpoint=CHAT, completion_window="24h")
    assert mock.stats.repeated == 3 and mock.stats.requests == 0


async def test_a_named_upstreams_fault_fails_its_batch_calls(mock: MockUpstream, http: httpx.AsyncClient) -> None:
    client = oai(http, "/@down")
    stored = await upload(client, [chat_line("a", "Hi")])
    assert (await http.put("/mock/upstreams/down", json={"directives": "[mock:status=503]"})).status_code == 200
    with pytest.raises(openai.InternalServerError):
        await client.batches.create(input_file_id=stored.id, endpoint=CHAT, completion_window="24h")
    reply = await http.get("/@down/v1/messages/batches/msgbatch_x")
    assert reply.status_code == 503 and reply.json()["error"]["type"] == "api_error"
    assert (await http.get(f"/@up/v1/files/{stored.id}")).status_code == 404


async def test_uploads_are_bounded_and_checked(
    mock: MockUpstream, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(batch_shape._BODY_LIMITS, ("openai", "files.create"), 4096)
    too_large = await http.post("/v1/files", files={"file": ("big.jsonl", b"x" * 5000)}, data={"purpose": "batch"})
    assert too_large.status_code == 413 and too_large.json()["error"]["message"]
    no_purpose = await http.post("/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "nonsense"})
    assert no_purpose.status_code == 400
    not_a_form = await http.post("/v1/files", content=b"{}", headers={"content-type": "application/json"})
    assert not_a_form.status_code == 400
    cut = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch'
    assert (
        await http.post("/v1/files", content=cut, headers={"content-type": "multipart/form-data; boundary=b"})
    ).status_code == 400
    assert (await counts(http))["files"] == 0 and mock.stats.requests == 0


async def test_ten_thousand_lines_never_hold_the_loop(mock: MockUpstream, http: httpx.AsyncClient) -> None:
    await set_delay(http, 0)
    client = oai(http)
    stored = await upload(client, [chat_line(f"q{i}", f"Question {i}") for i in range(10_000)])
    created = await client.batches.create(input_file_id=stored.id, endpoint=CHAT, completion_window="24h")
    run = mock.batches.openai.batches[created.id].run
    assert run is not None and run.answered == 0
    # Counted in lines, not seconds: between two turns of another task on the
    # loop, the batch answers at most one slice, however slow the machine is.
    answered_at_tick: list[int] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            await asyncio.sleep(0)
            answered_at_tick.append(run.answered)

    ticker = asyncio.create_task(tick())
    batch = await client.batches.retrieve(created.id)  # this read answers all 10,000 lines
    done.set()
    await ticker
    assert batch.status == "completed" and batch.request_counts and batch.request_counts.completed == 10_000
    steps = [b - a for a, b in itertools.pairwise(answered_at_tick)]
    assert answered_at_tick[-1] == 10_000 and max(steps) <= batch_run.SLICE < 10_000
    assert len(await output_lines(client, batch.output_file_id)) == 10_000


async def test_the_control_sets_the_delay_and_forgets(http: httpx.AsyncClient) -> None:
    assert (await counts(http))["delay_ms"] == batch_shape.DEFAULT_DELAY_MS
    for bad in ({"delay_ms": -1}, {"delay_ms": "5"}, {}):
        assert (await http.put("/mock/batches", json=bad)).status_code == 400
    await set_delay(http, 0)
    client = oai(http)
    await client.batches.create(
        input_file_id=(await upload(client, [chat_line("a", "Hi")])).id, endpoint=CHAT, completion_window="24h"
    )
    assert (await counts(http))["created"] == 1
    assert (await http.delete("/mock/batches")).status_code == 200
    after = await counts(http)
    assert after["created"] == 0 and after["files"] == 0 and after["calls"] == {} and after["delay_ms"] == 0
