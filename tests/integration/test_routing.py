"""Model groups through the whole gateway (real nats-server, two routing
replicas, embedded ClickHouse; one mock process playing several upstreams,
"/@<name>/", each made to fail on demand): failover, shared breakers, weights,
the latency strategy, sticky A/B arms, and streams cut before and after
their first chunk."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from schemas import subjects
from services.cli import cli
from services.keys import hash_key
from tests.stack import DEMO_KEY, Stack
from tests.stack import mock_deployment as deployment

PIN_KEY = "sk-test-pinner-0123456789"
EXTRA = (
    f"""
[[keys]]
id = "pinner"
tenant = "demo"
sha256 = "{hash_key(PIN_KEY)}"
may_pin = true
"""
    + """
[gateway.breaker]
failures_to_open = 3
cooldown_s = 3
probes = 1

[[models]]
name = "pair"
strategy = "priority"
aliases = ["pair-alias"]
retries = 0
"""
    + deployment("pa", priority=0)
    + deployment("pb", priority=1)
    + """
[[models]]
name = "weighted"
"""
    + deployment("wa", weight=80)
    + deployment("wb", weight=20)
    + """
[[models]]
name = "quick"
strategy = "latency"
"""
    + deployment("qa")
    + deployment("qb")
    + """
[[models]]
name = "ab"
split = {{ sa = 50, sb = 50 }}
sticky = "user"
"""
    + deployment("sa")
    + deployment("sb")
    + """
[[models]]
name = "streams"
strategy = "priority"
retries = 0
"""
    + deployment("ta", priority=0)
    + deployment("tb", priority=1)
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("routing"), timeout_s=20, extra_config=EXTRA, replicas={"route": 2}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=20) as c:
        yield c


def upstream(stack: Stack, name: str, directives: str | None) -> None:
    """Make one of the mock's upstreams misbehave (or behave again)."""
    url = f"{stack.mock_url}/mock/upstreams/{name}"
    r = httpx.put(url, json={"directives": directives}) if directives else httpx.delete(url)
    r.raise_for_status()


def calls(stack: Stack) -> Counter[str]:
    return Counter(stack.mock_stats()["by_upstream"])


def routes(stack: Stack) -> dict[str, dict]:
    rows = asyncio.run(_routes(stack))
    return {r["deployment"]: r for r in rows}


async def _routes(stack: Stack) -> list[dict]:
    from services.cli import routes_table

    nc = await stack.connect("admin")
    try:
        return await routes_table.gather(nc)
    finally:
        await nc.close()


def ask(client: openai.OpenAI, model: str, text: str = "hi", **kw: object) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )
    assert raw.parse().choices[0].message.content
    return raw.headers["x-request-id"], raw.headers.get("x-sluice-deployment", "")


