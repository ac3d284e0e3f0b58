"""A sweep of bad input over every front door: random bytes, truncated JSON
and msgpack, huge and deeply nested documents, wrong types and invalid
UTF-8, on every HTTP endpoint and on every ``sluice.v1.in.*`` subject (and
the jobs queue). Never a 5xx, never a crashed, restarted or stuck process:
afterwards every process is the one that was there before, and a good
request still gets its answer over HTTP and over the bus."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from schemas import bus, subjects
from schemas.chat import ChatBody, Message
from schemas.envelope import Envelope
from services.bus.client import SluiceClient
from tests.stack import ADMIN_KEY, DEMO_KEY, Stack

SEED = 14
PER_TARGET = 30  # bodies per endpoint; the whole sweep stays under a minute
POSTS = ("/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/apis/summarize", "/admin/v1/keys")
GETS = ("/v1/models", "/healthz", "/readyz", "/metrics", "/openapi.json", "/admin/v1/keys", "/admin/v1/usage")
VALID = {"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
WRONG_TYPES = [
    {"model": 5, "messages": VALID["messages"]},
    {"model": "demo-model", "messages": "hi"},
    {"model": "demo-model", "messages": [{"role": 1, "content": {"a": []}}]},
    {"model": "demo-model", "messages": [[]], "stream": "yes"},
    {**VALID, "max_tokens": "a", "temperature": []},
    {**VALID, "n": -1, "top_p": {"x": 1}},
    {**VALID, "max_tokens": 10**30},
    {**VALID, "tools": [{"type": "function", "function": None}]},
    {"input": {"nested": True}, "model": ["demo-model"]},
    {"variables": 7},
    [],
    "a string",
    None,
]


def mangled(rng: random.Random, good: bytes) -> Iterator[bytes]:
    """Without end: random bytes, ``good`` cut short, ``good`` with bytes changed."""
    while True:
        kind = rng.randrange(3)
        if kind == 0:
            yield rng.randbytes(rng.randrange(1, 4096))
        elif kind == 1:
            yield good[: rng.randrange(1, len(good))]
        else:
            cut = bytearray(good)
            for _ in range(rng.randrange(1, 6)):
                cut[rng.randrange(len(cut))] = rng.randrange(256)
            yield bytes(cut)


def hostile_bodies(rng: random.Random) -> Iterator[bytes]:
    valid = json.dumps(VALID).encode()
    for case in WRONG_TYPES:
        yield json.dumps(case).encode()
    yield b"[" * 200_000 + b"]" * 200_000
    yield b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    yield b'{"model": "demo-model", "messages": [{"role": "user", "content": "' + b"x" * 70_000 + b'"}]}'
    yield b'{"model": "\xff\xfe\xfd", "messages": [{"role": "user", "content": "\xc3\x28"}]}'
    yield b'{"model": "demo-model", "messages": [{"role": "user", "content": "\\ud800"}]}'
    yield b'{"model": "demo-model", "temperature": NaN, "messages": []}'
    yield b"1e999999"
    yield b""
    yield from mangled(rng, valid)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("sweep")), timeout_s=10).start()
    yield s
    s.stop()


def assert_still_serving(stack: Stack, before: dict[str, int]) -> None:
    assert stack.supervisor.pids() == before, "a process died or was replaced"
    assert not stack.supervisor.restarts, stack.supervisor.restarts
    r = httpx.post(
        f"{stack.base_url}/chat/completions", json=VALID, headers={"authorization": f"Bearer {DEMO_KEY}"}, timeout=20
    )
    assert r.status_code == 200, r.text


def test_bad_http_input_never_gets_a_5xx(swept: Stack) -> None:
    before = swept.supervisor.pids()
    rng = random.Random(SEED)
    root = swept.base_url.removesuffix("/v1")
    seen: dict[int, int] = {}
    with httpx.Client(base_url=root, timeout=30) as http:
        for path in POSTS:
            key = ADMIN_KEY if path.startswith("/admin") else DEMO_KEY
            bodies = hostile_bodies(rng)
            for _ in range(PER_TARGET):
                body = next(bodies)
                for content_type in ("application/json", "text/plain; charset=utf-8"):
                    r = http.post(
                        path, content=body, headers={"authorization": f"Bearer {key}", "content-type": content_type}
                    )
                    seen[r.status_code] = seen.get(r.status_code, 0) + 1
                    assert r.status_code < 500, (path, body[:200], r.status_code, r.text[:300])
                    if r.status_code >= 400:
                        assert "error" in r.json() or r.json().get("type") == "error", r.text[:300]
        for path in GETS:
            junk = rng.randbytes(64).hex()
            r = http.get(f"{path}?{junk}=%ff%fe&limit=-1&since=x", headers={"authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code < 500, (path, r.status_code, r.text[:300])
    assert seen.get(200, 0) < sum(seen.values()) / 2, seen  # the sweep was mostly refused, as it should be
    assert_still_serving(swept, before)


def bus_payloads(rng: random.Random) -> Iterator[bytes]:
    env = Envelope(
        id="x",
        reply="_INBOX.svc.demo.sweep",
        body=ChatBody(model="demo-model", messages=[Message(role="user", content="hi")]),
    )
    good = bus.encode(env)
    yield msgspec.msgpack.encode({"type": "envelope", "id": 5, "body": "no", "slip": [1, 2]})
    yield msgspec.msgpack.encode({"type": "envelope", "reply": "sluice.v1.stage.call", "body": {"messages": 1}})
    yield msgspec.msgpack.encode([[[[[[[[[[[]]]]]]]]]]] * 1000)
    yield b"\xd9\x05\xff\xfe\xfd\xfc\xfb"  # a msgpack str of invalid UTF-8
    yield b"\xdd\xff\xff\xff\xff"  # an array claiming 4 billion items
    yield json.dumps({"variables": {"text": 1}, "stream": "no"}).encode()
    yield b"\x91" * 100_000 + b"\xc0"
    yield from mangled(rng, good)


async def _sweep_bus(stack: Stack, rng: random.Random) -> int:
    nc = await stack.connect("svc-demo")
    answered = 0

    async def on_answer(msg) -> None:
        nonlocal answered
        answered += 1

    await nc.subscribe("_INBOX.svc.demo.>", cb=on_answer)
    targets = [subjects.IN_CHAT, f"{subjects.IN_API}.summarize", subjects.IN_CANCEL, f"{subjects.JOBS}.chat"]
    try:
        for subject in targets:
            payloads = bus_payloads(rng)
            for _ in range(PER_TARGET * 2):
                headers = {subjects.API_KEY_HEADER: f"Bearer {DEMO_KEY}"} if rng.random() < 0.5 else None
                await nc.publish(subject, next(payloads), reply="_INBOX.svc.demo.sweep", headers=headers)
        await nc.flush()
        await asyncio.sleep(2)  # the stages work through what was sent
        client = SluiceClient(nc, DEMO_KEY)
        answer = await client.request(ChatBody(model="demo-model", messages=[Message(role="user", content="still?")]))
        assert answer.message is not None and answer.message.content
    finally:
        await nc.close()
    return answered


def test_bad_bus_input_crashes_nothing(swept: Stack) -> None:
    before = swept.supervisor.pids()
    answered = asyncio.run(_sweep_bus(swept, random.Random(SEED)))
    # Requests that name an inbox are answered there (with a failure), not dropped in silence.
    assert answered > 0
    assert_still_serving(swept, before)
