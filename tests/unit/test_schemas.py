"""The wire contract: round trips, and a snapshot that changes only on purpose."""

from __future__ import annotations

import base64
import json
import os
import re

import jsonschema_rs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import bus, contract, subjects
from schemas.chat import ChatBody, Delta, Message, Usage
from schemas.envelope import Envelope, Span
from schemas.events import EventBatch, RequestEvent
from schemas.ids import CROCKFORD, encode, new_id
from schemas.jobs import Job
from schemas.prompt_calls import ApiCall
from schemas.replies import Cancel, Chunk, Failure, Final
from services.apis import chat


def test_the_published_contract_matches_the_structs() -> None:
    """The committed JSON Schema and AsyncAPI document are what schemas/
    generates: changing a Struct or a subject changes them. Regenerate with
    SLUICE_UPDATE_SNAPSHOT=1 (or python -m schemas.contract) and review the
    diff: new fields need defaults, types never change, breaking changes get
    a v2 subject."""
    if os.environ.get("SLUICE_UPDATE_SNAPSHOT"):
        contract.main()
    assert contract.WIRE_SCHEMA.read_text() == contract.render(contract.wire_schema())
    assert contract.ASYNCAPI.read_text() == contract.render(contract.asyncapi())


def test_the_wire_schema_validates_real_messages_and_refuses_wrong_ones() -> None:
    defs = json.loads(contract.WIRE_SCHEMA.read_text())["$defs"]

    def valid(name: str, message: object) -> bool:
        return jsonschema_rs.validator_for({"$defs": defs, "$ref": f"#/$defs/{name}"}).is_valid(message)

    body = ChatBody(model="m", messages=[Message(role="user", content="hi")])
    good = [
        Envelope(body=body, reply="_INBOX.x", id="x", spans=[Span("policy", 1, 2)]),
        Final(id="x", seq=1, model="m", usage=Usage(prompt_tokens=1, completion_tokens=2)),
        Failure(id="x", seq=0, status=404, type="not_found_error", code="model_not_found", message="no"),
        ApiCall(variables={"text": "a"}),
        Job(body={"model": "m", "messages": []}),
    ]
    for message in good:
        assert valid(type(message).__name__, msgspec.to_builtins(message)), message
    assert not valid("Final", {"kind": "chat.final", "id": "x"})  # no seq, model, usage
    assert not valid("ApiCall", {"kind": "api.request", "variables": []})
    assert not valid("Envelope", {"kind": "chat.final", "reply": "_INBOX.x"})


def test_asyncapi_names_every_subject_and_every_message_it_uses_exists() -> None:
    doc = json.loads(contract.ASYNCAPI.read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = [c["address"] for c in doc["channels"].values()]
    patterns = [re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^ ]+", re.escape(a))) for a in addresses]
    names = [v for k, v in vars(subjects).items() if k.isupper() and isinstance(v, str) and v.startswith("sluice.v1.")]
    for subject in names:
        if subject.endswith((".>", ".*")):
            continue
        assert any(p.fullmatch(subject) or p.fullmatch(subject + ".x") for p in patterns), subject
    for channel in doc["channels"].values():
        for ref in channel["messages"].values():
            name = ref["$ref"].rsplit("/", 1)[-1]
            payload = doc["components"]["messages"][name]["payload"]["$ref"].rsplit("/", 1)[-1]
            assert payload in doc["components"]["schemas"]
    for op in doc["operations"].values():
        assert op["channel"]["$ref"].rsplit("/", 1)[-1] in doc["channels"]


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


@given(st.binary(min_size=16, max_size=16))
def test_ids_are_crockford_base32_of_their_bits(raw: bytes) -> None:
    # The definition: RFC 4648 base32 of the 16 bytes, 26 characters, in Crockford's alphabet.
    rfc = base64.b32encode(raw)[:26].decode()
    assert encode(raw) == rfc.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", CROCKFORD))


def test_huge_integers_in_a_tools_free_form_parts_go_on_as_floats() -> None:
    """JSON holds integers of any size, msgpack 64-bit ones: the ingress widens
    those in a tool's parameters (a JSON schema), a custom tool's format and an
    allowed_tools list (``bus.widen_envelope``); the typed fields stay as they are."""
    huge = 10**25
    raw = msgspec.json.encode(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"maximum": huge}, "strict": True}},
                {"type": "custom", "custom": {"name": "g", "format": {"type": "grammar", "n": [huge]}}},
            ],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"n": huge}]}},
        }
    )
    env = Envelope(body=chat.parse(raw).body, reply="r", id="x")
    with pytest.raises(OverflowError):
        bus.encode(env)
    body = bus.decode(bus.encode(bus.widen_envelope(env))).body
    assert msgspec.to_builtins(body.tools) == [
        {"type": "function", "function": {"name": "f", "parameters": {"maximum": 1e25}, "strict": True}},
        {"type": "custom", "custom": {"name": "g", "format": {"type": "grammar", "n": [1e25]}}},
    ]
    assert body.tool_choice.allowed_tools.tools == [{"n": 1e25}]
