"""REST services where their promises break: two pipeline replicas (the
cluster default), an upstream that takes seconds, the provider holding a
call SIGKILLed mid-request, a client that leaves. Each case compares what
the upstream saw (the mock's own counts) with the rows ClickHouse holds.

Which replica holds a call is heard on the bus, as the ingress hears it:
the provider's ``Accepted`` (written before the upstream is called) names
its process. The test listens to the ingress's inboxes as the gateway's
admin and SIGKILLs exactly that process.

The fence protocol's promise: a call whose provider died holding it is
never sent again by another replica (the holder may have reached the
upstream); its caller gets a 502 ``worker_died`` at once, not at its
deadline, and the ingress writes its one row."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import msgspec
import pytest

from schemas import bus, subjects
from schemas.replies import Accepted
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

# Processes killed mid-call and answers held to time bounds, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

DOC = {
    "openapi": "3.1.0",
    "info": {"title": "Faults", "version": "1"},
    "paths": {"/slow": {}, "/download": {}, "/sse": {}},
}
# The Stack formats its config ({mock}): the document's and the TOML's braces doubled.
_DOC_TEXT = json.dumps(DOC).replace("{", "{{").replace("}", "}}")
SERVICES = f"""
[[services]]
slug = "faults"
openapi = '{_DOC_TEXT}'
instances = [{{{{ url = "http://127.0.0.1:{{mock}}/rest/echo" }}}}]
"""
SLOW_MS = 3000
MB = 1024 * 1024
# A caller whose provider died hears so within this (the supervisor notices
# an exit within a tick, 0.1 s); far below the call's deadline (65 s).
ANSWER_BOUND_S = 5.0
# A killed replica's replacement serves again within this.
RESTART_BOUND_S = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("rest_faults"), timeout_s=30, extra_config=SERVICES, replicas={"provider": 2})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def since() -> int:
    """When the module's first call was made: the raw table must hold no second row of any call since."""
    return time.time_ns()


class Heard:
    """What the test hears on the bus: the process that took each call (by
    request id), and the processes that said they are ready since."""

    def __init__(self) -> None:
        self.holder: dict[str, str] = {}
        self.ready: list[str] = []


@contextlib.asynccontextmanager
async def listening(stack: Stack) -> AsyncIterator[Heard]:
    nc = await stack.connect("admin")
    heard = Heard()

    async def on_reply(msg) -> None:  # type: ignore[no-untyped-def]
        if len(msg.data) > 512:  # a slice of a body: only the small progress replies matter here
            return
        with contextlib.suppress(msgspec.DecodeError):
            reply = bus.decode_reply(msg.data)
            if isinstance(reply, Accepted):
                heard.holder[reply.id] = reply.worker

    async def on_ready(msg) -> None:  # type: ignore[no-untyped-def]
        heard.ready.append(msg.subject.rsplit(".", 1)[1])

    await nc.subscribe("_INBOX.ingress.>", cb=on_reply, pending_bytes_limit=256 * MB)
    await nc.subscribe(f"{subjects.CONTROL_READY}.*", cb=on_ready)
    await nc.flush()
    try:
        yield heard
    finally:
        await nc.close()


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def rest_stats(stack: Stack) -> dict:
    return stack.mock_stats()["rest"]


async def mock_calls(stack: Stack, name: str) -> int:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"{stack.mock_url}/mock/stats")).json()["rest"]["calls"].get(name, 0)


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The answer, and when it came."""
    answer = await call
    return answer, time.monotonic()


def caller(stack: Stack, timeout: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.layout.http_port}/services/faults",
        headers={"authorization": f"Bearer {DEMO_KEY}"},
        timeout=timeout,
    )


async def kill_and_wait_for_replacement(stack: Stack, heard: Heard, name: str) -> float:
    """SIGKILL ``name``; return when its replacement said it is ready (both
    replicas serve the next case). Returns when the kill was sent."""
    ready_before = heard.ready.count(name)
    os.kill(stack.supervisor.pids()[name], signal.SIGKILL)
    killed_at = time.monotonic()

    async def replaced() -> bool:
        return heard.ready.count(name) > ready_before

    await until(replaced, RESTART_BOUND_S, f"{name} to be replaced")
    return killed_at


def assert_one_row(stack: Stack, request_id: str, since_ns: int) -> dict:
    """The call's row, and no second one (the raw table, not FINAL, where a merge would hide it)."""
    row = stack.request_row(request_id)
    assert len(stack.query("request", request_id=request_id)["rows"]) == 1
    duplicates = stack.query("duplicate_rows", since_ns=since_ns)
    assert duplicates["error"] is None and duplicates["rows"] == [[0, 0]], duplicates
    return row


