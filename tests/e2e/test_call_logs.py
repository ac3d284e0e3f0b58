"""Call logs: the bodies of an opted-in tenant's calls (tenant "careful",
cut at 400 bytes, with an email redaction rule), none for others, and
`sluice logs` reading them, ``--follow`` included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import openai
import pytest

from services.call_logs import CUT_MARKER
from tests.integration.test_admin_cli import sluice
from tests.stack import DEMO_KEY, REDACT_KEY, Stack

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def careful(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=REDACT_KEY, max_retries=0, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def demo(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def call_log(stack: Stack, request_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = stack.query("call_logs", request_id=request_id, chars=1_000_000)
        assert result["error"] is None, result["error"]
        if result["rows"]:
            return dict(zip(result["columns"], result["rows"][0], strict=True))
        assert time.monotonic() < deadline, f"no call log for {request_id}"
        time.sleep(0.1)


def test_an_opted_in_tenant_gets_its_bodies_redacted_and_cut_at_its_cap(stack: Stack, careful: openai.OpenAI) -> None:
    said = f"Write to {EMAIL} please. [mock:echo]"
    raw = careful.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": said}]
    )
    request_id = raw.headers["x-request-id"]
    row = call_log(stack, request_id)
    assert (row["tenant_id"], row["key_id"], row["model"], row["status"]) == ("careful", "careful", "demo-model", 200)
    # What the upstream saw, both ways: the redacted prompt, and the echo of it.
    assert "[REDACTED:email]" in row["request_body"] and EMAIL not in row["request_body"]
    assert "[REDACTED:email]" in row["response_body"] and EMAIL not in row["response_body"]
    assert EMAIL not in raw.parse().choices[0].message.content  # the caller too got the redacted echo

    long = "word " * 400  # 2,000 bytes of prompt, cap 400
    cut = careful.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": long}]
    )
    row = call_log(stack, cut.headers["x-request-id"])
    assert row["request_bytes"] > 2000
    marker = CUT_MARKER.format(kept=400, total=row["request_bytes"])
    assert row["request_body"].endswith(marker) and len(row["request_body"].encode()) == 400 + len(marker.encode())


def test_a_streamed_answer_and_a_failed_call_are_logged_whole(stack: Stack, careful: openai.OpenAI) -> None:
    stream = careful.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": "stream me [mock:chunks=5]"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    row = call_log(stack, stream.headers["x-request-id"])
    assert text and text in row["response_body"]

    with pytest.raises(openai.APIStatusError) as failed:
        careful.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "[mock:status=400]"}])
    row = call_log(stack, failed.value.response.headers["x-request-id"])
    assert row["status"] == 400 and '"error"' in row["response_body"]


def test_a_tenant_that_did_not_opt_in_has_no_call_logs(stack: Stack, demo: openai.OpenAI) -> None:
    raw = demo.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": f"not kept {EMAIL}"}]
    )
    request_id = raw.headers["x-request-id"]
    stack.request_row(request_id)
    # Call logs and request rows come in the same event batch from the provider.
    time.sleep(1.0)
    assert stack.query("call_logs", request_id=request_id)["rows"] == []
    assert stack.query("call_logs", tenant_id="demo", since_ns=time.time_ns() - 3_600_000_000_000)["rows"] == []


def test_sluice_logs_filters_and_follow_shows_a_new_request(stack: Stack, careful: openai.OpenAI) -> None:
    first = careful.chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": "for the log list"}]
    )
    first_id = first.headers["x-request-id"]
    call_log(stack, first_id)
    env = ["--nats", stack.nats_url, "--creds", stack.creds()]
    listed = sluice(stack, "logs", "--tenant", "careful", "--request-id", first_id, "--full", *env).stdout
    assert first_id in listed and "careful/careful" in listed and '"role": "user"' in listed
    assert "No call logs match" in sluice(stack, "logs", "--tenant", "demo", *env).stdout
    bad = sluice(stack, "logs", "--since", "yesterday-ish", *env, check=False)
    assert bad.returncode != 0 and "is not a time" in bad.stderr

    follow = subprocess.Popen(
        [sys.executable, "-m", "services.cli.cli", "logs", "--follow", "--interval", "0.3", "--since", "1m", *env],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        time.sleep(1.0)  # it has printed what was there and is following
        new = careful.chat.completions.with_raw_response.create(
            model="demo-model", messages=[{"role": "user", "content": "a new one to follow"}]
        )
        new_id = new.headers["x-request-id"]
        deadline = time.monotonic() + 30
        while not any(new_id in line for line in lines) and time.monotonic() < deadline:
            assert follow.poll() is None, follow.stderr.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        assert any(new_id in line for line in lines), lines
        assert sum(new_id in line for line in lines) == 1  # printed once, though looked at again
    finally:
        os.killpg(follow.pid, signal.SIGINT)
        follow.wait(timeout=10)
        follow.stdout.close()  # type: ignore[union-attr]
        follow.stderr.close()  # type: ignore[union-attr]
