"""``/readyz`` says whether the gateway can serve: NATS connected and every
stage with a live process (each process's heartbeat names its stages).
``/healthz`` only says the ingress is up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack


@pytest.fixture(scope="module")
def ready_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("readiness")), timeout_s=10).start()
    yield s
    s.stop()


def readyz_until(stack: Stack, status: int, timeout: float = 15.0) -> httpx.Response:
    url = stack.base_url.removesuffix("/v1") + "/readyz"
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url, timeout=5)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_ready_when_every_stage_beats_and_not_while_one_is_down(ready_stack: Stack) -> None:
    r = readyz_until(ready_stack, 200)
    assert r.status_code == 200 and r.json()["nats"] is True
    assert set(r.json()["stages"]) == {"policy", "redact", "route", "cache", "provider", "sink"}
    ready_stack.supervisor.hold("redact")
    try:
        r = readyz_until(ready_stack, 503)
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        assert [s for s, up in r.json()["stages"].items() if not up] == ["redact"]
        health = httpx.get(ready_stack.base_url.removesuffix("/v1") + "/healthz", timeout=5)
        assert health.status_code == 200  # the ingress itself is fine
    finally:
        ready_stack.supervisor.release("redact")
    assert readyz_until(ready_stack, 200).status_code == 200


def test_readyz_answers_get_only(ready_stack: Stack) -> None:
    r = httpx.post(ready_stack.base_url.removesuffix("/v1") + "/readyz", timeout=5)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
