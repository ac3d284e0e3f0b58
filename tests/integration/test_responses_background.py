"""Background responses are durable jobs: the ingress that took them is
killed -9 while their upstream calls are in flight, and each still ends
completed under its own id, the upstream called once per response."""

from __future__ import annotations

import os
import signal
import time

import openai
import pytest

from tests.stack import DEMO_KEY, Stack

# An ingress killed while a sleep has put every job at the upstream, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

COUNT = 6


def test_background_responses_survive_their_ingress_killed(tmp_path) -> None:
    stack = Stack(tmp_path / "bg", timeout_s=20).start()
    try:
        with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as client:
            before = stack.mock_stats()
            queued = [
                client.responses.create(
                    model="claude-model", input=f"bg {i} [mock:latency_ms=1500] [mock:chunks=3]", background=True
                )
                for i in range(COUNT)
            ]
            assert all(r.status == "queued" for r in queued)
            time.sleep(0.7)  # every job's request is at the upstream
            killed = stack.supervisor.pids()["ingress"]
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while stack.supervisor.pids().get("ingress") in (killed, None):
                assert time.monotonic() < deadline, "the ingress was not restarted"
                time.sleep(0.1)
            ended = {}
            deadline = time.monotonic() + 60
            while len(ended) < COUNT:
                assert time.monotonic() < deadline, f"still running: {[r.id for r in queued if r.id not in ended]}"
                for r in queued:
                    if r.id in ended:
                        continue
                    try:
                        got = client.responses.retrieve(r.id)
                    except (openai.APIConnectionError, openai.InternalServerError):
                        break  # the new ingress is still starting
                    if got.status not in ("queued", "in_progress"):
                        ended[r.id] = got
                time.sleep(0.2)
            after = stack.mock_stats()
    finally:
        stack.stop()
    assert {r.status for r in ended.values()} == {"completed"}, {k: v.status for k, v in ended.items()}
    assert all(r.output_text == "Sluice routes this" and r.background for r in ended.values())
    # One upstream call per response: none lost, none made twice.
    assert after["requests"] - before["requests"] == COUNT
    assert after["repeated"] == before["repeated"]
