"""OpenAI's Batch API through the gateway with the official ``openai`` SDK:
files.create(purpose="batch") -> batches.create -> batches.retrieve until
it ends -> files.content of its output and error files. Each line runs as
a durable job through the whole pipeline, answered as its endpoint answers
over HTTP; a bad input file fails the batch before any upstream call; a
cancel stops the lines not started (no upstream call, no charge); another
tenant's batches and files are 404."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from schemas.chat import Usage
from schemas.jobs import JobResult
from schemas.replies import Final
from services.bus.client import SluiceClient
from services.keys import hash_key
from services.usage import cost_of
from tests.batch_client import ended, lines_of
from tests.stack import DEMO_KEY, PRIVATE_KEY, Stack

# Four lines of a tenant's batches at once, so a cancel finds lines not started.
GATEWAY = "batches_per_tenant = 4"
# One request in flight at a time: a batch's other lines are refused, and wait.
ONE_AT_A_TIME_KEY = "sk-test-batch-parallel1-0123456789"
EXTRA = f"""
[[keys]]
id = "batchpar1"
tenant = "demo"
sha256 = "{hash_key(ONE_AT_A_TIME_KEY)}"
limits = {{{{ max_parallel = 1 }}}}
"""
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("batches"), timeout_s=10, gateway=GATEWAY, extra_config=EXTRA).start()
    yield s
    s.stop()


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def demo(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk(stack, DEMO_KEY) as c:
        yield c


@pytest.fixture(scope="module")
def other(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk(stack, PRIVATE_KEY) as c:
        yield c


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(custom_id: str, text: str, model: str = "demo-model") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def upload(client: openai.OpenAI, lines: list[dict], purpose: str = "batch") -> str:
    return client.files.create(file=("in.jsonl", jsonl(lines)), purpose=purpose).id  # type: ignore[arg-type]


def shape(value: object) -> object:
    """A JSON value's keys, all the way down (the first item of a list)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if k not in ("id", "created", "created_at")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def direct(stack: Stack, path: str, body: dict) -> dict:
    """What ``POST <path>`` answers over HTTP: the body a line's answer must match."""
    answer = httpx.post(f"{stack.base_url}{path[3:]}", json=body, headers={"authorization": f"Bearer {DEMO_KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_chat_batch_answers_each_line_as_the_endpoint_does_and_bills_what_the_mock_did(
    stack: Stack, demo: openai.OpenAI
) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [chat_line(f"c{i}", f"batch {run} line {i} [mock:chunks=3]") for i in range(6)]
    lines.append(chat_line("missing", f"batch {run} nope", model="no-such-model"))
    before = stack.mock_stats()["requests"]
    made = demo.batches.create(
        input_file_id=upload(demo, lines),
        endpoint=CHAT,
        completion_window="24h",
        metadata={"run": run},
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert made.status == "in_progress" and made.metadata == {"run": run} and made.object == "batch"
    assert made.request_counts is not None and made.request_counts.total == 7
    batch = ended(demo, made.id)
    assert batch.status == "completed" and batch.completed_at and batch.finalizing_at
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (7, 6, 1)
    out, errors = lines_of(demo, batch.output_file_id), lines_of(demo, batch.error_file_id)
    assert sorted(o["custom_id"] for o in out) == [f"c{i}" for i in range(6)]
    reference = direct(stack, CHAT, lines[0]["body"] | {"messages": [{"role": "user", "content": f"ref {run}"}]})
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200 and o["id"].startswith("batch_req_")
        assert shape(o["response"]["body"]) == shape(reference)
        assert o["response"]["body"]["usage"]["completion_tokens"] == 3
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("missing", 404)]
    # Both files are kept as long as output_expires_after said (not files_retention_s, 30 days).
    for file_id in (batch.output_file_id, batch.error_file_id):
        kept = demo.files.retrieve(file_id)  # type: ignore[arg-type]
        assert kept.expires_at is not None and kept.expires_at - kept.created_at == 7200
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    # One upstream call per line that reached a model (the reference call too), none twice.
    stats = stack.mock_stats()
    assert stats["requests"] - before == 6 + 1 and stats["repeated"] == 0

    # Each answered line's row carries the batch and costs what the mock billed.
    rows = [stack.request_row(o["response"]["request_id"]) for o in out]
    assert all(row["batch_id"] == batch.id and row["origin"] == "job" for row in rows)
    billed = httpx.get(f"{stack.mock_url}/mock/usage", params={"last": 7}).json()
    mock_tokens = Counter((u["prompt_tokens"], u["completion_tokens"]) for u in billed)
    row_tokens = Counter((int(r["prompt_tokens"]), int(r["completion_tokens"])) for r in rows)
    assert not row_tokens - mock_tokens, (row_tokens, mock_tokens)
    for row in rows:
        usage = Usage(prompt_tokens=int(row["prompt_tokens"]), completion_tokens=int(row["completion_tokens"]))
        assert int(row["cost_pico_usd"]) == cost_of(usage, "gpt-3.5-turbo").total > 0
    summary = stack.query("batches", batch_id=batch.id)
    got = dict(zip(summary["columns"], summary["rows"][0], strict=True))
    # Every line that became a request has a row, the one refused by routing too (at no cost).
    assert (got["lines"], got["succeeded"], got["failed"]) == (7, 6, 1)
    assert int(got["cost_pico_usd"]) == sum(int(r["cost_pico_usd"]) for r in rows)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/embeddings", {"model": "embed-model", "input": ["one {run}", "two"]}),
        ("/v1/responses", {"model": "demo-model", "input": "tell {run}"}),
        (
            "/v1/messages",
            {"model": "claude-model", "max_tokens": 50, "messages": [{"role": "user", "content": "{run}"}]},
        ),
    ],
)
def test_each_endpoint_answers_its_lines_in_its_own_shape(
    stack: Stack, demo: openai.OpenAI, endpoint: str, body: dict
) -> None:
    run = uuid.uuid4().hex[:8]

    def filled(i: int) -> dict:
        return json.loads(json.dumps(body).replace("{run}", f"{run}-{i}"))

    lines = [{"custom_id": f"e{i}", "method": "POST", "url": endpoint, "body": filled(i)} for i in range(2)]
    made = demo.batches.create(input_file_id=upload(demo, lines), endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]
    batch = ended(demo, made.id)
    assert batch.status == "completed" and batch.error_file_id is None, lines_of(demo, batch.error_file_id)
    out = lines_of(demo, batch.output_file_id)
    reference = direct(stack, endpoint, filled(99))
    assert sorted(o["custom_id"] for o in out) == ["e0", "e1"]
    for o in out:
        assert o["response"]["status_code"] == 200
        assert shape(o["response"]["body"]) == shape(reference)