def test_a_failing_deployment_is_walked_past_then_its_breaker_opens_for_both_routers_and_closes_again(
    stack: Stack, client: openai.OpenAI
) -> None:
    upstream(stack, "pa", "[mock:status=500]")
    before = calls(stack)
    ids = [ask(client, "pair-alias" if i % 2 else "pair")[0] for i in range(24)]
    during = calls(stack) - before
    # Every request succeeded; "pa" saw 3 failures in a row and was then left
    # alone by both routing replicas (24 requests are shared between them).
    assert during["pb"] == 24 and during["pa"] == 3, during
    first, last = stack.request_row(ids[0]), stack.request_row(ids[-1])
    assert (first["deployment"], first["attempts"], first["model_group"]) == ("pb", 2, "pair")
    assert (last["deployment"], last["attempts"], last["status"]) == ("pb", 1, 200)
    tries = stack.query("attempts", request_id=ids[0])
    rows = [dict(zip(tries["columns"], r, strict=True)) for r in tries["rows"]]
    assert [(r["number"], r["deployment"], r["status"]) for r in rows] == [(1, "pa", 500), (2, "pb", 200)]
    assert "500" in rows[0]["error_message"]
    assert routes(stack)["pa"]["breaker"] == "open"

    upstream(stack, "pa", None)  # recovered
    time.sleep(3.2)  # the cool-down: one probe goes to "pa", succeeds and closes the breaker
    before = calls(stack)
    for _ in range(10):
        ask(client, "pair")
    after = calls(stack) - before
    assert after["pa"] == 10 and after["pb"] == 0, after
    assert routes(stack)["pa"]["breaker"] == "closed"
    # Both routing replicas saw each change; each is one alert event.
    deadline = time.monotonic() + 20
    while True:
        found = stack.query("alerts", minutes=10)
        alerts = [dict(zip(found["columns"], r, strict=True)) for r in found["rows"]]
        mine = sorted(a["alert"] for a in alerts if a["deployment"] == "pa")
        if mine == ["breaker_closed", "breaker_open"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert mine == ["breaker_closed", "breaker_open"], alerts


def test_weighted_80_20_over_1000_requests_lands_within_5_percent(stack: Stack) -> None:
    before = calls(stack)

    async def run() -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=stack.base_url, limits=limits, timeout=30) as http:
            gate = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with gate:
                    r = await http.post(
                        "/chat/completions",
                        headers={"authorization": f"Bearer {DEMO_KEY}"},
                        json={"model": "weighted", "messages": [{"role": "user", "content": f"n{i}"}]},
                    )
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(one(i) for i in range(1000)))

    asyncio.run(run())
    got = calls(stack) - before
    assert got["wa"] + got["wb"] == 1000 and 750 <= got["wa"] <= 850, got


def test_the_latency_strategy_moves_to_the_faster_deployment_after_one_slows_down(
    stack: Stack, client: openai.OpenAI
) -> None:
    for _ in range(6):  # both measured
        ask(client, "quick")
    upstream(stack, "qa", "[mock:latency_ms=150]")
    upstream(stack, "qb", "[mock:latency_ms=5]")
    try:
        for _ in range(6):  # each replica times the slow one at least once
            ask(client, "quick")
        before = calls(stack)
        for _ in range(20):
            ask(client, "quick")
        got = calls(stack) - before
    finally:
        upstream(stack, "qa", None)
        upstream(stack, "qb", None)
    assert got["qb"] >= 18, got


def test_a_sticky_split_keeps_each_user_in_one_arm_and_the_arms_query_compares_them(
    stack: Stack, client: openai.OpenAI
) -> None:
    since_ns = time.time_ns()
    arms: dict[str, set[str]] = {}
    ids = []
    for user in (f"user-{i}" for i in range(12)):
        for _ in range(3):
            request_id, _ = ask(client, "ab", user=user)
            ids.append((user, request_id))
    for user, request_id in ids:
        arms.setdefault(user, set()).add(stack.request_row(request_id)["arm"])
    assert all(len(seen) == 1 for seen in arms.values()), arms
    assert {arm for seen in arms.values() for arm in seen} == {"sa", "sb"}
    result = stack.query("arms", since_ns=since_ns, model_group="ab")
    rows = {r[1]: dict(zip(result["columns"], r, strict=True)) for r in result["rows"]}
    assert set(rows) == {"sa", "sb"} and sum(r["requests"] for r in rows.values()) == len(ids)
    assert all(r["errors"] == 0 and int(r["total_cost_pico_usd"]) > 0 for r in rows.values())


