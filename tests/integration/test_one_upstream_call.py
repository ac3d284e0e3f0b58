"""One upstream call per request with two replicas of the pipeline and an
upstream that takes seconds, whatever door the request came in by: the mock
upstream's own count of calls is compared with the requests sent and the
rows ClickHouse holds.

Before every requester asked for progress replies, WebSocket and job
sessions never heard a provider's ``Accepted``, sent their request again
after half a second, and the copy reached the other replica: 20 WebSocket
requests to a 2 s upstream made ~38 upstream calls. A copy that is only
delayed (its replica stalled) is now fenced off before another is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import msgspec
import nats.aio.client
import pytest
from nats.aio.subscription import Subscription
from websockets.asyncio.client import connect

from schemas import bus, subjects
from schemas.chat import ChatBody, Message
from schemas.envelope import Envelope
from schemas.ids import new_id
from schemas.replies import Admitted, Failure, Fence, Fenced, Final
from schemas.reservation import HOLD_PARALLEL, Hold, Reservation
from services.bus.client import SluiceClient
from services.keys import hash_key
from tests.stack import DEMO_KEY, Stack

# A window between the resend time and the supervisor's patience, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

SLOW = "[mock:latency_ms=2000]"
N = 20
ONE_RPM_KEY = "sk-test-fenced-rpm1-0123456789"
EXTRA = f"""
[[tenants]]
id = "fenced"

