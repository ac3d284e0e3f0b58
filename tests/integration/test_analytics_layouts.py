"""Where the rows go (``sluice up --analytics``): with ``none`` the gateway
starts no sink and no engine, serves, and keeps every row in the events
stream until a sink started elsewhere on the same NATS writes it; with the
embedded default and no engine installed, ``sluice up`` says what to do."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from services.cli.supervisor import ENGINE_MISSING, StartupError
from tests.stack import DEMO_KEY, Stack


@pytest.fixture(scope="module")
def engineless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("no-analytics")), analytics=False).start()
    yield s
    s.stop()


def test_no_sink_runs_and_the_gateway_is_ready_and_serves(engineless: Stack) -> None:
    names = engineless.supervisor.pids().keys()
    assert names and not any(n.startswith("sink") for n in names) and "ingress" in names
    # The ingress hears each process's beat within a second of its start.
    deadline = time.monotonic() + 15
    while (ready := httpx.get(f"http://127.0.0.1:{engineless.layout.http_port}/readyz", timeout=10)).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.2)
    assert "sink" not in ready.json()["stages"], ready.text
    client = openai.OpenAI(base_url=engineless.base_url, api_key=DEMO_KEY, max_retries=0)
    answer = client.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": "rows wait for a sink"}]
    )
    assert answer.status_code == 200 and answer.parse().choices[0].message.content


def test_rows_wait_in_the_stream_for_a_sink_started_elsewhere(engineless: Stack, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=engineless.base_url, api_key=DEMO_KEY, max_retries=0)
    since = time.time_ns()
    ids = [
        client.chat.completions.with_raw_response.create(
            model="demo-model", messages=[{"role": "user", "content": f"kept {i}"}]
        ).headers["x-request-id"]
        for i in range(3)
    ]
    # A sink of its own, as on another machine: the same NATS, its own ClickHouse.
    env = engineless.supervisor._env("sink")
    env["SLUICE_CLICKHOUSE_DSN"] = f"chdb://{tmp_path / 'clickhouse'}"
    log = (tmp_path / "sink.log").open("wb")
    sink = subprocess.Popen([sys.executable, "-m", "analytics.sink"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        rows = engineless.rows_of(ids, since_ns=since, timeout=60)
        assert {rows[i]["status"] for i in ids} == {200}
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        log.close()


def test_an_embedded_layout_without_the_engine_refuses_to_start_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "chdb" else real(name, *a))
    stack = Stack(tmp_path)
    with pytest.raises(StartupError, match="--no-deps chdb-core-lite") as refused:
        stack.start()
    assert str(refused.value) == ENGINE_MISSING and "--analytics none" in ENGINE_MISSING
    assert stack.supervisor.pids() == {}  # nothing left running