def test_a_stream_cut_before_its_first_chunk_fails_over(stack: Stack, client: openai.OpenAI) -> None:
    upstream(stack, "ta", "[mock:cut_after=0]")
    try:
        before = calls(stack)
        stream = client.chat.completions.create(
            model="streams", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        upstream(stack, "ta", None)
    assert text.startswith("Sluice routes this") and (calls(stack) - before) == {"ta": 1, "tb": 1}


def test_a_stream_cut_after_chunks_were_sent_ends_with_an_error_both_sdks_raise(
    stack: Stack, client: openai.OpenAI
) -> None:
    upstream(stack, "ta", "[mock:cut_after=3]")
    try:
        before = calls(stack)
        received = []
        with pytest.raises(openai.APIError):
            for chunk in client.chat.completions.create(
                model="streams", messages=[{"role": "user", "content": "hi"}], stream=True
            ):
                received += [c.delta.content for c in chunk.choices if c.delta.content]
        assert received  # part of the answer came, then the error: never a clean end
        root = stack.base_url.removesuffix("/v1")
        with (
            anthropic.Anthropic(base_url=root, api_key=DEMO_KEY, max_retries=0) as a,
            pytest.raises(anthropic.APIError),
            a.messages.stream(model="streams", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s,
        ):
            for _ in s.text_stream:
                pass
    finally:
        upstream(stack, "ta", None)
    assert (calls(stack) - before) == {"ta": 2}  # the second deployment was never asked


def test_a_key_that_may_pin_gets_the_deployment_it_names_and_no_other_key_may(
    stack: Stack, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model="pair", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-sluice-deployment": "pb"}
        )
    assert info.value.code == "pin_not_allowed"
    before = calls(stack)
    with openai.OpenAI(base_url=stack.base_url, api_key=PIN_KEY, max_retries=0) as pinner:
        for _ in range(3):
            raw = pinner.chat.completions.with_raw_response.create(
                model="pair", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-sluice-deployment": "pb"}
            )
            assert raw.headers["x-sluice-deployment"] == "pb"
        with pytest.raises(openai.BadRequestError) as outside:
            pinner.chat.completions.create(
                model="pair", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-sluice-deployment": "wa"}
            )
    assert outside.value.code == "unknown_deployment"
    assert (calls(stack) - before) == {"pb": 3}  # "pa" comes first by priority, but was not asked


async def test_a_nats_caller_cannot_bring_its_own_candidates(stack: Stack) -> None:
    """A direct publisher setting candidates (any URL) gets the group's own."""
    from schemas import bus
    from schemas.chat import ChatBody, Message
    from schemas.envelope import Deployment, Envelope
    from schemas.replies import Final

    nc = await stack.connect("svc-demo")
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        evil = Deployment(name="evil", provider="openai", base_url="http://127.0.0.1:9/v1", upstream_model="x")
        env = Envelope(
            reply=inbox,
            body=ChatBody(model="pair", messages=[Message(role="user", content="hi")]),
            candidates=[evil],
            group="elsewhere",
        )
        await nc.publish(subjects.IN_CHAT, bus.encode(env), headers={subjects.API_KEY_HEADER: f"Bearer {DEMO_KEY}"})
        while True:
            reply = bus.decode_reply((await sub.next_msg(timeout=20)).data)
            if isinstance(reply, Final):
                break
        assert reply.deployment in ("pa", "pb") and reply.model_group == "pair"
    finally:
        await nc.close()


async def test_malformed_health_and_cache_messages_harm_no_stage(stack: Stack) -> None:
    from schemas import bus
    from schemas.health import TryOutcome

    pids = stack.supervisor.pids()
    nc = await stack.connect("provider")
    try:
        for junk in (
            b"",
            b"\xc1",
            b"not msgpack at all",
            bus.encode(TryOutcome(deployment="x" * 10_000, ok=False, at_ns=1)),
        ):
            await nc.publish(subjects.HEALTH_ATTEMPT, junk)
            await nc.publish(subjects.CACHE_STORE, junk)
        await nc.flush()
    finally:
        await nc.close()
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as http:
        r = await http.post(
            "/chat/completions",
            headers={"authorization": f"Bearer {DEMO_KEY}"},
            json={"model": "pair", "messages": [{"role": "user", "content": "still there?"}]},
        )
    assert r.status_code == 200
    assert stack.supervisor.pids() == pids  # nothing crashed and was restarted


def test_sluice_routes_prints_the_groups(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["routes", "--nats", stack.nats_url, "--creds", stack.creds()])
    out = capsys.readouterr().out
    assert code == 0
    assert "pair (pair-alias)" in out and "priority" in out and "pa" in out and "ab" in out
