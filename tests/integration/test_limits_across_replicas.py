"""Limits and budgets hold exactly with two policy and two ingress processes
serving one key at once, and across a restart of every process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import nats.js.errors
import pytest

from schemas import subjects
from schemas.control import decode_key
from services import quota
from services.keys import hash_key
from services.runtime.nats_server import free_port
from services.runtime.supervisor import Supervisor
from tests.stack import Stack

RPM_KEY = "sk-test-rpm-100-0123456789"
BUDGET_KEY = "sk-test-budget-1usd-0123456789"
TPM_KEY = "sk-test-tpm-0123456789"

EXTRA = f"""
[[tenants]]
id = "quota"

[[keys]]
id = "rpm100"
tenant = "quota"
sha256 = "{hash_key(RPM_KEY)}"
limits = {{{{ rpm = 100 }}}}

[[keys]]
id = "budget1"
tenant = "quota"
sha256 = "{hash_key(BUDGET_KEY)}"
budget = {{{{ usd = "1.00", period = "total" }}}}

[[keys]]
id = "tpm"
tenant = "quota"
sha256 = "{hash_key(TPM_KEY)}"
limits = {{{{ tpm = 1000000 }}}}

# $150 / $600 per million tokens: 500 output tokens cost $0.30.
[[models]]
name = "pricey-model"
provider = "openai"
base_url = "http://127.0.0.1:{{mock}}/v1"
upstream_model = "o1-pro"
catalog_model = "o1-pro"
"""


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("replicas"),
        timeout_s=20,
        extra_config=EXTRA,
        policy_replicas=2,
        extra_http_ports=[free_port()],
    ).start()
    yield s
    s.stop()


def urls(stack: Stack) -> list[str]:
    ports = [stack.layout.http_port, *stack.layout.extra_http_ports]
    return [f"http://127.0.0.1:{p}/v1" for p in ports]


async def fire(stack: Stack, key: str, n: int, body: dict, concurrency: int = 64) -> list[httpx.Response]:
    """``n`` requests spread over both ingress processes, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    bases = urls(stack)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(
                    f"{bases[i % len(bases)]}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
                )

        return await asyncio.gather(*(one(i) for i in range(n)))


async def counter(stack: Stack, subject: str) -> int:
    nc = await stack.connect("admin")
    try:
        stream = subjects.SPEND_STREAM if ".spend." in subject else subjects.RATES_STREAM
        msg = await nc.jetstream().get_last_msg(stream, subject, direct=True)
        return int(json.loads(msg.data)["val"])
    finally:
        await nc.close()


def settled_counter(stack: Stack, subject: str) -> int:
    """The counter once policy replicas gave back their idle leases (after 1 s idle)."""
    time.sleep(2.5)
    return asyncio.run(counter(stack, subject))


def test_rpm_100_admits_exactly_100_of_300_concurrent(replicas: Stack) -> None:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "hi [mock:chunks=1]"}]}
    responses = asyncio.run(fire(replicas, RPM_KEY, 300, body))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == 300, {r.status_code for r in responses}
    assert 99 <= len(ok) <= 100
    for r in refused:
        assert r.json()["error"]["type"] == "rate_limit_error"
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-limit-requests"] == "100"
    assert ok[0].headers["x-ratelimit-limit-requests"] == "100"
    assert int(ok[0].headers["x-ratelimit-remaining-requests"]) < 100


def spend_subject(key_id: str) -> str:
    return f"{subjects.QUOTA}.spend.key.{key_id}.total"


def recorded_spend(stack: Stack, key_id: str) -> int:
    rows = stack.query("spend", since_ns=0, tenant_id="quota")["rows"]
    return sum(int(r[3]) for r in rows if r[1] == key_id)


PRICEY = {
    "model": "pricey-model",
    "max_tokens": 500,
    "messages": [{"role": "user", "content": "think hard [mock:chunks=2][mock:reasoning=498]"}],
}


