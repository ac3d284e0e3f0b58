"""The walk over candidate deployments, against httpx.MockTransport upstreams:
fallbacks, retries with backoff and Retry-After, the context-length move,
and no second answer once a stream reached the client."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import httpx
import pytest

from schemas.chat import ChatBody, Delta, Message
from schemas.envelope import Deployment
from services.providers.attempts import Try, Walk, WalkFailed, backoff_s
from services.providers.call import CallProgress, OnDelta, call_chat
from services.providers.http import UpstreamHTTP

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"
BODY = ChatBody(model="g", messages=[Message(role="user", content="hi")])
COMPLETION = (FIXTURES / "completion.json").read_bytes()
STREAM = (FIXTURES / "stream.txt").read_bytes()


def dep(name: str) -> Deployment:
    return Deployment(name=name, provider="openai", base_url=f"http://{name}.test/v1", upstream_model="gpt-4o-mini")


class Upstreams:
    """One mock transport; each host answers from its own script, the last
    entry repeating: an int is an error status, "ok" a completion, "stream"
    a whole stream, "cut" a stream that stops after its first chunks,
    "refuse" a connection error."""

    def __init__(self, scripts: dict[str, list[str | int]], retry_after: str | None = None) -> None:
        self.scripts = scripts
        self.retry_after = retry_after
        self.calls: list[str] = []
        self.client = UpstreamHTTP(httpx.MockTransport(self._answer))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.removesuffix(".test")
        self.calls.append(host)
        script = self.scripts[host]
        step = script.pop(0) if len(script) > 1 else script[0]
        if step == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if isinstance(step, int):
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            error = b'{"error": {"message": "nope", "type": "x", "code": "context_length_exceeded"}}'
            return httpx.Response(
                step, content=error if step == 400 else b'{"error": {"message": "nope"}}', headers=headers
            )
        if step == "ok":
            return httpx.Response(200, content=COMPLETION)
        body = STREAM if step == "stream" else b"\n\n".join(STREAM.split(b"\n\n")[:3]) + b"\n\n"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    def call(self, d: Deployment, progress: CallProgress, on_delta: OnDelta | None):
        return call_chat(self.client, d, BODY, on_delta=on_delta, progress=progress)


async def walk_through(walk: Walk, up: Upstreams, on_delta: OnDelta | None = None) -> list[Try]:
    tries: list[Try] = []

    async def on_try(t: Try) -> None:
        tries.append(t)

    async with contextlib.aclosing(up.client):
        try:
            await walk.run(up.call, on_try, on_delta)
        finally:
            assert tries == walk.tries  # every try was reported, in order
    return tries


async def no_sleep(_: float) -> None:
    pass


@pytest.mark.parametrize("failure", [500, 429, 503, 401, "refuse"])
async def test_a_failing_first_deployment_falls_over_to_the_second(failure: int | str) -> None:
    up = Upstreams({"a": [failure], "b": ["ok"]})
    walk = Walk([dep("a"), dep("b")], sleep=no_sleep)
    tries = await walk_through(walk, up)
    assert up.calls == ["a", "b"]
    assert [(t.number, t.deployment.name) for t in tries] == [(1, "a"), (2, "b")]
    assert tries[0].error is not None and tries[1].status == 200 and walk.current.name == "b"


async def test_the_callers_own_mistake_is_not_retried_anywhere() -> None:
    up = Upstreams({"a": [422], "b": ["ok"]})
    with pytest.raises(WalkFailed) as info:
        await walk_through(Walk([dep("a"), dep("b")], sleep=no_sleep), up)
    assert up.calls == ["a"] and info.value.error.status == 422


async def test_after_a_failed_round_it_waits_and_goes_round_again() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    up = Upstreams({"a": [503, 429, "ok"], "b": [429]}, retry_after="2")
    tries = await walk_through(Walk([dep("a"), dep("b")], retries=2, sleep=sleep, rng=random.Random(1)), up)
    assert up.calls == ["a", "b", "a", "b", "a"] and tries[-1].status == 200
    assert len(waits) == 2 and all(w >= 2.0 for w in waits)  # Retry-After is a floor


async def test_retries_end_with_the_last_error() -> None:
    up = Upstreams({"a": [503]})
    with pytest.raises(WalkFailed) as info:
        await walk_through(Walk([dep("a")], retries=1, sleep=no_sleep), up)
    assert up.calls == ["a", "a"] and info.value.error.status == 503 and info.value.last.number == 2


async def test_no_wait_is_started_that_would_end_past_the_deadline() -> None:
    import time

    up = Upstreams({"a": [503]}, retry_after="20")
    walk = Walk([dep("a")], retries=3, deadline_ns=time.time_ns() + 1_000_000_000, sleep=no_sleep)
    with pytest.raises(WalkFailed):
        await walk_through(walk, up)
    assert up.calls == ["a"]


async def test_a_context_length_error_moves_to_the_larger_group_once() -> None:
    up = Upstreams({"small": [400], "big": ["ok"], "other": ["ok"]})
    walk = Walk([dep("small"), dep("other")], context_candidates=[dep("big")], sleep=no_sleep)
    await walk_through(walk, up)
    assert up.calls == ["small", "big"]


async def test_a_stream_cut_before_its_first_chunk_reached_the_client_falls_over() -> None:
    got: list[Delta] = []

    async def on_delta(d: Delta, model: str) -> None:
        got.append(d)

    up = Upstreams({"a": [500], "b": ["stream"]})
    await walk_through(Walk([dep("a"), dep("b")], sleep=no_sleep), up, on_delta)
    assert "".join(d.content or "" for d in got) == "Hello there"


async def test_a_stream_cut_after_chunks_reached_the_client_is_not_answered_twice() -> None:
    got: list[Delta] = []

    async def on_delta(d: Delta, model: str) -> None:
        got.append(d)

    up = Upstreams({"a": ["cut"], "b": ["stream"]})
    walk = Walk([dep("a"), dep("b")], retries=2, sleep=no_sleep)
    with pytest.raises(WalkFailed) as info:
        await walk_through(walk, up, on_delta)
    assert up.calls == ["a"] and got and walk.delivered
    assert info.value.error.status == 502


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    rng = random.Random(7)
    assert all(0 <= backoff_s(0, 0, rng) <= 0.25 for _ in range(100))
    assert all(0 <= backoff_s(10, 0, rng) <= 8.0 for _ in range(100))
    assert backoff_s(0, 3.0, rng) == 3.0
    assert backoff_s(0, 3600, rng) == 30.0  # a Retry-After of an hour is not waited for
