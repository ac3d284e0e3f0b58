"""Batches run as one batch of the provider's own batch API (deployments
marked ``native_batch``), with the official ``openai`` SDK against the mock
upstream's OpenAI Batch API and Anthropic Message Batches: the caller's side
is the Batch API as ever; the upstream sees one batch (never a call per
line, never a batch twice, even with the ingress driving it SIGKILLed);
each line has its row at half the list price of what the mock billed, and
the budget is charged exactly that once the batch ended; a cancel passes
on, and the lines the upstream never ran cost nothing; a tenant whose
redaction must read every request has its lines run one by one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from schemas import subjects
from schemas.chat import Usage
from schemas.control import Budget
from services import native_batch, pricing, quota
from services.config import control_records, load
from services.keys import hash_key
from services.usage import cost_of
from tests.batch_client import ended, lines_of
from tests.stack import DEMO_KEY, PRIVATE_KEY, Stack

BUDGET_KEY = "sk-test-native-budget-0123456789"
EXTRA = f"""
[[tenants]]
id = "natives"

[[keys]]
id = "nbbudget"
tenant = "natives"
sha256 = "{hash_key(BUDGET_KEY)}"
budget = {{{{ usd = "5.00", period = "total" }}}}

[[models]]
name = "native-gpt"
provider = "openai"
base_url = "http://127.0.0.1:{{mock}}/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
native_batch = true

# Every call of its upstream takes 1.5 s: a submit (list, upload, create) is under way long enough to kill its driver.
[[models]]
name = "native-slow"
provider = "openai"
base_url = "http://127.0.0.1:{{mock}}/@slowbatch/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
native_batch = true

[[models]]
name = "native-claude"
provider = "anthropic"
base_url = "http://127.0.0.1:{{mock}}"
upstream_model = "claude-sonnet-4-20250514"
api_key_env = ""
native_batch = true
"""
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("natives"),
        timeout_s=10,
        extra_config=EXTRA,
        gateway="native_batch_poll_s = 0.2",
        replicas={"ingress": 2},
    ).start()
    yield s
    s.stop()


def sdk(stack: Stack, key: str = DEMO_KEY) -> openai.OpenAI:
    # Retries: a connection to a killed ingress (both share the port) is refused until it is back.
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=8, timeout=30)


def mock_batches(stack: Stack) -> dict:
    return httpx.get(f"http://127.0.0.1:{stack.mock_port}/mock/batches", timeout=10).json()


def set_delay(stack: Stack, ms: int) -> None:
    httpx.put(f"http://127.0.0.1:{stack.mock_port}/mock/batches", json={"delay_ms": ms}, timeout=10).raise_for_status()


def line(custom_id: str, text: str, model: str, url: str = CHAT) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 100}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def run_batch(client: openai.OpenAI, lines: list[dict], endpoint: str = CHAT) -> str:
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    file_id = client.files.create(file=("in.jsonl", data), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h").id  # type: ignore[arg-type]


def the_upstream_batch(stack: Stack, custom_ids: set[str]) -> dict:
    """The one upstream batch that holds these lines (and never a second)."""
    found = [b for b in mock_batches(stack)["batches"].values() if set(b["custom_ids"]) == custom_ids]
    assert len(found) == 1, f"{len(found)} upstream batches hold these lines"
    return found[0]


def billed(usage: dict, catalog_model: str) -> int:
    """What the mock's usage of a line costs at the batch price."""
    tokens = Usage(
        prompt_tokens=usage.get("prompt_tokens", usage.get("input_tokens", 0)),
        completion_tokens=usage.get("completion_tokens", usage.get("output_tokens", 0)),
    )
    return native_batch.batch_cost(cost_of(tokens, catalog_model)).total


def catalog_of(upstream_model: str, provider: str) -> str:
    catalog = pricing.load_catalog()
    return next(c for c in (f"{provider}/{upstream_model}", upstream_model) if c in catalog)


def rows_by_line(stack: Stack, batch_id: str, count: int) -> dict[int, dict]:
    ids = [native_batch.line_request_id(batch_id, n) for n in range(1, count + 1)]
    rows = stack.rows_of(ids)
    return {n: rows[request_id] for n, request_id in enumerate(ids, start=1)}


def batch_summary(stack: Stack, batch_id: str, lines: int, timeout: float = 30.0) -> dict:
    """The named query ``batches``' row of the batch once it counts ``lines``
    (the sink writes rows a moment after the lines end), or as it then stands."""
    deadline = time.monotonic() + timeout
    while True:
        found = stack.query("batches", batch_id=batch_id)
        row = dict(zip(found["columns"], found["rows"][0], strict=True)) if found["rows"] else {"lines": 0}
        if row["lines"] >= lines or time.monotonic() > deadline:
            return row
        time.sleep(0.3)


