"""A routing process that starts after a breaker opened begins from the state
the others wrote to ``sluice_health``, instead of sending the failing
deployment its next requests again."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import httpx

from tests.stack import DEMO_KEY, Stack

EXTRA = """
[gateway.breaker]
failures_to_open = 3
cooldown_s = 120

[[models]]
name = "pair"
strategy = "priority"
[[models.deployments]]
name = "xa"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@xa/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
[[models.deployments]]
name = "xb"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@xb/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""
priority = 1
"""


def ask(stack: Stack) -> None:
    r = httpx.post(
        f"{stack.base_url}/chat/completions",
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        json={"model": "pair", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert r.status_code == 200, r.text


def calls(stack: Stack) -> Counter[str]:
    return Counter(stack.mock_stats()["by_upstream"])


def test_a_restarted_router_starts_from_the_breaker_states_in_kv(tmp_path_factory) -> None:
    stack = Stack(tmp_path_factory.mktemp("restart"), timeout_s=20, extra_config=EXTRA).start()
    try:
        httpx.put(f"{stack.mock_url}/mock/upstreams/xa", json={"directives": "[mock:status=503]"}).raise_for_status()
        for _ in range(5):
            ask(stack)
        assert calls(stack)["xa"] == 3  # open after three failures
        router = stack.layout.process_of("route")
        before = stack.supervisor.pids()[router]
        os.kill(before, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while stack.supervisor.pids().get(router) in (before, None):
            assert time.monotonic() < deadline, "the router was not restarted"
            time.sleep(0.1)
        counted = calls(stack)
        for _ in range(5):
            ask(stack)  # the first may be resent by the ingress while the router comes up
        after = calls(stack) - counted
        assert after["xa"] == 0 and after["xb"] == 5, after
    finally:
        stack.stop()
