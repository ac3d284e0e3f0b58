"""The ledger: every door at once, on a 3-node NATS cluster with two
pipeline replicas and two ingress processes, an upstream that takes 2 s,
and one pipeline replica SIGKILLed in the middle. Then the upstream's own
count is held against what the gateway recorded.

* No request reached the upstream twice (the mock counts bodies it saw
  before), and the upstream's calls are the requests that succeeded plus
  those whose provider died holding them (billed as cut short).
* Every request has exactly one row in the raw ``requests`` table (no
  FINAL, which would hide a second) and nothing is in ``request_conflicts``.
* The rollups' totals equal the raw rows'.

One sink: the embedded ClickHouse is one process's, and no ClickHouse
server runs here (two sinks on a server take turns by a lease, tested in
``test_sink_replicas``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import nats.errors
import pytest
from nats.aio.subscription import Subscription
from websockets.asyncio.client import connect

from schemas import subjects
from schemas.replies import Final
from services.bus.client import SluiceClient, SluiceError
from tests.integration.test_exact_rollups import counts
from tests.stack import DEMO_KEY, Stack

# A 3-node cluster under load, a replica killed at a chosen moment, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

SLOW = "[mock:latency_ms=2000]"
NATS_DEADLINE_S = 10
PROMPT = f"""
[[prompts]]
name = "ledger"
model = "demo-model"
api = {{{{ slug = "ledger", state = "published" }}}}
[[prompts.messages]]
role = "user"
template = "{{{{{{{{text}}}}}}}} {SLOW}"
[[prompts.variables]]
name = "text"
"""
# 200 requests: how many by each door.
DOORS = {"http": 40, "sse": 40, "ws": 30, "nats": 30, "jobs": 30, "api_http": 10, "api_nats": 10, "api_ws": 10}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = Path(tmp_path_factory.mktemp("ledger"))
    s = Stack(home, timeout_s=30, extra_config=PROMPT, cluster=3, replicas={"provider": 2, "ingress": 2}).start()
    yield s
    s.stop()


class Outcome(msgspec.Struct):
    door: str
    ok: bool
    request_id: str
    # An error that says the provider died holding it (it may have reached the upstream).
    died: bool = False
    # No answer at all: a bus caller's request that the killed process held.
    lost: bool = False


def text(door: str, i: int) -> str:
    return f"ledger {door} {i} {SLOW}"


def chat(door: str, i: int, **more: object) -> dict:
    return {"model": "demo-model", "messages": [{"role": "user", "content": text(door, i)}], **more}


async def http_door(stack: Stack, i: int, stream: bool) -> Outcome:
    door = "sse" if stream else "http"
    url, body_in = f"{stack.base_url}/chat/completions", chat(door, i, stream=stream)
    async with (
        httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {DEMO_KEY}"}) as client,
        client.stream("POST", url, json=body_in) as r,
    ):
        body = await r.aread()
        rid = r.headers.get("x-request-id", "")
    ok = r.status_code == 200 and (not stream or b"data: [DONE]" in body)
    return Outcome(door, ok, rid, died=b"worker_died" in body)


async def ws_door(stack: Stack) -> list[Outcome]:
    url = f"ws://127.0.0.1:{stack.layout.http_port}/v1/ws"
    async with connect(url, additional_headers={"authorization": f"Bearer {DEMO_KEY}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "ready"
        for i in range(DOORS["ws"]):
            await ws.send(json.dumps({"type": "request", "id": f"w{i}", "api": "chat", "body": chat("ws", i)}))
        for i in range(DOORS["api_ws"]):
            variables = {"text": f"ws{i}"}
            call = {"type": "request", "id": f"a{i}", "api": "prompt", "slug": "ledger", "variables": variables}
            await ws.send(json.dumps(call))
        out: list[Outcome] = []
        while len(out) < DOORS["ws"] + DOORS["api_ws"]:
            m = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if m["type"] != "response":
                continue
            door = "ws" if m["id"].startswith("w") else "api_ws"
            died = "worker_died" in json.dumps(m["body"])
            out.append(Outcome(door, m["status"] == 200, m["request_id"], died=died))
        return out


async def nats_door(stack: Stack) -> list[Outcome]:
    """A service's own request/reply: no gateway session stands behind it, so
    one held by the killed process gets no answer (and no row): ``lost``."""
    nc = await stack.connect("svc-demo")
    try:
        subs = []
        for i in range(DOORS["nats"]):
            inbox = nc.new_inbox()
            subs.append(await nc.subscribe(inbox))
            deadline = time.time_ns() + NATS_DEADLINE_S * 1_000_000_000
            envelope = {"kind": "chat.request", "reply": inbox, "body": chat("nats", i), "deadline_ns": deadline}
            key = {"Authorization": f"Bearer {DEMO_KEY}"}
            await nc.publish(subjects.IN_CHAT, msgspec.msgpack.encode(envelope), headers=key)

        async def end_of(sub: Subscription) -> Outcome:
            try:
                while True:
                    reply = msgspec.msgpack.decode((await sub.next_msg(timeout=NATS_DEADLINE_S + 2)).data)
                    if reply["kind"] in ("chat.final", "chat.failure"):
                        ok = reply["kind"] == "chat.final"
                        return Outcome("nats", ok, reply["id"], died=reply.get("code") == "worker_died")
            except nats.errors.TimeoutError:
                return Outcome("nats", False, "", lost=True)

        return list(await asyncio.gather(*(end_of(sub) for sub in subs)))
    finally:
        await nc.close()


async def service_doors(stack: Stack) -> list[Outcome]:
    """Jobs and prompt APIs over the bus, through the package's own client."""
    async with await SluiceClient.connect(stack.nats_url, DEMO_KEY, creds=stack.creds("svc-demo")) as sluice:

        async def api(i: int) -> Outcome:
            try:
                answer = await sluice.call_api("ledger", {"text": f"nats{i}"})
            except SluiceError as exc:
                return Outcome("api_nats", False, exc.failure.id, died=exc.failure.code == "worker_died")
            return Outcome("api_nats", True, answer.request_id)

        jobs = [await sluice.submit_job("chat", chat("jobs", i)) for i in range(DOORS["jobs"])]
        apis = await asyncio.gather(*(api(i) for i in range(DOORS["api_nats"])))
        out = list(apis)
        for job in jobs:
            result = await sluice.result(job, wait_s=90)
            assert result is not None, f"job {job} has no result"
            r = result.result
            died = getattr(r, "code", "") == "worker_died"
            out.append(Outcome("jobs", isinstance(r, Final), result.request_id, died=died))
        return out