def test_a_batch_to_a_native_model_is_one_upstream_batch_billed_per_line_at_half_price(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"g{i}", f"native {run} line {i} [mock:chunks=4]", "native-gpt") for i in range(12)]
    direct_calls = stack.mock_stats()["requests"]
    with sdk(stack) as client:
        batch = ended(client, run_batch(client, lines))
        out, errors = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
    assert batch.status == "completed" and errors == [], errors
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (12, 12, 0)
    assert sorted(o["custom_id"] for o in out) == sorted(x["custom_id"] for x in lines)
    assert {o["response"]["body"]["object"] for o in out} == {"chat.completion"}
    # One batch upstream, every line answered there; not one call of its own.
    upstream = the_upstream_batch(stack, {x["custom_id"] for x in lines})
    assert (upstream["family"], upstream["answered"]) == ("openai", 12)
    assert stack.mock_stats()["requests"] == direct_calls
    # Each line's row: its batch, its tokens and its cost as the mock billed them, at half the price.
    catalog = catalog_of("gpt-4o-mini", "openai")
    by_custom_id = {o["custom_id"]: o for o in out}
    rows = rows_by_line(stack, batch.id, 12)
    for number, source in enumerate(lines, start=1):
        row, usage = rows[number], upstream["custom_ids"][source["custom_id"]]["usage"]
        assert row["status"] == 200
        assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
        assert int(row["cost_pico_usd"]) == billed(usage, catalog) > 0
        answer = by_custom_id[source["custom_id"]]["response"]
        assert answer["request_id"] == row["request_id"]
        assert answer["body"]["usage"]["prompt_tokens"] == usage["prompt_tokens"]
    first = stack.request_row(rows[1]["request_id"])
    assert (first["batch_id"], first["api"], first["model"], first["origin"]) == (batch.id, "chat", "native-gpt", "job")
    summary = batch_summary(stack, batch.id, 12)
    assert (summary["lines"], summary["succeeded"]) == (12, 12)
    assert int(summary["cost_pico_usd"]) == sum(int(r["cost_pico_usd"]) for r in rows.values())


def test_a_messages_batch_runs_at_anthropic_as_a_message_batch(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"a{i}", f"claude {run} line {i}", "native-claude", MESSAGES) for i in range(5)]
    with sdk(stack) as client:
        batch = ended(client, run_batch(client, lines, MESSAGES))
        out = lines_of(client, batch.output_file_id)
    assert batch.status == "completed", batch
    assert {o["response"]["body"]["type"] for o in out} == {"message"}
    upstream = the_upstream_batch(stack, {x["custom_id"] for x in lines})
    assert (upstream["family"], upstream["answered"]) == ("anthropic", 5)
    catalog = catalog_of("claude-sonnet-4-20250514", "anthropic")
    rows = rows_by_line(stack, batch.id, 5)
    for number, source in enumerate(lines, start=1):
        usage = upstream["custom_ids"][source["custom_id"]]["usage"]
        assert int(rows[number]["cost_pico_usd"]) == billed(usage, catalog) > 0
    assert stack.request_row(rows[1]["request_id"])["api"] == "messages"


def test_the_budget_holds_the_worst_case_while_it_runs_and_is_charged_what_the_lines_cost(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"b{i}", f"budget {run} line {i}", "native-gpt") for i in range(6)]
    subject, _ = quota.spend_counter("key", "nbbudget", budget_of(stack), int(time.time() * 1000))
    with sdk(stack, BUDGET_KEY) as client:
        batch = ended(client, run_batch(client, lines))
    assert batch.status == "completed"
    upstream = the_upstream_batch(stack, {x["custom_id"] for x in lines})
    spent = sum(billed(v["usage"], catalog_of("gpt-4o-mini", "openai")) for v in upstream["custom_ids"].values())
    time.sleep(2.5)  # policy gives back the units its leases hold after 1 s idle
    assert asyncio.run(counter(stack, subject)) == spent
    assert sum(int(r["cost_pico_usd"]) for r in rows_by_line(stack, batch.id, 6).values()) == spent


def budget_of(stack: Stack) -> Budget:
    records = control_records(load(stack.layout.config))
    budget = records.keys["nbbudget"].budget
    assert budget is not None
    return budget


async def counter(stack: Stack, subject: str) -> int:
    nc = await stack.connect("admin")
    try:
        msg = await nc.jetstream().get_last_msg(subjects.SPEND_STREAM, subject, direct=True)
        return int(json.loads(msg.data)["val"])
    finally:
        await nc.close()


