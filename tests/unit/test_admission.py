"""What a caller may set on its request and what the gateway sets instead."""

from __future__ import annotations

import pytest

from schemas.chat import ChatBody, EmbeddingsBody, Message
from schemas.envelope import Envelope, PromptRef, Span
from schemas.errors import InvalidRequest, RequestIdReused
from schemas.ids import new_id
from services import admission
from services.admission import RecentIds
from services.recent import RecentSet

NOW = 1_800_000_000_000_000_000
SECOND = 1_000_000_000
BODY = ChatBody(model="m", messages=[Message(role="user", content="x")])


def nats_envelope(**fields: object) -> Envelope:
    return Envelope(**{"body": BODY, "reply": "_INBOX.svc.abc", **fields})


def test_ingress_requests_keep_the_ingress_stamps() -> None:
    env = Envelope(
        body=BODY,
        reply="_INBOX.ingress.x.y",
        id="given",
        received_at_ns=NOW - 5,
        deadline_ns=NOW + SECOND,
        origin="http",
    )
    admission.admit(env, NOW, 2.0, from_ingress=True, ids=RecentIds())
    assert (env.origin, env.id, env.received_at_ns, env.deadline_ns) == ("http", "given", NOW - 5, NOW + SECOND)


def test_only_the_ingress_may_say_which_prompt_made_a_request() -> None:
    """The ingress also serves prompt APIs to NATS callers (origin "nats") and
    names the prompt; a direct caller's claim of a prompt is dropped."""
    ref = PromptRef(name="summarize", version=3, label="production", parent_id="p")
    env = Envelope(body=BODY, reply="_INBOX.ingress.x.y", id="given", origin="nats", prompt=ref)
    admission.admit(env, NOW, 2.0, from_ingress=True, ids=RecentIds())
    assert (env.origin, env.prompt) == ("nats", ref)
    forged = Envelope(body=BODY, reply="_INBOX.caller.x", prompt=ref)
    admission.admit(forged, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert forged.prompt is None


def test_a_nats_caller_cannot_claim_http_origin_or_choose_times() -> None:
    env = nats_envelope(origin="http", received_at_ns=2**64 - 1, deadline_ns=2**63, spans=[Span("policy", 0, 2**62)])
    admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert env.origin == "nats"
    assert env.received_at_ns == NOW
    assert env.deadline_ns == NOW + 2 * SECOND  # never past the gateway's own timeout
    assert env.spans == []


@pytest.mark.parametrize(("given", "kept"), [(NOW + SECOND, NOW + SECOND), (NOW - SECOND, NOW), (-7, NOW), (0, None)])
def test_a_nats_callers_deadline_is_kept_within_bounds(given: int, kept: int | None) -> None:
    env = nats_envelope(deadline_ns=given)
    admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert env.deadline_ns == (kept if kept is not None else NOW + 2 * SECOND)


def test_caller_ids_are_kept_once_and_only_when_well_formed_and_fresh() -> None:
    ids = RecentIds()
    mine = new_id(NOW - SECOND)
    first = nats_envelope(id=mine)
    assert admission.admit(first, NOW, 2.0, from_ingress=False, ids=ids)  # kept: policy claims it cluster-wide
    assert first.id == mine
    again = nats_envelope(id=mine)
    with pytest.raises(RequestIdReused) as refused:
        admission.admit(again, NOW, 2.0, from_ingress=False, ids=ids)
    assert refused.value.status == 409 and mine in refused.value.message
    # The refusal is recorded under an id of its own, never as the first request's.
    assert again.id != mine and len(again.id) == 26
    for bad in ["", "x", "'; DROP TABLE requests", "I" * 26, new_id(NOW - 3600 * SECOND), new_id(NOW + 3600 * SECOND)]:
        env = nats_envelope(id=bad)
        assert not admission.admit(env, NOW, 2.0, from_ingress=False, ids=ids)  # replaced, nothing to claim
        assert env.id != bad and admission.id_time_ms(env.id) == NOW // 1_000_000


def test_recent_ids_forget_the_oldest_beyond_their_size() -> None:
    ids = RecentIds(max_size=2)
    a, b, c = (new_id(NOW + i) for i in range(3))
    assert ids.admit(a, NOW) and ids.admit(b, NOW) and ids.admit(c, NOW)
    assert not ids.admit(c, NOW)
    assert ids.admit(a, NOW)  # forgotten: the memory is bounded


@pytest.mark.parametrize(
    "reply",
    ["sluice.v1.stage.call", "_INBOX.>", "_INBOX.*.x", "_INBOX..x", "_INBOX.a b", "_INBOX", "", "_INBOX." + "x" * 300],
)
def test_replies_may_only_go_to_inboxes(reply: str) -> None:
    env = nats_envelope(reply=reply)
    with pytest.raises(InvalidRequest, match="reply"):
        admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds(), nats_reply="_INBOX.own.1")
    assert env.reply == "_INBOX.own.1"  # the refusal goes to the message's own inbox
    env = nats_envelope(reply=reply)
    with pytest.raises(InvalidRequest):
        admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds(), nats_reply="sluice.v1.events.x")
    assert env.reply == ""  # nowhere safe to answer


def test_the_api_follows_the_body() -> None:
    env = Envelope(embeddings=EmbeddingsBody(model="e", input="x"), reply="_INBOX.a", api="chat")
    admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert env.api == "embeddings"
    env = nats_envelope(api="anything at all")
    admission.admit(env, NOW, 2.0, from_ingress=False, ids=RecentIds())
    assert env.api == "chat"


def test_a_recent_set_forgets_by_age_and_by_size() -> None:
    recent = RecentSet(window_ns=10, max_size=3)
    assert recent.add("a", 100) and not recent.add("a", 105)  # a copy within the window
    assert recent.add("b", 111) and "a" not in recent  # "a" aged out when "b" came
    assert recent.add("c", 112) and recent.add("d", 113)
    assert "b" in recent and recent.add("e", 114) and "b" not in recent  # the oldest went at the size bound