def test_a_bad_line_fails_the_batch_before_any_upstream_call(stack: Stack, demo: openai.OpenAI) -> None:
    good = chat_line("ok", "fine")
    lines = [
        good,
        chat_line("ok", "again"),
        {**chat_line("url", "x"), "url": "/v1/embeddings"},
        {**chat_line("method", "x"), "method": "GET"},
        {**chat_line("body", "x"), "body": {"model": "demo-model", "messages": []}},
    ]
    data = jsonl(lines[:1]) + b"{not json\n" + jsonl(lines[1:])
    file_id = demo.files.create(file=("bad.jsonl", data), purpose="batch").id
    before = stack.mock_stats()["requests"]
    made = demo.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert made.status == "failed" and made.failed_at and made.errors is not None and made.errors.data
    found = [(e.line, e.code, e.param) for e in made.errors.data]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "url_mismatch", "url"),
        (5, "invalid_request", "method"),
        (6, "invalid_request", "body"),
    ]
    assert demo.batches.retrieve(made.id).status == "failed"
    time.sleep(0.5)
    assert stack.mock_stats()["requests"] == before


def test_a_create_is_checked(stack: Stack, demo: openai.OpenAI) -> None:
    lines = [chat_line("a", "x")]
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        demo.batches.create(input_file_id=upload(demo, lines, "user_data"), endpoint=CHAT, completion_window="24h")
    assert wrong_purpose.value.code == "invalid_file_purpose"
    file_id = upload(demo, lines)
    with pytest.raises(openai.BadRequestError) as window:
        demo.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="48h")  # type: ignore[arg-type]
    assert window.value.code == "invalid_completion_window"
    with pytest.raises(openai.BadRequestError):
        demo.batches.create(input_file_id=file_id, endpoint="/v1/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        demo.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    no_key = httpx.get(f"{stack.base_url}/batches")
    assert no_key.status_code == 401 and no_key.headers["x-request-id"]


def test_cancel_mid_run_stops_the_lines_not_started_without_a_call_or_a_charge(
    stack: Stack, demo: openai.OpenAI
) -> None:
    run = uuid.uuid4().hex[:8]
    count = 40
    lines = [chat_line(f"s{i}", f"slow {run} {i} [mock:latency_ms=300]") for i in range(count)]
    before = stack.mock_stats()["requests"]
    made = demo.batches.create(input_file_id=upload(demo, lines), endpoint=CHAT, completion_window="24h")
    deadline = time.monotonic() + 20
    while (demo.batches.retrieve(made.id).request_counts or made.request_counts).completed < 4:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no line ended"
        time.sleep(0.1)
    cancelling = demo.batches.cancel(made.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at
    batch = ended(demo, made.id)
    assert batch.status == "cancelled" and batch.cancelled_at and batch.request_counts is not None
    out, errors = lines_of(demo, batch.output_file_id), lines_of(demo, batch.error_file_id)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(out), len(errors))
    assert sorted(o["custom_id"] for o in out + errors) == sorted(f"s{i}" for i in range(count))
    cancelled = [e for e in errors if e["error"] and e["error"]["code"] == "batch_cancelled"]
    assert cancelled and all(e["response"] is None for e in cancelled)
    ran = [o for o in out + errors if o["response"] is not None]
    assert len(ran) + len(cancelled) == count and len(ran) < count
    # Only the lines that ran reached the upstream, and only they have rows (and cost).
    assert stack.mock_stats()["requests"] - before == len(ran)
    for line in ran:  # their rows have landed
        stack.request_row(line["response"]["request_id"])
    summary = stack.query("batches", batch_id=batch.id)
    got = dict(zip(summary["columns"], summary["rows"][0], strict=True))
    assert got["lines"] == len(ran)
    assert demo.batches.cancel(made.id).status == "cancelled"  # again: as it is


def test_another_tenants_batches_and_files_are_404(stack: Stack, demo: openai.OpenAI, other: openai.OpenAI) -> None:
    file_id = upload(demo, [chat_line("mine", uuid.uuid4().hex)])
    batch = ended(demo, demo.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id)
    assert batch.output_file_id
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(batch.output_file_id)
    with pytest.raises(openai.NotFoundError):
        other.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
    assert batch.id not in {b.id for b in other.batches.list()}
    assert batch.id in {b.id for b in demo.batches.list(limit=100)}
    with pytest.raises(openai.ConflictError):  # its own, ended: nothing to cancel
        demo.batches.cancel(batch.id)


def test_the_list_pages_newest_first(demo: openai.OpenAI) -> None:
    empty = demo.files.create(file=("empty.jsonl", b"\n"), purpose="batch").id  # fails at once: nothing runs
    made = [demo.batches.create(input_file_id=empty, endpoint=CHAT, completion_window="24h") for _ in range(3)]
    assert {m.status for m in made} == {"failed"} and made[0].errors and made[0].errors.data[0].code == "empty_file"
    first = demo.batches.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    assert first.data[0].created_at >= first.data[1].created_at and first.data[0].id > first.data[1].id
    after = demo.batches.list(limit=2, after=first.data[1].id)
    assert after.data and after.data[0].id < first.data[1].id


def test_a_running_batch_leaves_the_tenants_own_jobs_their_room(stack: Stack, demo: openai.OpenAI) -> None:
    """The tenant's batch lines fill its batch concurrency (4 lines of 3 s
    each, more waiting): a durable job of the same tenant, queued after them
    all, still reaches the upstream before any line past the first 4."""
    run = uuid.uuid4().hex[:8]
    lines = [chat_line(f"w{i}", f"wait {run} {i} [mock:latency_ms=3000]") for i in range(12)]
    made = demo.batches.create(input_file_id=upload(demo, lines), endpoint=CHAT, completion_window="24h")

    async def job() -> JobResult | None:
        async with await SluiceClient.connect(stack.nats_url, DEMO_KEY, creds=stack.creds("svc-demo")) as sluice:
            body = {"model": "demo-model", "messages": [{"role": "user", "content": f"job {run}"}]}
            return await sluice.result(await sluice.submit_job("chat", body), wait_s=20)

    result = asyncio.run(job())
    assert result is not None and isinstance(result.result, Final)
    seen = [json.dumps(r) for r in httpx.get(f"{stack.mock_url}/mock/requests?last=50").json()]
    job_at = next(i for i, text in enumerate(seen) if f"job {run}" in text)
    # Newest first: what reached the upstream before the job did.
    assert sum(f"wait {run} " in text for text in seen[job_at + 1 :]) <= 4
    demo.batches.cancel(made.id)
    assert ended(demo, made.id).status == "cancelled"


def test_lines_refused_for_the_key_s_rate_limit_wait_for_room_rather_than_fail(stack: Stack) -> None:
    """Four lines at once under a key that may have one request in flight:
    three are refused each round (429, nothing sent upstream) and delivered
    again a second later; every line ends answered, each called once."""
    run = uuid.uuid4().hex[:8]
    lines = [chat_line(f"p{i}", f"paced {run} line {i} [mock:latency_ms=300]") for i in range(5)]
    before = stack.mock_stats()
    with sdk(stack, ONE_AT_A_TIME_KEY) as client:
        made = client.batches.create(input_file_id=upload(client, lines), endpoint=CHAT, completion_window="24h")
        batch = ended(client, made.id, timeout=60)
        out, errors = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
    assert batch.status == "completed" and errors == [], [e["response"]["body"] for e in errors]
    assert sorted(o["custom_id"] for o in out) == [f"p{i}" for i in range(5)]
    after = stack.mock_stats()
    assert (after["requests"] - before["requests"], after["repeated"] - before["repeated"]) == (5, 0)