def test_a_cancel_reaches_the_upstream_and_the_lines_it_never_ran_cost_nothing(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"c{i}", f"cancel {run} line {i}", "native-gpt") for i in range(40)]
    set_delay(stack, 6000)
    try:
        with sdk(stack) as client:
            batch_id = run_batch(client, lines)
            deadline = time.monotonic() + 20
            ids = {x["custom_id"] for x in lines}
            while not [
                b for b in mock_batches(stack)["batches"].values() if set(b["custom_ids"]) == ids and b["answered"]
            ]:
                assert time.monotonic() < deadline, "the upstream batch never got going"
                time.sleep(0.1)
            assert client.batches.cancel(batch_id).status == "cancelling"
            batch = ended(client, batch_id)
            out, errors = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
    finally:
        set_delay(stack, 300)
    upstream = the_upstream_batch(stack, {x["custom_id"] for x in lines})
    ran = {c for c, v in upstream["custom_ids"].items() if v["answered"]}
    assert batch.status == "cancelled" and 0 < len(ran) < 40, (batch.status, len(ran))
    assert {o["custom_id"] for o in out} == ran
    assert {e["custom_id"] for e in errors} == {x["custom_id"] for x in lines} - ran
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    row = batch_summary(stack, batch_id, len(ran))
    catalog = catalog_of("gpt-4o-mini", "openai")
    assert row["lines"] == len(ran)
    assert int(row["cost_pico_usd"]) == sum(billed(upstream["custom_ids"][c]["usage"], catalog) for c in ran)


@pytest.mark.timeout(150)
def test_a_submit_under_way_when_the_ingress_driving_it_is_killed_makes_one_upstream_batch(stack: Stack) -> None:
    """Both ingress processes SIGKILLed while the submit's upstream calls
    are under way (each takes 1.5 s): an ingress that comes back takes the
    batch over, finds the submit's answer where the job kept it, and polls
    the batch the provider made; the upstream gets one batch, every line its row."""
    run = uuid.uuid4().hex[:8]
    lines = [line(f"k{run}-{i}", f"killed {run} line {i}", "native-slow") for i in range(20)]
    ids = {x["custom_id"] for x in lines}
    mock = f"http://127.0.0.1:{stack.mock_port}"
    httpx.put(f"{mock}/mock/upstreams/slowbatch", json={"directives": "[mock:latency_ms=1500]"}).raise_for_status()
    try:
        with sdk(stack) as client:
            batch_id = run_batch(client, lines)
            deadline = time.monotonic() + 20
            while not mock_batches(stack)["by_upstream"].get("slowbatch"):
                assert time.monotonic() < deadline, "the submit never reached the upstream"
                time.sleep(0.05)
            for name in ("ingress", "ingress-1"):
                os.kill(stack.supervisor.pids()[name], signal.SIGKILL)
            batch = ended(client, batch_id, timeout=120)
            out = lines_of(client, batch.output_file_id)
    finally:
        httpx.delete(f"{mock}/mock/upstreams/slowbatch")
    assert batch.status == "completed", batch
    assert {o["custom_id"] for o in out} == ids
    assert the_upstream_batch(stack, ids)["answered"] == 20
    assert stack.mock_stats()["repeated"] == 0, "a line reached the upstream twice"
    assert len(rows_by_line(stack, batch_id, 20)) == 20


def test_a_tenant_whose_redaction_reads_every_request_has_its_lines_run_one_by_one(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"p{run}-{i}", f"private {run} line {i}", "native-gpt") for i in range(3)]
    before = stack.mock_stats()["requests"]
    with sdk(stack, PRIVATE_KEY) as client:
        batch = ended(client, run_batch(client, lines))
    assert batch.status == "completed" and batch.request_counts is not None
    assert batch.request_counts.completed == 3
    ids = {x["custom_id"] for x in lines}
    assert not [b for b in mock_batches(stack)["batches"].values() if set(b["custom_ids"]) & ids]
    assert stack.mock_stats()["requests"] - before == 3  # a call each, through the redaction stage


def test_an_input_file_deleted_while_its_batch_runs_fails_the_batch_with_every_billed_line_on_a_row(
    stack: Stack,
) -> None:
    run = uuid.uuid4().hex[:8]
    lines = [line(f"d{run}-{i}", f"deleted {run} line {i}", "native-gpt") for i in range(8)]
    ids = {x["custom_id"] for x in lines}
    set_delay(stack, 2000)
    try:
        with sdk(stack) as client:
            data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
            file_id = client.files.create(file=("in.jsonl", data), purpose="batch").id
            batch_id = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h").id
            deadline = time.monotonic() + 20
            while not [b for b in mock_batches(stack)["batches"].values() if set(b["custom_ids"]) == ids]:
                assert time.monotonic() < deadline, "the upstream batch was never made"
                time.sleep(0.1)
            assert client.files.delete(file_id).deleted
            batch = ended(client, batch_id)
    finally:
        set_delay(stack, 300)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert batch.errors.data[0].code == "input_file_unavailable"
    upstream = the_upstream_batch(stack, ids)
    catalog = catalog_of("gpt-4o-mini", "openai")
    spent = sum(billed(v["usage"], catalog) for v in upstream["custom_ids"].values() if v["answered"])
    row = batch_summary(stack, batch_id, upstream["answered"])
    assert row["lines"] == upstream["answered"] > 0
    assert int(row["cost_pico_usd"]) == spent