def test_ten_calls_to_a_slow_upstream_through_both_replicas_are_each_sent_once(stack: Stack, since: int) -> None:
    """Ten GETs at once to an upstream that takes 3 s: nothing is resent
    while they wait (each was taken, ``Accepted``), so the upstream counts ten."""
    before = rest_stats(stack)["calls"].get("GET /slow", 0)

    async def go() -> tuple[list[httpx.Response], dict[str, str]]:
        async with listening(stack) as heard, caller(stack) as client:
            answers = await asyncio.gather(*(client.get("/slow", params={"ms": SLOW_MS, "n": i}) for i in range(10)))
            return list(answers), dict(heard.holder)

    answers, holder = asyncio.run(go())
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers if a.status_code != 200]
    ids = [a.headers["x-request-id"] for a in answers]
    # Which replica took each (the queue group spreads them): every call was taken by one.
    assert set(holder) >= set(ids) and set(holder.values()) <= {"pipeline", "pipeline-1"}, holder
    assert rest_stats(stack)["calls"]["GET /slow"] - before == 10
    for request_id in ids:
        row = assert_one_row(stack, request_id, since)
        assert (row["status"], row["http_method"], row["route"], row["attempts"]) == (200, "GET", "/slow", 1)
        assert row["latency_ns"] >= SLOW_MS * 1_000_000


def test_a_client_that_leaves_mid_sse_ends_the_stream_upstream(stack: Stack, since: int) -> None:
    cancelled = rest_stats(stack)["cancelled"]

    async def go() -> str:
        async with caller(stack) as client, client.stream("GET", "/sse", params={"events": 100, "gap_ms": 100}) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            events = 0
            async for line in resp.aiter_lines():
                events += line.startswith("data: ")
                if events == 2:
                    break
            return resp.headers["x-request-id"]

    request_id = asyncio.run(go())  # the client closed its connection after two of a hundred events
    deadline = time.monotonic() + 10
    while rest_stats(stack)["cancelled"] == cancelled:
        assert time.monotonic() < deadline, "the upstream's event stream kept going after its client left"
        time.sleep(0.05)
    row = assert_one_row(stack, request_id, since)
    # 499: the client closed the request (the upstream had answered 200).
    assert (row["client_disconnected"], row["route"], row["status"]) == (1, "/sse", 499)
    # The bytes relayed before the client left: the two events it read, nothing like a hundred.
    assert 0 < row["response_bytes"] < 20 * 100


def test_a_post_whose_provider_is_killed_at_the_upstream_is_never_sent_again(stack: Stack, since: int) -> None:
    before = rest_stats(stack)["calls"].get("POST /slow", 0)

    async def go() -> tuple[httpx.Response, str, float]:
        async with listening(stack) as heard, caller(stack) as client:
            sent = asyncio.create_task(timed(client.post("/slow", params={"ms": SLOW_MS}, content=b'{"order": 1}')))

            async def at_upstream() -> bool:
                return len(heard.holder) == 1 and await mock_calls(stack, "POST /slow") > before

            await until(at_upstream, 10, "the POST to reach the upstream")
            (holder,) = heard.holder.values()
            killed_at = await kill_and_wait_for_replacement(stack, heard, holder)
            # The wait for the replacement also gave any second copy the time to reach the mock.
            answer, answered_at = await asyncio.wait_for(sent, ANSWER_BOUND_S)
            return answer, holder, answered_at - killed_at

    answer, holder, took = asyncio.run(go())
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "worker_died", (holder, answer.text)
    assert took < ANSWER_BOUND_S, f"answered {took:.1f}s after the kill"
    # The upstream saw the POST once: no other replica sent it again after the kill.
    assert rest_stats(stack)["calls"]["POST /slow"] - before == 1
    row = assert_one_row(stack, answer.headers["x-request-id"], since)
    assert (row["status"], row["error_code"], row["http_method"], row["route"]) == (502, "worker_died", "POST", "/slow")
    assert row["request_bytes"] == len(b'{"order": 1}')


