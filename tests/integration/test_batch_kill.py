"""A 10,000-line batch across two ingress processes (both run lines), one
of them SIGKILLed and the pipeline SIGKILLed midway, each restarted by the
supervisor: the batch completes; every line's request reached the mock at
most once (its take-over finds the answer, or ends it as worker_died when
a provider took it and died); the output and error files hold each line
once, with its custom_id; request_counts match them. Then a batch cancelled
mid-run: its lines not started never reach the mock and have no rows, so
cost nothing."""

from __future__ import annotations

import json
import os
import signal
import time

import openai
import pytest

from tests.batch_client import ended, lines_of
from tests.stack import DEMO_KEY, Stack

# Heavy (10,000 upstream calls, processes killed): alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

LINES = 10_000
CANCELLED_LINES = 2_000
CHAT = "/v1/chat/completions"


def jsonl(texts: list[str], prefix: str) -> bytes:
    out = bytearray()
    for i, text in enumerate(texts):
        body = {"model": "demo-model", "messages": [{"role": "user", "content": text}]}
        out += json.dumps({"custom_id": f"{prefix}{i}", "method": "POST", "url": CHAT, "body": body}).encode() + b"\n"
    return bytes(out)


def wait_for_calls(stack: Stack, at_least: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while stack.mock_stats()["requests"] < at_least:
        assert time.monotonic() < deadline, f"lines are not running: {stack.mock_stats()['requests']} calls"
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_a_10000_line_batch_survives_kills_and_a_cancel_stops_the_lines_not_started(tmp_path) -> None:
    stack = Stack(tmp_path / "batch", timeout_s=20, gateway="batches_per_tenant = 64", replicas={"ingress": 2})
    stack.start()
    # Retries: a connection to the killed ingress (both share the port) is refused until it is back.
    client = openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=8, timeout=60)
    try:
        data = jsonl([f"kill9 batch line {i}" for i in range(LINES)], "line-")
        file_id = client.files.create(file=("big.jsonl", data), purpose="batch").id
        started = time.monotonic()
        made = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        assert made.status == "in_progress"
        queued_s = time.monotonic() - started
        for name, at in (("ingress-1", LINES // 4), ("pipeline", LINES // 2)):
            wait_for_calls(stack, at)
            os.kill(stack.supervisor.pids()[name], signal.SIGKILL)
        batch = ended(client, made.id, timeout=150, poll_s=0.5)
        elapsed = time.monotonic() - started
        mock = stack.mock_stats()
        out, errors = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)

        assert batch.status == "completed", batch
        assert sorted(int(o["custom_id"].removeprefix("line-")) for o in out + errors) == list(range(LINES))
        assert batch.request_counts is not None
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (LINES, len(out), len(errors))
        assert all(o["response"]["status_code"] == 200 for o in out)
        # A line whose provider died holding it is not run again: it ends as worker_died.
        died = [e for e in errors if e["response"]["body"]["error"]["code"] == "worker_died"]
        assert len(died) == len(errors), {e["response"]["body"]["error"]["code"] for e in errors}
        assert mock["repeated"] == 0, "a line's request reached the upstream twice"
        assert len(out) <= mock["requests"] <= len(out) + len(died), (mock["requests"], len(out), len(died))
        print(
            f"batch of {LINES} lines, an ingress and the pipeline killed: {elapsed:.1f} s "
            f"({LINES / elapsed:.0f} lines/s; checked and queued in {queued_s:.1f} s), "
            f"{mock['requests']} upstream calls, {len(out)} answered, {len(died)} worker_died"
        )

        # A second batch, cancelled once a few hundred lines ended.
        before = stack.mock_stats()["requests"]
        data = jsonl([f"cancel line {i} [mock:latency_ms=50]" for i in range(CANCELLED_LINES)], "c-")
        file_id = client.files.create(file=("cancel.jsonl", data), purpose="batch").id
        made = client.batches.create(input_file_id=file_id, endpoint=CHAT, completion_window="24h")
        wait_for_calls(stack, before + 300)
        assert client.batches.cancel(made.id).status == "cancelling"
        batch = ended(client, made.id, timeout=60, poll_s=0.5)
        out, errors = lines_of(client, batch.output_file_id), lines_of(client, batch.error_file_id)
        ran = [o for o in out + errors if o["response"] is not None]
        cancelled = [e for e in errors if e["response"] is None and e["error"]["code"] == "batch_cancelled"]
        assert batch.status == "cancelled" and batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (len(out), len(errors))
        assert len(ran) + len(cancelled) == CANCELLED_LINES and cancelled, (len(ran), len(cancelled))
        assert stack.mock_stats()["requests"] - before == len(ran), "a cancelled line reached the upstream"
        # Rows (and cost) for the lines that ran, none for the others.
        deadline = time.monotonic() + 60
        while True:
            found = stack.query("batches", batch_id=batch.id)
            lines = dict(zip(found["columns"], found["rows"][0], strict=True))["lines"] if found["rows"] else 0
            if lines >= len(ran) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert lines == len(ran)
        print(f"cancelled batch: {len(ran)} lines ran, {len(cancelled)} cancelled without a call")
    finally:
        client.close()
        stack.stop()
