"""A tenant's moderation guardrail end to end, with the official ``openai``
SDK and a service on the bus, on one Stack: a blocking tenant's flagged
chat is a 400 ``content_flagged`` that never reaches the chat upstream (the
mock's own counts say so) while a clean one answers; a flagging tenant's
flagged chat answers and its flags are in ClickHouse's detections; a bus
caller on ``sluice.v1.in.chat`` is checked as well, whatever it claims; a
moderation upstream that fails closes the door for "block" (503) and leaves
it open for "flag" (the request marked unchecked); the admin API keeps the
setting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest

from schemas import bus, subjects
from schemas.chat import ChatBody, Message
from schemas.envelope import Deployment, Envelope, ModerationCheck
from services.keys import hash_key
from tests.stack import ADMIN_KEY, TASK_MODELS, Stack

KEYS = {tenant: f"sk-test-{tenant}-0123456789" for tenant in ("guarded", "watched", "guarded-dead", "watched-dead")}
# The chat and the moderation each at a named upstream of the mock (its
# by_upstream counts); "dead-mod" at a port nothing listens on.
EXTRA = (
    TASK_MODELS
    + """
[[models]]
name = "guard-chat"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@guard-chat/v1"
upstream_model = "gpt-4o-mini"
api_key_env = ""

[[models]]
name = "guard-mod"
provider = "openai"
base_url = "http://127.0.0.1:{mock}/@guard-mod/v1"
upstream_model = "omni-moderation-latest"
api_key_env = ""

[[models]]
name = "dead-mod"
provider = "openai"
base_url = "http://127.0.0.1:{dead}/v1"
upstream_model = "omni-moderation-latest"
api_key_env = ""

[[tenants]]
id = "guarded"
moderation = {{ model = "guard-mod" }}

[[tenants]]
id = "watched"
moderation = {{ model = "guard-mod", action = "flag" }}

[[tenants]]
id = "guarded-dead"
moderation = {{ model = "dead-mod", action = "block" }}

[[tenants]]
id = "watched-dead"
moderation = {{ model = "dead-mod", action = "flag" }}
"""
    + "".join(f'\n[[keys]]\nid = "{t}"\ntenant = "{t}"\nsha256 = "{hash_key(k)}"\n' for t, k in KEYS.items())
)
FLAGGED = "We attack the castle at dawn"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("guardrail"), timeout_s=10.0, extra_config=EXTRA).start()
    yield s
    s.stop()


def sdk(stack: Stack, tenant: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=KEYS[tenant], max_retries=0, timeout=20)


def seen(stack: Stack, upstream: str) -> int:
    return stack.mock_stats()["by_upstream"].get(upstream, 0)


def detections(stack: Stack, request_id: str) -> list[tuple[str, str, str]]:
    """The request's (detector, action, location) rows, once the sink wrote them."""
    deadline = time.monotonic() + 20
    while not (rows := stack.query("detections", request_id=request_id)["rows"]):
        assert time.monotonic() < deadline, f"no detections recorded for {request_id}"
        time.sleep(0.1)
    return sorted((r[3], r[4], r[5]) for r in rows)


def chat(client: openai.OpenAI, text: str) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="guard-chat", messages=[{"role": "user", "content": text}]
    )


@pytest.mark.timeout(60)
def test_a_blocking_tenants_flagged_chat_is_refused_before_the_chat_upstream(stack: Stack) -> None:
    chats, moderations = seen(stack, "guard-chat"), seen(stack, "guard-mod")
    with sdk(stack, "guarded") as client:
        with pytest.raises(openai.BadRequestError) as refused:
            chat(client, FLAGGED)
        # The Responses API is covered too (its input text, moderated the same way).
        with pytest.raises(openai.BadRequestError) as refused_too:
            client.responses.create(model="guard-chat", input="I will kill the lights [mock:flag=hate]")
        clean = chat(client, "Good morning, what is the capital of France?")
    # And Anthropic's Messages API, refused in its own error shape.
    messages = httpx.post(
        stack.base_url + "/messages",
        headers={"x-api-key": KEYS["guarded"], "anthropic-version": "2023-06-01"},
        json={"model": "guard-chat", "max_tokens": 50, "messages": [{"role": "user", "content": FLAGGED}]},
        timeout=20,
    )
    assert messages.status_code == 400 and messages.json()["type"] == "error", messages.text
    assert (
        messages.json()["error"]["type"] == "invalid_request_error"
        and "violence" in messages.json()["error"]["message"]
    )
    error = refused.value
    assert error.status_code == 400 and error.code == "content_flagged"
    assert "violence" in error.message and "messages[0].content" in error.message and "castle" not in error.message
    assert refused_too.value.code == "content_flagged" and "hate, violence" in refused_too.value.message
    assert clean.parse().choices[0].message.content
    # Three refused without a chat call; the clean one called both.
    assert seen(stack, "guard-chat") == chats + 1 and seen(stack, "guard-mod") == moderations + 4
    request_id = error.response.headers["x-request-id"]
    row = stack.request_row(request_id)
    assert (row["status"], row["error_code"], row["deployment"], row["attempts"]) == (
        400,
        "content_flagged",
        "guard-mod",
        0,
    )
    assert row["prompt_tokens"] > 0 and row["cost_pico_usd"] == 0  # the moderation's count, free
    assert detections(stack, request_id) == [("moderation:violence", "block", "messages[0].content")]
    passed = stack.request_row(clean.headers["x-request-id"])
    assert (passed["status"], passed["deployment"], passed["attempts"]) == (200, "guard-chat", 1)
    assert passed["cost_pico_usd"] > 0


