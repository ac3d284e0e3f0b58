"""The ``sluice`` command line against a running stack."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.stack import DEMO_KEY, Stack


def test_sluice_stats_prints_table_and_json(stack: Stack) -> None:
    resp = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "other-model", "messages": [{"role": "user", "content": "stats please [mock:chunks=3]"}]},
        headers={"authorization": f"Bearer {DEMO_KEY}"},
    )
    assert resp.status_code == 200
    stack.request_row(resp.headers["x-request-id"])
    cmd = [sys.executable, "-m", "services.runtime.cli", "stats", "--nats", stack.nats_url]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "other-model" in table and "p99 ms" in table and "cost USD" in table
    data = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    other = next(r for r in data if r["model"] == "other-model")
    assert other["requests"] >= 1 and other["completion_tokens"] >= 3
    assert len(other["latency_ms"]) == 3 and other["latency_ms"][0] > 0