def test_a_get_whose_provider_is_killed_ends_cleanly_and_the_rows_agree_with_the_upstream(
    stack: Stack, since: int
) -> None:
    """A GET may be sent again (it is idempotent), but the provider that
    died had it: the requester knows it was taken and does not know whether
    the upstream answered. Either way its caller gets an answer or a clean
    error in time, and what the upstream counted is what the row says."""
    before = rest_stats(stack)["calls"].get("GET /slow", 0)

    async def go() -> tuple[httpx.Response, float]:
        async with listening(stack) as heard, caller(stack) as client:
            sent = asyncio.create_task(timed(client.get("/slow", params={"ms": SLOW_MS})))

            async def at_upstream() -> bool:
                return len(heard.holder) == 1 and await mock_calls(stack, "GET /slow") > before

            await until(at_upstream, 10, "the GET to reach the upstream")
            (holder,) = heard.holder.values()
            assert not sent.done(), "answered before the upstream did"
            killed_at = await kill_and_wait_for_replacement(stack, heard, holder)
            answer, answered_at = await asyncio.wait_for(sent, SLOW_MS / 1000 + ANSWER_BOUND_S)
            return answer, answered_at - killed_at

    answer, took = asyncio.run(go())
    seen = rest_stats(stack)["calls"]["GET /slow"] - before
    row = assert_one_row(stack, answer.headers["x-request-id"], since)
    if answer.status_code == 200:  # sent again after the kill: the first copy was cut, the second answered
        assert (seen, row["status"]) == (2, 200), (seen, row)
    else:
        code = answer.json()["error"]["code"]
        assert (answer.status_code, code) == (502, "worker_died"), answer.text
        assert seen == 1, f"ended as {code} but the upstream saw it {seen} times"
        assert (row["status"], row["error_code"]) == (502, code)
    # An error at once; an answer once the upstream gave one to the copy sent again.
    assert took < SLOW_MS / 1000 + ANSWER_BOUND_S, f"answered {took:.1f}s after the kill"


def test_a_download_whose_provider_is_killed_is_cut_not_held(stack: Stack, since: int) -> None:
    cancelled = rest_stats(stack)["cancelled"]

    async def go() -> tuple[str, int, BaseException | None, float]:
        async with listening(stack) as heard, caller(stack) as client:
            async with client.stream("GET", "/download", params={"mb": 200, "chunked": 1}) as resp:
                assert resp.status_code == 200
                request_id = resp.headers["x-request-id"]
                parts = resp.aiter_raw()
                read = 0
                async for part in parts:
                    read += len(part)
                    if read >= MB:
                        break

                async def taken() -> bool:
                    return request_id in heard.holder

                await until(taken, 5, "the download's Accepted")
                holder = heard.holder[request_id]
                os.kill(stack.supervisor.pids()[holder], signal.SIGKILL)
                killed_at = time.monotonic()
                cut: BaseException | None = None

                async def rest_of_it() -> None:
                    nonlocal read
                    async for part in parts:
                        read += len(part)

                try:
                    await asyncio.wait_for(rest_of_it(), ANSWER_BOUND_S)
                except httpx.HTTPError as exc:  # the body ended before its end: the response was cut
                    cut = exc
                took = time.monotonic() - killed_at

            async def replaced() -> bool:
                return heard.ready.count(holder) > 0

            await until(replaced, RESTART_BOUND_S, f"{holder} to be replaced")
            return request_id, read, cut, took

    request_id, read, cut, took = asyncio.run(go())
    assert cut is not None, f"the download ended as if whole after {read} bytes"
    assert read < 200 * MB and took < ANSWER_BOUND_S
    # The provider's connection to the upstream died with it: the upstream's stream ended there.
    deadline = time.monotonic() + 10
    while rest_stats(stack)["cancelled"] == cancelled:
        assert time.monotonic() < deadline, "the upstream kept sending the download after its provider died"
        time.sleep(0.05)
    row = assert_one_row(stack, request_id, since)
    assert (row["status"], row["error_code"], row["route"]) == (502, "worker_died", "/download")
    # What the ingress wrote to the client before the cut: at least what the client read.
    assert read <= row["response_bytes"] < 200 * MB


def test_the_dashboard_s_rest_panel_counts_what_the_rows_hold(stack: Stack) -> None:
    """After the cases above (the module's calls are the service's only ones)."""
    panels = httpx.get(
        f"http://127.0.0.1:{stack.layout.http_port}/dashboard/api/panels",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=20,
    )
    assert panels.status_code == 200, panels.text
    rows = {(r["service"], r["method"], r["route"]): r for r in panels.json()["rest"]}
    post = rows[("faults", "POST", "/slow")]
    assert (post["calls"], post["errors"]) == (1, 1)  # the one killed
    get = rows[("faults", "GET", "/slow")]
    assert get["calls"] == 11 and 0 <= get["errors"] <= 1  # ten answered, and the one killed
    assert get["latency_ms"][1] >= SLOW_MS
