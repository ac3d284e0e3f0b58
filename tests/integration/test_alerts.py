"""An alert rule over the rollups fires on an injected error spike (the mock
upstream answers 400s) and resolves after recovery; a local webhook receiver
takes each firing and each resolution exactly once: also when it refused the
first delivery, and when the sink (which evaluates the rules) is killed while
the alert fires."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from services.cli.nats_server import free_port
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

MODEL = "alerting-model"
THRIFTY_KEY = "sk-test-thrifty-0123456789"
WAIT_S = 45


class Receiver:
    """A webhook receiver that refuses its first delivery (500) and takes the rest."""

    def __init__(self) -> None:
        self.port = free_port()
        self.tries: list[dict] = []
        self.taken: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.tries.append(body)
                ok = len(receiver.tries) > 1
                if ok:
                    assert self.headers["sluice-delivery-id"] == body["id"]
                    receiver.taken.append(body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, state: str, subject: str = MODEL) -> dict:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            found = [b for b in self.taken if b["state"] == state and b["subject"] == subject]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no {state} alert delivered in {WAIT_S}s; tries: {self.tries}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def alert_stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Stack]:
    extra = f"""
[[models]]
name = "{MODEL}"
provider = "openai"
base_url = "http://127.0.0.1:{{mock}}/v1"
upstream_model = "gpt-4o-mini"

[[alerts]]
name = "errors"
kind = "error_rate"
threshold = 0.5
window_minutes = 2
min_requests = 5
webhooks = ["receiver"]

[[alerts]]
name = "budgets"
kind = "budget"
threshold = 0.5
webhooks = ["receiver"]

[[tenants]]
id = "thrifty"
budget = {{{{ usd = "0.001" }}}}

[[keys]]
id = "thrifty"
tenant = "thrifty"
key_env = "SLUICE_TEST_THRIFTY_KEY"

[[webhooks]]
name = "receiver"
url = "http://127.0.0.1:{receiver.port}/hook"
"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_TEST_THRIFTY_KEY", THRIFTY_KEY)
        s = Stack(Path(tmp_path_factory.mktemp("alerts")), extra_config=extra, gateway="alert_interval_s = 0.5")
        s.start()
        yield s
        s.stop()


def calls(stack: Stack, n: int, text: str, key: str = DEMO_KEY, model: str = MODEL) -> list[int]:
    with httpx.Client(timeout=20) as client:
        return [
            client.post(
                f"{stack.base_url}/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 60},
                headers={"authorization": f"Bearer {key}"},
            ).status_code
            for _ in range(n)
        ]


def test_an_error_spike_fires_once_and_recovery_resolves_once(alert_stack: Stack, receiver: Receiver) -> None:
    calls(alert_stack, 10, "fail please [mock:status=400]")
    fired = receiver.wait_for("firing")
    assert fired["rule"] == "errors" and fired["kind"] == "error_rate" and fired["value"] > 0.5
    assert receiver.tries[0]["id"] == fired["id"]  # the refused first try, sent again until taken

    # The sink dies while the alert fires: the one started in its place knows it fires.
    old = alert_stack.supervisor.pids()["sink"]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while alert_stack.supervisor.pids().get("sink") in (None, old):
        assert time.monotonic() < deadline, "the sink was not restarted"
        time.sleep(0.2)
    calls(alert_stack, 2, "still failing [mock:status=400]")
    time.sleep(3)  # several evaluations by the new sink while still over the threshold

    calls(alert_stack, 30, "fine now")
    resolved = receiver.wait_for("resolved")
    assert resolved["alert_id"] == fired["alert_id"]
    time.sleep(3)  # more evaluations: nothing more to send
    ids = [b["id"] for b in receiver.taken if b["subject"] == MODEL]
    assert sorted(ids) == sorted({fired["id"], resolved["id"]}), receiver.taken

    # Stored as rows, and shown to the dashboard.
    rows = alert_stack.query("alert_states", hours=1)
    states = [dict(zip(rows["columns"], r, strict=True)) for r in rows["rows"]]
    mine = [s for s in states if s["alert_id"] == fired["alert_id"]]
    assert len(mine) == 1 and mine[0]["state"] == "resolved" and mine[0]["fired_at_ms"] > 0
    panels = httpx.get(
        f"http://127.0.0.1:{alert_stack.layout.http_port}/dashboard/api/panels",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    ).json()
    assert fired["alert_id"] in {a["alert_id"] for a in panels["alerts"]}


def test_a_budget_past_its_threshold_fires_once(alert_stack: Stack, receiver: Receiver) -> None:
    deadline = time.monotonic() + WAIT_S
    while not any(b["subject"] == "tenant thrifty" for b in receiver.taken):
        assert time.monotonic() < deadline, f"no budget alert; tries: {receiver.tries}"
        # Another model than the error-rate rule's: these calls are not its business.
        assert calls(alert_stack, 2, "spend [mock:chunks=40]", key=THRIFTY_KEY, model="demo-model") == [200, 200]
        time.sleep(0.5)
    fired = receiver.wait_for("firing", "tenant thrifty")
    assert fired["rule"] == "budgets" and fired["tenant_id"] == "thrifty" and fired["value"] > 0.5
    time.sleep(2)  # more evaluations while it stays over: sent once
    assert [b["id"] for b in receiver.taken if b["subject"] == "tenant thrifty"] == [fired["id"]]