async def api_http_door(stack: Stack, i: int) -> Outcome:
    url = f"{stack.base_url.removesuffix('/v1')}/apis/ledger"
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {DEMO_KEY}"}) as client:
        r = await client.post(url, json={"text": f"http{i}"})
    return Outcome("api_http", r.status_code == 200, r.headers.get("x-request-id", ""), died="worker_died" in r.text)


def assert_recorded(stack: Stack, o: Outcome) -> None:
    """A model request's row; a prompt-API call's own row, and its step's (one step)."""
    if not o.door.startswith("api_"):
        stack.request_row(o.request_id, timeout=30)
        return
    deadline = time.monotonic() + 30
    while not (
        stack.query("api_call", request_id=o.request_id)["rows"]
        and (stack.query("children", parent_id=o.request_id)["rows"])
    ):
        assert time.monotonic() < deadline, f"no rows for {o}"
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_every_door_at_once_with_a_replica_killed_calls_once_and_records_once(ledger: Stack) -> None:
    mock_before = ledger.mock_stats()
    since = time.time_ns()
    victim = ledger.supervisor.pids()["pipeline-1"]

    async def go() -> list[Outcome]:
        async def kill_midway() -> None:
            await asyncio.sleep(1.0)  # most requests are at the 2 s upstream by now
            os.kill(victim, signal.SIGKILL)

        results = await asyncio.gather(
            *(http_door(ledger, i, False) for i in range(DOORS["http"])),
            *(http_door(ledger, i, True) for i in range(DOORS["sse"])),
            *(api_http_door(ledger, i) for i in range(DOORS["api_http"])),
            ws_door(ledger),
            nats_door(ledger),
            service_doors(ledger),
            kill_midway(),
        )
        flat: list[Outcome] = []
        for r in results:
            if isinstance(r, Outcome):
                flat.append(r)
            elif isinstance(r, list):
                flat += r
        return flat

    outcomes = asyncio.run(go())
    assert len(outcomes) == sum(DOORS.values())
    succeeded = [o for o in outcomes if o.ok]
    died = [o for o in outcomes if o.died]
    lost = [o for o in outcomes if o.lost]
    other = [o for o in outcomes if not o.ok and not o.died and not o.lost]
    assert not other, other[:5]  # every request succeeded or was cut short by the kill
    # Every door the gateway's own sessions serve has an outcome for each request.
    assert all(o.door == "nats" for o in lost), lost
    time.sleep(0.5)
    mock = ledger.mock_stats()
    calls = mock["requests"] - mock_before["requests"]
    assert mock["repeated"] == mock_before["repeated"], "a request reached the upstream twice"
    # Each prompt-API call is one upstream call (one step); each other request, one.
    top = len(succeeded) + len(died) + len(lost)
    assert len(succeeded) <= calls <= top, (calls, len(succeeded), len(died), len(lost))
    for o in outcomes:
        if not o.lost:
            assert o.request_id, o
            assert_recorded(ledger, o)
    rows = ledger.query("duplicate_rows", since_ns=since)
    assert rows["rows"] == [[0, 0]], rows
    base, hourly, base_cost, hourly_cost = counts(ledger, "demo")
    assert (hourly, hourly_cost) == (base, base_cost)
    print(
        f"ledger: {len(outcomes)} requests, {calls} upstream calls, {len(succeeded)} ok, "
        f"{len(died)} cut short (worker_died), {len(lost)} bus requests lost with the process"
    )
