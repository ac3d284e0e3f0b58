"""A caller on NATS is hostile until checked: its times, ids, origin and reply
subject cannot poison analytics, suppress or double rows, or turn a stage into
a publisher on its behalf; and one bad event does not stop the sink."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from schemas import bus, subjects
from schemas.events import EventBatch, RequestEvent
from schemas.ids import new_id
from tests.stack import DEMO_KEY, PRIVATE_KEY, REDACT_KEY, Stack

AUTH = {"Authorization": f"Bearer {DEMO_KEY}"}


def chat_request(reply: str, **fields: object) -> bytes:
    body = {"model": "demo-model", "messages": [{"role": "user", "content": "Hi [mock:chunks=2]"}]}
    return msgspec.msgpack.encode({"kind": "chat.request", "reply": reply, "body": body} | fields)


async def ask(stack: Stack, payload: Callable[[str], bytes], *, headers: dict | None = AUTH) -> dict:
    """Publish ``payload(inbox)`` and return the first reply on that inbox."""
    nc = await stack.connect()
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subjects.IN_CHAT, payload(inbox), headers=headers)
        return msgspec.msgpack.decode((await sub.next_msg(timeout=10)).data)
    finally:
        await nc.close()


async def test_hostile_times_and_origin_are_replaced_and_the_row_lands(stack: Stack) -> None:
    before = time.time_ns()
    final = await ask(
        stack, lambda inbox: chat_request(inbox, origin="http", received_at_ns=2**64 - 1, deadline_ns=2**63)
    )
    assert final["kind"] == "chat.final"
    row = await asyncio.to_thread(stack.request_row, final["id"])
    assert row["origin"] == "nats"  # claiming "http" does not suppress the row
    assert row["status"] == 200 and row["completion_tokens"] == 2
    # The row's time is the gateway's (ts comes back as JSON text: "2026-11-27 11:54:03.123456789").
    ts = datetime.fromisoformat(row["ts"][:26]).replace(tzinfo=UTC).timestamp()
    assert before / 1e9 - 1 <= ts <= time.time()


async def test_a_reused_request_id_is_refused_and_each_request_has_its_own_row(stack: Stack) -> None:
    chosen = new_id()
    first = await ask(stack, lambda inbox: chat_request(inbox, id=chosen))
    second = await ask(stack, lambda inbox: chat_request(inbox, id=chosen))
    assert (first["kind"], first["id"]) == ("chat.final", chosen)
    assert (second["kind"], second["status"], second["code"]) == ("chat.failure", 409, "request_id_reused")
    assert second["id"] != chosen  # the refusal is recorded under an id of its own
    assert (await asyncio.to_thread(stack.request_row, first["id"]))["status"] == 200
    assert (await asyncio.to_thread(stack.request_row, second["id"]))["status"] == 409


async def test_an_undecodable_request_is_answered_where_it_asks(stack: Stack) -> None:
    # A map that names its inbox but whose body is not a chat body.
    failure = await ask(
        stack, lambda inbox: msgspec.msgpack.encode({"kind": "chat.request", "reply": inbox, "body": {"model": 5}})
    )
    assert failure["kind"] == "chat.failure" and failure["status"] == 400 and failure["code"] == "invalid_envelope"
    row = await asyncio.to_thread(stack.request_row, failure["id"])
    assert row["status"] == 400 and row["origin"] == "nats"

    # Not even msgpack: the NATS request's own reply subject gets the answer.
    nc = await stack.connect()
    try:
        msg = await nc.request(subjects.IN_CHAT, b"\xc1\xc1 garbage", timeout=10)
    finally:
        await nc.close()
    assert bus.decode_reply(msg.data).status == 400


async def test_a_stage_never_publishes_onto_a_subject_a_caller_names(stack: Stack) -> None:
    nc, watcher = await stack.connect(), await stack.connect("admin")
    try:
        spy = await watcher.subscribe("sluice.v1.stage.>")
        await watcher.flush()
        own = nc.new_inbox()
        own_sub = await nc.subscribe(own)
        # Policy may publish onto stage subjects; a reply aimed there must not make it.
        await nc.publish(subjects.IN_CHAT, chat_request("sluice.v1.stage.call"), headers=AUTH, reply=own)
        failure = msgspec.msgpack.decode((await own_sub.next_msg(timeout=10)).data)
        assert failure["status"] == 400 and "reply" in failure["message"]
        await asyncio.sleep(0.5)
        assert spy.pending_msgs == 0
    finally:
        await nc.close()
        await watcher.close()


async def test_a_poison_event_is_dead_lettered_and_later_rows_keep_landing(stack: Stack) -> None:
    poison = RequestEvent(
        event_id=new_id(),
        request_id="poison-" + new_id(),
        received_at_ns=2**64 - 1,
        origin="nats",
        api="chat",
        model="m",
        status=200,
    )
    nc = await stack.connect("provider")  # a stage with a bug: only stages may publish events
    try:
        batch = EventBatch(id=new_id(), events=[poison])
        await nc.jetstream().publish(subjects.events("provider"), bus.encode(batch), headers={"Nats-Msg-Id": batch.id})
        await nc.jetstream().publish(subjects.events("provider"), b"\x93 not an event batch")
    finally:
        await nc.close()
    for _ in range(3):  # rows published after the poison land
        final = await ask(stack, chat_request)
        assert (await asyncio.to_thread(stack.request_row, final["id"]))["status"] == 200
    dead = await asyncio.to_thread(stack.query, "dead_letters", minutes=10)
    assert dead["error"] is None
    by_request = {row[dead["columns"].index("request_id")]: row for row in dead["rows"]}
    assert poison.request_id in by_request
    assert "received_at_ns" in by_request[poison.request_id][dead["columns"].index("reason")]
    reasons = [row[dead["columns"].index("reason")] for row in dead["rows"]]
    assert any(r.startswith("undecodable event batch") for r in reasons)
    alerts = await asyncio.to_thread(stack.query, "alerts", minutes=10)
    assert any(row[0] == poison.request_id and row[2] == "dead_letter" for row in alerts["rows"])


async def test_a_caller_cannot_turn_on_call_logs_for_a_tenant_that_did_not_opt_in(stack: Stack) -> None:
    final = await ask(stack, lambda inbox: chat_request(inbox, call_log_max_bytes=100_000))
    assert final["kind"] == "chat.final"
    await asyncio.to_thread(stack.request_row, final["id"])
    await asyncio.sleep(1.0)  # a call log would have come in the row's batch
    result = await asyncio.to_thread(stack.query, "call_logs", request_id=final["id"])
    assert result["error"] is None and result["rows"] == []


async def test_a_caller_cannot_plant_a_vault_or_turn_output_checks_off(stack: Stack) -> None:
    # A planted vault would have the gateway write the caller's text into the answer as "restored",
    # for a tenant with rules (whose stage makes its own) and one without (which has no stage).
    said = "say [EMAIL_9] as is [mock:echo]"
    for key in (PRIVATE_KEY, DEMO_KEY):
        final = await ask(
            stack,
            lambda inbox: chat_request(
                inbox,
                body={"model": "demo-model", "messages": [{"role": "user", "content": said}]},
                privacy={"vault": {"[EMAIL_9]": "planted@example.com"}},
            ),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert final["kind"] == "chat.final" and final["message"]["content"] == said

    # Tenant "careful" checks answers for keys: a caller saying "no checks" changes nothing.
    key = "sk-proj-" + "Qw8_" * 12
    final = await ask(
        stack,
        lambda inbox: chat_request(
            inbox,
            body={"model": "demo-model", "messages": [{"role": "user", "content": f"{key} [mock:echo]"}]},
            privacy={"output": {}, "version": 99},
        ),
        headers={"Authorization": f"Bearer {REDACT_KEY}"},
    )
    assert final["message"]["content"] == "[REDACTED:secret] [mock:echo]"
