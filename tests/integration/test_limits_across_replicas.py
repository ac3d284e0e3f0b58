"""Limits and budgets hold exactly with two policy and two ingress processes
serving one key at once, and across a restart of every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import msgspec
import nats.js.errors
import pytest

from schemas import subjects
from schemas.control import decode_key
from schemas.reservation import HOLD_SPEND
from services import quota
from services.cli.nats_server import free_port
from services.cli.supervisor import Supervisor
from services.keys import hash_key
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

# Hundreds of concurrent requests, and leases given back after a timed idle, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

RPM_KEY = "sk-test-rpm-100-0123456789"
BUDGET_KEY = "sk-test-budget-1usd-0123456789"
TPM_KEY = "sk-test-tpm-0123456789"
NATS_KEY = "sk-test-nats-rpm2-0123456789"
ANTHROPIC_KEY = "sk-test-anthropic-rpm1-0123456789"
PARALLEL_KEY = "sk-test-parallel1-0123456789"

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

[[keys]]
id = "natsrpm"
tenant = "quota"
sha256 = "{hash_key(NATS_KEY)}"
limits = {{{{ rpm = 2 }}}}

[[keys]]
id = "anthrpm"
tenant = "quota"
sha256 = "{hash_key(ANTHROPIC_KEY)}"
limits = {{{{ rpm = 1 }}}}

[[keys]]
id = "par1"
tenant = "quota"
sha256 = "{hash_key(PARALLEL_KEY)}"
limits = {{{{ max_parallel = 1 }}}}

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
        replicas={"policy": 2},
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


def wait_for_alert(stack: Stack, alert: str, key_id: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        rows = stack.query("alerts", minutes=60)["rows"]
        if any(r[2] == alert and f".key.{key_id}." in r[4] for r in rows):
            return
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


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
    # Each may cost up to $0.30285 (its max_tokens at the output price): three fit.
    assert len(ok) == 3 and len(refused) == 17, [r.status_code for r in responses]
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
    wait_for_alert(replicas, "budget_80", "budget1")  # three of ~$0.30 are past $0.80

    # Every process restarted: the counter is in JetStream, not in anyone's memory.
    replicas.supervisor.stop()
    replicas.supervisor = Supervisor(replicas.layout, extra_keys=replicas.supervisor.extra_keys)
    replicas.start()
    assert asyncio.run(counter(replicas, spend_subject("budget1"))) == spent
    again = asyncio.run(fire(replicas, BUDGET_KEY, 1, PRICEY))[0]
    assert again.status_code == 429 and again.json()["error"]["code"] == "insufficient_quota"
    assert settled_counter(replicas, spend_subject("budget1")) == spent

    # The admin API's usage view agrees: recorded spend, and the budget's standing.
    usage = httpx.get(
        f"{replicas.admin_url}/usage", params={"tenant": "quota"}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    ).json()
    row = next(r for r in usage["spend"] if r["key"] == "budget1")
    assert Decimal(row["cost_usd"]) * 10**12 == spent and row["requests"] >= 3
    standing = next(b for b in usage["budgets"] if b["id"] == "budget1")
    assert standing["limit_usd"] == "1" and standing["period"] == "total" and standing["resets_at"] is None
    assert Decimal(standing["committed_usd"]) * 10**12 == spent
    assert Decimal(standing["remaining_usd"]) * 10**12 == 10**12 - spent


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


def nats_envelope(reply: str, content: str, quota: dict | None = None) -> bytes:
    doc = {
        "kind": "chat.request",
        "reply": reply,
        "body": {"model": "demo-model", "messages": [{"role": "user", "content": content}]},
    }
    if quota is not None:
        doc["quota"] = quota
    return msgspec.msgpack.encode(doc)


async def over_nats(stack: Stack, key: str, n: int, quota: dict | None = None) -> list[dict]:
    nc = await stack.connect()
    try:
        out = []
        for _ in range(n):
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            payload = nats_envelope(inbox, "hi [mock:chunks=2]", quota)
            await nc.publish(subjects.IN_CHAT, payload, headers={"Authorization": f"Bearer {key}"})
            out.append(msgspec.msgpack.decode((await sub.next_msg(timeout=10)).data))
            await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def test_nats_callers_see_their_limits_in_final_and_failure(replicas: Stack) -> None:
    first, second, third = asyncio.run(over_nats(replicas, NATS_KEY, 3))
    assert first["kind"] == second["kind"] == "chat.final"
    assert first["rate"]["limit_requests"] == 2 and second["rate"]["remaining_requests"] <= 1
    assert third["kind"] == "chat.failure" and third["status"] == 429 and third["type"] == "rate_limit_error"
    assert third["retry_after_s"] >= 1 and third["rate"]["limit_requests"] == 2


def test_a_quota_forged_by_a_nats_caller_settles_nothing(replicas: Stack) -> None:
    subject = spend_subject("budget1")
    before = asyncio.run(counter_or_zero(replicas, subject))
    # A caller claims its request reserved -$1 of someone else's budget: settling
    # it would hand that budget a dollar back.
    forged = {"holds": [[subject, HOLD_SPEND, 10**12, 10**12]]}
    (reply,) = asyncio.run(over_nats(replicas, DEMO_KEY, 1, forged))
    assert reply["kind"] == "chat.final"
    assert settled_counter(replicas, subject) == before


def test_anthropic_callers_get_anthropics_429_and_headers(replicas: Stack) -> None:
    client = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{replicas.layout.http_port}", api_key=ANTHROPIC_KEY, max_retries=0
    )
    ok = client.messages.with_raw_response.create(
        model="demo-model", max_tokens=50, messages=[{"role": "user", "content": "hi [mock:chunks=2]"}]
    )
    assert ok.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert ok.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert ok.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="demo-model", max_tokens=50, messages=[{"role": "user", "content": "again"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1


@contextlib.contextmanager
def slow_stream(stack: Stack) -> Iterator[httpx.Response]:
    """A stream that lasts ~4 s unless the caller leaves first."""
    body = {
        "model": "demo-model",
        "stream": True,
        "messages": [{"role": "user", "content": "slowly [mock:chunks=200][mock:chunk_ms=20]"}],
    }
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{urls(stack)[0]}/chat/completions", json=body, headers={"authorization": f"Bearer {PARALLEL_KEY}"}
        ) as resp,
    ):
        yield resp


def parallel_call(stack: Stack) -> httpx.Response:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "quick [mock:chunks=1]"}]}
    return httpx.post(
        f"{urls(stack)[1]}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {PARALLEL_KEY}"},
        timeout=20,
    )


def parallel_status(stack: Stack) -> int:
    return parallel_call(stack).status_code


def wait_parallel_status(stack: Stack, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (got := parallel_call(stack)).status_code != status:
        if time.monotonic() > deadline:
            in_flight = asyncio.run(counter_or_zero(stack, f"{subjects.QUOTA}.rate.key.par1.par"))
            raise AssertionError(f"still {got.status_code} ({got.text}); the key's in-flight counter: {in_flight}")
        time.sleep(0.1)


def test_one_request_in_flight_at_a_time_and_the_slot_comes_back(replicas: Stack) -> None:
    wait_parallel_status(replicas, 200)
    # The slot is given back ahead of each answer: back-to-back calls never
    # see a 429 (the next may reach the other policy and ingress).
    assert [parallel_status(replicas) for _ in range(20)] == [200] * 20
    with slow_stream(replicas) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # held: a dropped line iterator closes the stream
        next(lines)
        assert parallel_status(replicas) == 429
    # The client left: the provider ends the request and gives the slot back.
    wait_parallel_status(replicas, 200, timeout=5)


def test_a_provider_killed_mid_request_gives_its_slot_back(replicas: Stack) -> None:
    wait_parallel_status(replicas, 200)
    with slow_stream(replicas) as stream:
        lines = stream.iter_lines()
        next(lines)
        # Every process with a provider in it (two pipelines here): the one holding the request dies.
        host = replicas.layout.process_of("provider")
        for name, proc in replicas.supervisor.children.items():
            if name == host or name.startswith(f"{host}-"):
                proc.kill()
        rest = "\n".join(lines)
    assert "worker_died" in rest  # the ingress ended the request, and settled it
    # The slot is free again once the provider is back: nothing leaked.
    wait_parallel_status(replicas, 200)


def test_config_records_follow_the_file_and_api_records_survive_a_restart(replicas: Stack) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.post(f"{replicas.admin_url}/tenants", json={"id": "apimade"}, headers=admin).status_code == 201
    made = httpx.post(f"{replicas.admin_url}/keys", json={"tenant": "apimade", "limits": {"rpm": 7}}, headers=admin)
    secret = made.json()["secret"]
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "hi [mock:chunks=1]"}]}

    def status(key: str) -> int:
        return httpx.post(
            f"{urls(replicas)[0]}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=20
        ).status_code

    # The file drops key "natsrpm"; `sluice up` starts again with it.
    config = replicas.layout.config
    text = config.read_text()
    start = text.index('[[keys]]\nid = "natsrpm"')
    config.write_text(text[:start] + text[text.index("[[keys]]", start + 1) :])
    replicas.supervisor.stop()
    replicas.supervisor = Supervisor(replicas.layout, extra_keys=replicas.supervisor.extra_keys)
    replicas.start()
    assert status(NATS_KEY) == 401
    assert status(secret) == 200
    key = httpx.get(f"{replicas.admin_url}/keys/{made.json()['id']}", headers=admin).json()
    assert key["limits"] == {"rpm": 7} and key["owner"] == "api"
