"""Fail closed: for a tenant whose rules need the redaction stage, a stage
that is down (killed and not restarted) or hung (frozen) ends the request
with 503 redaction_unavailable within its budget, and the upstream saw
nothing. A tenant without rules never visits the stage and is served."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import DEMO_KEY, PRIVATE_KEY, Stack

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