@pytest.mark.timeout(60)
def test_a_flagging_tenants_flagged_chat_answers_and_is_recorded(stack: Stack) -> None:
    chats = seen(stack, "guard-chat")
    with (
        sdk(stack, "watched") as client,
        client.chat.completions.with_streaming_response.create(
            model="guard-chat", messages=[{"role": "user", "content": FLAGGED}], stream=True
        ) as streamed,
    ):
        request_id = streamed.headers["x-request-id"]
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert text and seen(stack, "guard-chat") == chats + 1
    assert detections(stack, request_id) == [("moderation:violence", "flag", "messages[0].content")]
    assert stack.request_row(request_id)["status"] == 200


async def on_the_bus(stack: Stack, env: Envelope, key: str) -> dict:
    """Publish ``env`` as a service would; its last reply."""
    nc = await stack.connect()
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        env.reply = inbox
        await nc.publish(subjects.IN_CHAT, bus.encode(env), headers={"Authorization": f"Bearer {key}"})
        while True:
            reply = msgspec.msgpack.decode((await sub.next_msg(timeout=20)).data)
            if reply["kind"] in ("chat.final", "chat.failure"):
                return reply
    finally:
        await nc.close()


@pytest.mark.timeout(60)
def test_a_bus_caller_is_checked_whatever_its_envelope_claims(stack: Stack) -> None:
    chats = seen(stack, "guard-chat")
    # A caller's own check (a lax action, a moderation "upstream" of its choosing) counts for nothing.
    lax = Deployment(name="lax", provider="openai", base_url="http://127.0.0.1:9/v1", upstream_model="m")
    env = Envelope(
        reply="",
        body=ChatBody(model="guard-chat", messages=[Message(role="user", content=FLAGGED)]),
        moderation=ModerationCheck(model="guard-mod", action="flag", candidates=[lax]),
    )
    reply = asyncio.run(on_the_bus(stack, env, KEYS["guarded"]))
    assert (reply["kind"], reply["status"], reply["code"]) == ("chat.failure", 400, "content_flagged")
    assert seen(stack, "guard-chat") == chats
    assert stack.request_row(reply["id"])["origin"] == "nats"


@pytest.mark.timeout(60)
def test_a_failing_moderation_closes_for_block_and_opens_for_flag(stack: Stack) -> None:
    chats = seen(stack, "guard-chat")
    with sdk(stack, "guarded-dead") as client, pytest.raises(openai.InternalServerError) as closed:
        chat(client, "Good morning")
    assert closed.value.status_code == 503 and closed.value.code == "moderation_unavailable"
    assert seen(stack, "guard-chat") == chats
    with sdk(stack, "watched-dead") as client:
        opened = chat(client, "Good morning")
    assert opened.parse().choices[0].message.content and seen(stack, "guard-chat") == chats + 1
    assert detections(stack, opened.headers["x-request-id"]) == [("moderation:unchecked", "flag", "request")]


@pytest.mark.timeout(60)
def test_the_admin_api_keeps_a_tenants_guardrail(stack: Stack) -> None:
    with httpx.Client(base_url=stack.admin_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=20) as admin:
        made = admin.post("/tenants", json={"id": "moderated", "moderation": {"model": "guard-mod"}})
        assert made.status_code == 201, made.text
        assert made.json()["moderation"] == {
            "model": "guard-mod",
            "action": "block",
            "apis": ["chat", "messages", "responses"],
        }
        changed = admin.patch(
            "/tenants/moderated", json={"moderation": {"model": "guard-mod", "action": "flag", "apis": ["chat"]}}
        )
        assert changed.json()["moderation"] == {"model": "guard-mod", "action": "flag", "apis": ["chat"]}
        assert admin.get("/tenants/moderated").json()["moderation"]["action"] == "flag"
        assert admin.patch("/tenants/moderated", json={"moderation": None}).json()["moderation"] is None
        bad_settings: list[dict[str, Any]] = [
            {"model": "ghost"},
            {"model": "guard-mod", "action": "warn"},
            {"model": "guard-mod", "apis": ["embeddings"]},
            {"model": "guard-mod", "apis": ["chat", "chat"]},
            {"model": "x" * 200},
        ]
        for bad in bad_settings:
            refused = admin.patch("/tenants/moderated", json={"moderation": bad})
            assert refused.status_code == 400, (bad, refused.text)
