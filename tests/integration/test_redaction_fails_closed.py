"""Fail closed: for a tenant whose rules need the redaction stage, a stage
that is down (killed and not restarted) or hung (frozen) ends the request
with 503 redaction_unavailable within its budget, and the upstream saw
nothing. A tenant without rules never visits the stage and is served."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import ADMIN_KEY, DEMO_KEY, PRIVATE_KEY, Stack

BUDGET_S = 1.0


@pytest.fixture(scope="module")
def closed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = Path(tmp_path_factory.mktemp("fail-closed"))
    s = Stack(home, timeout_s=10.0, gateway=f"redaction_budget_s = {BUDGET_S}").start()
    yield s
    s.stop()


def ask(stack: Stack, key: str, text: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )
    return resp, time.monotonic() - started


def upstream_requests(stack: Stack) -> int:
    return httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]


def test_a_working_stage_passes_the_request(closed_stack: Stack) -> None:
    resp, _ = ask(closed_stack, PRIVATE_KEY, "mail jane@example.com")
    assert resp.status_code == 200, resp.text


def test_a_stage_that_is_down_fails_closed(closed_stack: Stack) -> None:
    closed_stack.supervisor.hold("redact")
    try:
        before = upstream_requests(closed_stack)
        resp, took = ask(closed_stack, PRIVATE_KEY, "mail jane@example.com")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "redaction_unavailable", resp.text
        assert took < 10.0 / 2  # its budget, not the request's deadline
        served, _ = ask(closed_stack, DEMO_KEY, "no rules, no stage")
        assert served.status_code == 200
        time.sleep(0.5)
        assert upstream_requests(closed_stack) == before + 1  # only the tenant without rules reached it
    finally:
        closed_stack.supervisor.release("redact")


def test_a_hung_stage_fails_closed_and_a_late_pass_is_not_sent(closed_stack: Stack) -> None:
    # Once it is back from the test before, working.
    deadline = time.monotonic() + 30
    while ask(closed_stack, PRIVATE_KEY, "ready?")[0].status_code != 200:
        assert time.monotonic() < deadline, "the redaction stage did not come back"
    pid = closed_stack.supervisor.pids()["redact"]
    os.kill(pid, signal.SIGSTOP)
    try:
        before = upstream_requests(closed_stack)
        resp, took = ask(closed_stack, PRIVATE_KEY, "mail jane@example.com")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "redaction_unavailable", resp.text
        assert took < 10.0 / 2
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2.0)  # the stage wakes and passes what it held: the provider refuses the cancelled request
    assert upstream_requests(closed_stack) == before


def test_rules_enabled_while_requests_flow_never_let_an_unmasked_value_through(closed_stack: Stack) -> None:
    """Policy and the redaction stage each follow the tenant's record through
    their own KV watch: for a moment one holds the new rules and the other
    not. The redaction stage is held still while the rules are switched on,
    so policy routes requests to it with the new rules' version while its
    own copy is still the old one: it refuses them, never passes them on
    unmasked. ~50 requests a second flow throughout."""
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    tenant = f"switch{time.time_ns() % 10**9}"
    assert httpx.post(f"{closed_stack.admin_url}/tenants", json={"id": tenant}, headers=admin).status_code == 201
    made = httpx.post(f"{closed_stack.admin_url}/keys", json={"tenant": tenant}, headers=admin)
    key = made.json()["secret"]
    value = "jane.doe@example.org"
    deadline = time.monotonic() + 10
    while ask(closed_stack, key, "warm up")[0].status_code != 200:  # the key reached policy
        assert time.monotonic() < deadline
    pid = closed_stack.supervisor.pids()["redact"]

    async def flow() -> list[tuple[int, httpx.Response]]:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {key}"}) as client:

            async def one(i: int) -> tuple[int, httpx.Response]:
                body = {"model": "demo-model", "messages": [{"role": "user", "content": f"req-{i}-end mail {value}"}]}
                return i, await client.post(f"{closed_stack.base_url}/chat/completions", json=body)

            sent: list[asyncio.Task[tuple[int, httpx.Response]]] = []
            for i in range(150):  # 3 s at 50 a second
                sent.append(asyncio.create_task(one(i)))
                if i == 50:
                    os.kill(pid, signal.SIGSTOP)
                    rules = {"privacy": {"detectors": {"email": "mask"}}}
                    url = f"{closed_stack.admin_url}/tenants/{tenant}"
                    patched = await client.patch(url, json=rules, headers=admin)
                    assert patched.status_code == 200, patched.text
                if i == 65:  # 0.3 s later, within the budget: it wakes with requests and the record queued
                    os.kill(pid, signal.SIGCONT)
                await asyncio.sleep(0.02)
            return await asyncio.gather(*sent)

    try:
        answers = asyncio.run(flow())
    finally:
        os.kill(pid, signal.SIGCONT)
    seen = httpx.get(f"{closed_stack.mock_url}/mock/requests?last=200").json()
    unmasked = {int(t.split("req-")[1].split("-end")[0]) for t in map(json.dumps, seen) if value in t and "req-" in t}
    for i, resp in answers:
        row = closed_stack.request_row(resp.headers["x-request-id"])
        if row["redact_ns"] > 0 or resp.status_code == 503:  # routed with the rules
            assert i not in unmasked, (i, resp.status_code, resp.text)
    late = [i for i, resp in answers if i >= 100]  # a second after the switch: every policy replica has it
    assert not unmasked & set(late)
    assert {resp.status_code for i, resp in answers if i in late} == {200}