def test_budget_of_one_dollar_admits_at_most_three_thirty_cent_requests(replicas: Stack) -> None:
    responses = asyncio.run(fire(replicas, BUDGET_KEY, 20, PRICEY, concurrency=20))
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert 1 <= len(ok) <= 3 and len(ok) + len(refused) == 20
    assert all(r.json()["error"]["type"] == "insufficient_quota" for r in refused)
    spent = settled_counter(replicas, spend_subject("budget1"))
    costs = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        costs = [replicas.request_row(r.headers["x-request-id"])["cost_pico_usd"] for r in ok]
        if recorded_spend(replicas, "budget1") == sum(int(c) for c in costs):
            break
        time.sleep(0.2)
    one_request = max(int(c) for c in costs)
    assert spent == sum(int(c) for c in costs)  # the counter is the recorded spend, exactly
    assert spent <= 10**12 + one_request

    # Every process restarted: the counter is in JetStream, not in anyone's memory.
    replicas.supervisor.stop()
    replicas.supervisor = Supervisor(replicas.layout, extra_keys=replicas.supervisor.extra_keys)
    replicas.start()
    assert asyncio.run(counter(replicas, spend_subject("budget1"))) == spent
    again = asyncio.run(fire(replicas, BUDGET_KEY, 1, PRICEY))[0]
    assert again.status_code == 429 and again.json()["error"]["code"] == "insufficient_quota"
    assert settled_counter(replicas, spend_subject("budget1")) == spent


async def tpm_subject(stack: Stack) -> str:
    nc = await stack.connect("admin")
    try:
        entry = await (await nc.jetstream().key_value(subjects.KV_KEYS)).get("tpm")
    finally:
        await nc.close()
    created_ms = decode_key(entry.value).created_at_ms
    window, _ = quota.minute_window(created_ms, int(time.time() * 1000))
    return f"{subjects.QUOTA}.rate.key.tpm.tpm.{window}"


async def counter_or_zero(stack: Stack, subject: str) -> int:
    try:
        return await counter(stack, subject)
    except nats.js.errors.NotFoundError:
        return 0


def tokens_of(row: dict) -> int:
    return int(row["prompt_tokens"]) + int(row["completion_tokens"])


def test_a_stream_whose_usage_comes_last_settles_its_real_tokens(replicas: Stack) -> None:
    subject = asyncio.run(tpm_subject(replicas))
    before = asyncio.run(counter_or_zero(replicas, subject))
    body = {
        "model": "demo-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 4000,
        "messages": [{"role": "user", "content": "count to twenty [mock:chunks=20]"}],
    }
    with httpx.stream(
        "POST", f"{urls(replicas)[0]}/chat/completions", json=body, headers={"authorization": f"Bearer {TPM_KEY}"}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["x-ratelimit-limit-tokens"] == "1000000"
        lines = [line for line in resp.iter_lines() if line.startswith("data: {")]
        request_id = resp.headers["x-request-id"]
    usage = json.loads(lines[-1].removeprefix("data: "))["usage"]
    assert usage["completion_tokens"] == 20
    row = replicas.request_row(request_id)
    assert tokens_of(row) == usage["total_tokens"]
    # Admission took prompt + 4000; the settlement gave back all but what was used.
    assert settled_counter(replicas, subject) - before == tokens_of(row)


def test_a_client_gone_mid_stream_settles_what_was_generated(replicas: Stack) -> None:
    subject = asyncio.run(tpm_subject(replicas))
    before = asyncio.run(counter_or_zero(replicas, subject))
    body = {
        "model": "demo-model",
        "stream": True,
        "messages": [{"role": "user", "content": "go on and on [mock:chunks=400][mock:chunk_ms=20]"}],
    }
    with httpx.stream(
        "POST", f"{urls(replicas)[1]}/chat/completions", json=body, headers={"authorization": f"Bearer {TPM_KEY}"}
    ) as resp:
        request_id = resp.headers["x-request-id"]
        seen = 0
        for line in resp.iter_lines():
            seen += line.startswith("data: {")
            if seen == 5:
                break  # leave mid-stream
    row = replicas.request_row(request_id)
    assert row["status"] == 499 and row["client_disconnected"]
    assert 5 <= int(row["completion_tokens"]) < 400
    assert settled_counter(replicas, subject) - before == tokens_of(row)
