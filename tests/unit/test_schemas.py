"""The wire contract: round trips, and a snapshot that changes only on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from schemas import bus
from schemas.cache import CachedAnswer, CacheStore
from schemas.chat import ChatBody, Delta, Message, Usage
from schemas.control import ApiKey, ApprovalRule, ModelRoute, Subscription, Tenant
from schemas.envelope import Envelope, Span
from schemas.events import EventBatch, RequestEvent
from schemas.health import BreakerRecord, TryOutcome
from schemas.ids import new_id
from schemas.prompt_calls import ApiAnswer, ApiCall
from schemas.prompts import Prompt, PromptVersion
from schemas.replies import Cancel, Chunk, Failure, Final

SNAPSHOT = Path(__file__).parents[2] / "schemas" / "snapshot.json"


def current_schema() -> dict:
    """Everything stages share: bus messages, the health outcomes and breaker
    records, and the control records they read from KV."""
    shared = [
        *(bus.AnyMessage, TryOutcome, BreakerRecord, CacheStore, CachedAnswer, ApiCall, ApiAnswer),
        *(ModelRoute, ApiKey, Tenant, Subscription, ApprovalRule, Prompt, PromptVersion),
    ]
    schemas, components = msgspec.json.schema_components(shared, ref_template="#/$defs/{name}")
    return {"anyOf": schemas[0]["anyOf"], "others": list(schemas[1:]), "$defs": components}


def test_wire_contract_matches_the_reviewed_snapshot() -> None:
    """Changing a Struct on the bus changes this snapshot. Regenerate it with
    SLUICE_UPDATE_SNAPSHOT=1 and review the diff: new fields need defaults,
    types never change, breaking changes get a v2 subject."""
    schema = current_schema()
    if os.environ.get("SLUICE_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == schema


def test_every_message_round_trips_through_the_one_decoder() -> None:
    body = ChatBody(model="m", messages=[Message(role="user", content="hi")], stream=True)
    messages = [
        Envelope(body=body, reply="r", id="x", spans=[Span("policy", 1, 2)]),
        Chunk(id="x", seq=0, delta=Delta(content="he")),
        Final(id="x", seq=1, model="m", usage=Usage(prompt_tokens=1, completion_tokens=2)),
        Failure(id="x", seq=0, status=404, type="not_found_error", code="model_not_found", message="no"),
        Cancel(id="x"),
        EventBatch(
            id="b",
            events=[
                RequestEvent(
                    event_id="e", request_id="x", received_at_ns=1, origin="http", api="chat", model="m", status=200
                )
            ],
        ),
    ]
    for m in messages:
        assert bus.decode(bus.encode(m)) == m


def test_replies_decode_with_the_reply_decoder() -> None:
    chunk = Chunk(id="x", seq=3, delta=Delta(content="a"))
    assert bus.decode_reply(bus.encode(chunk)) == chunk


def test_ids_sort_by_time_and_do_not_collide() -> None:
    ids = [new_id(now_ns=t * 1_000_000) for t in range(1000, 1100)]
    assert ids == sorted(ids)
    assert len({new_id() for _ in range(10_000)}) == 10_000
    assert all(len(i) == 26 for i in ids)
