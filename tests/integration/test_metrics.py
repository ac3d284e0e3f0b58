"""``GET /metrics`` on the ingress: every process's samples summed
(prometheus-client's multi-process mode), counted where rows are made, so
each request counts once whichever process ended it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stack import DEMO_KEY, Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own: the counters are the whole gateway's,
    and another module's request ending on a shared stack would count too."""
    s = Stack(tmp_path_factory.mktemp("metrics")).start()
    yield s
    s.stop()


def samples(stack: Stack) -> dict[tuple[str, tuple], float]:
    r = httpx.get(stack.base_url.removesuffix("/v1") + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_requests_errors_and_stage_times_are_counted_once_each(stack: Stack) -> None:
    before = samples(stack)
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "metrics [mock:chunks=2]"}]}
    with httpx.Client(base_url=stack.base_url, timeout=20) as client:
        for _ in range(3):
            ok = client.post("/chat/completions", json=body, headers={"authorization": f"Bearer {DEMO_KEY}"})
            assert ok.status_code == 200
        bad = client.post("/chat/completions", json=body, headers={"authorization": "Bearer sk-nobody"})
        assert bad.status_code == 401
    # Each process writes what it counted twice a second.
    deadline = time.monotonic() + 10
    while True:
        after = samples(stack)
        done = after.get(("sluice_stage_seconds_count", (("stage", "provider"),)), 0.0)
        if done - before.get(("sluice_stage_seconds_count", (("stage", "provider"),)), 0.0) >= 3:
            break
        assert time.monotonic() < deadline, "the stages' samples never showed"
        time.sleep(0.2)
    time.sleep(1.0)  # and nothing more comes: each request counted once
    after = samples(stack)
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    assert grew[("sluice_requests_total", (("api", "chat"), ("status", "200")))] == 3
    assert grew[("sluice_requests_total", (("api", "chat"), ("status", "401")))] == 1
    assert grew[("sluice_errors_total", (("code", "invalid_api_key"), ("type", "authentication_error")))] == 1
    # Every stage the three answered requests went through, once each (the refused one saw policy only).
    assert grew[("sluice_stage_seconds_count", (("stage", "route"),))] == 3
    assert grew[("sluice_stage_seconds_count", (("stage", "provider"),))] == 3
    assert grew[("sluice_stage_seconds_count", (("stage", "policy"),))] == 4
    assert grew[("sluice_request_seconds_count", (("api", "chat"),))] == 4
    assert ("sluice_http_in_flight", ()) in after