[[keys]]
id = "rpm1"
tenant = "fenced"
sha256 = "{hash_key(ONE_RPM_KEY)}"
limits = {{{{ rpm = 1 }}}}
"""


@pytest.fixture(scope="module")
def two_pipelines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("once"), timeout_s=30, replicas={"provider": 2}, extra_config=EXTRA).start()
    yield s
    s.stop()


def calls(stack: Stack) -> int:
    """Upstream calls so far; and none of them a body the mock had seen before."""
    stats = stack.mock_stats()
    assert stats["repeated"] == 0, "a request reached the upstream twice"
    return stats["requests"]


def assert_one_row_each(stack: Stack, ids: list[str], since_ns: int) -> None:
    """Every request has its row, and the raw table (not FINAL, where a
    merge would hide one) holds no second row nor a conflict since then."""
    for request_id in ids:
        stack.request_row(request_id)  # waits until the sink wrote it
    result = stack.query("duplicate_rows", since_ns=since_ns)
    assert result["error"] is None, result["error"]
    assert result["rows"] == [[0, 0]], result


def test_websocket_requests_to_a_slow_upstream_are_called_once(two_pipelines: Stack) -> None:
    before, since = calls(two_pipelines), time.time_ns()

    async def go() -> dict[str, dict]:
        url = f"ws://127.0.0.1:{two_pipelines.layout.http_port}/v1/ws"
        async with connect(url, additional_headers={"authorization": f"Bearer {DEMO_KEY}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            for i in range(N):
                body = {"model": "demo-model", "messages": [{"role": "user", "content": f"ws {i} {SLOW}"}]}
                await ws.send(json.dumps({"type": "request", "id": f"w{i}", "api": "chat", "body": body}))
            done: dict[str, dict] = {}
            while len(done) < N:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "response":
                    done[message["id"]] = message
            return done

    done = asyncio.run(go())
    assert {m["status"] for m in done.values()} == {200}, done
    assert calls(two_pipelines) - before == N
    ids = [m["body"]["id"].removeprefix("chatcmpl-") for m in done.values()]
    assert_one_row_each(two_pipelines, ids, since)


def test_jobs_to_a_slow_upstream_are_called_once(two_pipelines: Stack) -> None:
    before, since = calls(two_pipelines), time.time_ns()

    async def go() -> list:
        async with await SluiceClient.connect(
            two_pipelines.nats_url, DEMO_KEY, creds=two_pipelines.creds("svc-demo")
        ) as sluice:
            jobs = [
                await sluice.submit_job(
                    "chat", {"model": "demo-model", "messages": [{"role": "user", "content": f"job {i} {SLOW}"}]}
                )
                for i in range(N)
            ]
            return [await sluice.result(job, wait_s=60) for job in jobs]

    results = asyncio.run(go())
    assert all(isinstance(r.result, Final) for r in results), [r.result for r in results]
    assert calls(two_pipelines) - before == N
    assert_one_row_each(two_pipelines, [r.request_id for r in results], since)


def test_a_stalled_replica_s_requests_are_fenced_not_called_twice(two_pipelines: Stack) -> None:
    """One pipeline replica stops for 2 s with requests queued for it: each
    is unclaimed past the resend time, but is sent again only once both
    replicas answered the fence, so the stalled one's copies are either
    its own to call (it answers "holds") or refused when it wakes."""
    before, since = calls(two_pipelines), time.time_ns()
    pid = two_pipelines.supervisor.pids()["pipeline-1"]

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=40, headers={"authorization": f"Bearer {DEMO_KEY}"}) as client:

            async def one(i: int) -> httpx.Response:
                text = f"stall {i} [mock:latency_ms=300]"
                body = {"model": "demo-model", "messages": [{"role": "user", "content": text}]}
                return await client.post(f"{two_pipelines.base_url}/chat/completions", json=body)

            sent = [asyncio.create_task(one(i)) for i in range(N)]
            await asyncio.sleep(0.05)  # they are on their way to both replicas
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(2.0)  # past the resend time, within the supervisor's patience
            finally:
                os.kill(pid, signal.SIGCONT)
            return await asyncio.gather(*sent)

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers if r.status_code != 200]
    assert calls(two_pipelines) - before == N
    assert_one_row_each(two_pipelines, [r.headers["x-request-id"] for r in answers], since)


def test_a_reused_caller_id_is_served_once_across_policy_replicas(two_pipelines: Stack) -> None:
    """Pairs of requests naming one id, published at once: whichever policy
    replicas they reach, one is served and the other refused with 409."""

    async def go() -> list[tuple[dict, dict]]:
        nc = await two_pipelines.connect("svc-demo")
        try:
            pairs = []
            for i in range(10):
                request_id = new_id()
                inboxes = [nc.new_inbox(), nc.new_inbox()]
                subs = [await nc.subscribe(inbox) for inbox in inboxes]
                for inbox in inboxes:
                    envelope = {
                        "kind": "chat.request",
                        "id": request_id,
                        "reply": inbox,
                        "body": {"model": "demo-model", "messages": [{"role": "user", "content": f"pair {i}"}]},
                    }
                    key = {"Authorization": f"Bearer {DEMO_KEY}"}
                    await nc.publish(subjects.IN_CHAT, msgspec.msgpack.encode(envelope), headers=key)
                ends = []
                for sub in subs:
                    while True:
                        reply = msgspec.msgpack.decode((await sub.next_msg(timeout=20)).data)
                        if reply["kind"] in ("chat.final", "chat.failure"):
                            ends.append(reply | {"asked": request_id})
                            break
                pairs.append((ends[0], ends[1]))
            return pairs
        finally:
            await nc.close()

    for a, b in asyncio.run(go()):
        kinds = sorted([a["kind"], b["kind"]])
        assert kinds == ["chat.failure", "chat.final"], (a, b)
        served, refused = (a, b) if a["kind"] == "chat.final" else (b, a)
        assert served["id"] == served["asked"]
        assert (refused["status"], refused["code"]) == (409, "request_id_reused")
        assert refused["id"] != refused["asked"]  # its row stands for the refusal, not the served request


async def fence_off(ingress: nats.aio.client.Client, request_id: str, inbox: str, carries: int) -> Subscription:
    """A fence for copy 1 of the request, as the ingress sends it, answered
    "not here" by both providers; the inbox's subscription, for what follows."""
    sub = await ingress.subscribe(inbox)
    fence = Fence(id=request_id, copy=1, carries=carries)
    await ingress.publish(subjects.CONTROL_FENCE, bus.encode(fence), reply=inbox)
    answers = [bus.decode_reply((await sub.next_msg(timeout=10)).data) for _ in range(2)]
    assert all(isinstance(a, Fenced) and not a.holds for a in answers), answers
    return sub


def copy_of(request_id: str, inbox: str, text: str, copy: int, quota: Reservation | None = None) -> Envelope:
    """A copy of a chat request as the ingress publishes it."""
    now = time.time_ns()
    return Envelope(
        id=request_id, reply=inbox, api="chat", received_at_ns=now, deadline_ns=now + 20 * 10**9,
        body=ChatBody(model="demo-model", messages=[Message(role="user", content=text)]),
        quota=quota, copy=copy, progress=True,
    )  # fmt: skip


async def fenced_copy_leaves(stack: Stack, carries: int) -> tuple[int, list]:
    """Copy 0 of a request, holding one unit of a parallel counter, reaches
    the providers after a fence for copy 1 that says the reservation of copy
    ``carries`` goes on: (the counter once the copy is refused, what the
    requester heard). Published as the ingress publishes, with its role."""
    subject = f"{subjects.QUOTA}.rate.key.fence{new_id()}.par"
    admin = await stack.connect("admin")
    ingress = await stack.connect("ingress")
    try:
        js = admin.jetstream()
        await js.publish(subject, b"", headers={"Nats-Incr": "+1"})  # what policy took for copy 0
        request_id, inbox = new_id(), ingress.new_inbox()
        sub = await fence_off(ingress, request_id, inbox, carries)
        held = Reservation(holds=[Hold(subject, HOLD_PARALLEL, 1, 1)], copy=0)
        copy0 = copy_of(request_id, inbox, "fenced off", copy=0, quota=held)
        headers = {subjects.API_KEY_HEADER: f"Bearer {DEMO_KEY}"}
        await ingress.publish(subjects.FROM_INGRESS, bus.encode(copy0), headers=headers)
        heard = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                heard.append(bus.decode_reply((await sub.next_msg(timeout=0.5)).data))
            msg = await js.get_last_msg(subjects.RATES_STREAM, subject, direct=True)
            if json.loads(msg.data)["val"] == "0":
                break
        msg = await js.get_last_msg(subjects.RATES_STREAM, subject, direct=True)
        return int(json.loads(msg.data)["val"]), heard
    finally:
        await ingress.close()
        await admin.close()


def test_a_copy_fenced_off_gives_back_what_no_newer_copy_carries(two_pipelines: Stack) -> None:
    """A copy sent again before its requester heard that the first was
    admitted is admitted afresh; the first copy, fenced off (by policy or a
    provider, whichever it reaches after the fence), then held a parallel
    slot no one settled: the key was refused (429) until the counter aged
    out, 15 minutes later. Whoever drops it gives it back, unless the fence
    says the newer copy carries it on."""
    before = calls(two_pipelines)
    in_flight, heard = asyncio.run(fenced_copy_leaves(two_pipelines, carries=-1))
    assert (in_flight, heard) == (0, [])  # no provider took it (it would have said so)
    in_flight, heard = asyncio.run(fenced_copy_leaves(two_pipelines, carries=0))
    assert in_flight == 1  # the newer copy carries it on, and its end gives it back
    assert calls(two_pipelines) == before


async def copies_across_a_fence(stack: Stack) -> tuple[list, list]:
    """Copy 0 of a request on a key allowed one request a minute reaches
    policy after the fence for copy 1 (it waited there: a stall, a first
    limited request building its tokenizer), then copy 1 comes: (what the
    requester heard after copy 0, what it heard after copy 1)."""
    ingress = await stack.connect("ingress")
    try:
        request_id, inbox = new_id(), ingress.new_inbox()
        sub = await fence_off(ingress, request_id, inbox, carries=-1)
        headers = {subjects.API_KEY_HEADER: f"Bearer {ONE_RPM_KEY}"}
        heard: tuple[list, list] = ([], [])
        for copy in (0, 1):
            env = copy_of(request_id, inbox, "one a minute", copy=copy)
            await ingress.publish(subjects.FROM_INGRESS, bus.encode(env), headers=headers)
            deadline = time.monotonic() + (2 if copy == 0 else 15)
            while time.monotonic() < deadline and not any(isinstance(r, Final | Failure) for r in heard[copy]):
                with contextlib.suppress(TimeoutError):
                    heard[copy].append(bus.decode_reply((await sub.next_msg(timeout=0.5)).data))
        return heard
    finally:
        await ingress.close()


def test_a_copy_fenced_off_while_it_waits_in_policy_is_not_admitted(two_pipelines: Stack) -> None:
    """Admitted too, the older copy took the key's one request a minute
    (and its budget's units) and the copy that runs was refused: 429."""
    before = calls(two_pipelines)
    after_copy0, after_copy1 = asyncio.run(copies_across_a_fence(two_pipelines))
    assert after_copy0 == []  # dropped at policy, unanswered: not even an Admitted
    ended = after_copy1[-1]
    assert isinstance(ended, Final), after_copy1
    assert any(isinstance(r, Admitted) for r in after_copy1)
    assert calls(two_pipelines) == before + 1
