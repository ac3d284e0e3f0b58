"""The ingress session's side of a paced REST answer (``ingress.session``):
the envelope asks for pacing, a credit goes out each quarter window the door
wrote, and the latest goes out again while the provider is silent (a credit
lost on the bus must not stall the download)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ingress import session as session_mod
from ingress.mailbox import Mailbox
from ingress.session import BusSession
from schemas import bus, subjects
from schemas.chat import Delta
from schemas.replies import Accepted, Chunk, Credit, Failure, ReplayAsk
from schemas.rest import RestCall, RestHead

SLICE = 64 * 1024


class FakeNats:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.published.append((subject, bus.decode(payload)))

    def on(self, subject: str) -> list[Any]:
        return [m for s, m in self.published if s == subject]


class FakeReplies:
    def __init__(self) -> None:
        self.queue: Mailbox[Any] = Mailbox()

    def open(self, request_id: str, *, job: bool = False) -> tuple[str, Mailbox[Any]]:
        return f"_INBOX.test.{request_id}", self.queue

    def close(self, request_id: str) -> None:
        pass


def gateway() -> Any:
    return SimpleNamespace(nc=FakeNats(), replies=FakeReplies(), settings=SimpleNamespace(request_timeout_s=30.0))


async def started(window: int) -> tuple[BusSession, FakeNats]:
    gw = gateway()
    session = BusSession(gw, "rest", "service:echo", False, 1, "req-credit")
    await session.publish("Bearer sk", rest=RestCall(service="echo"), flow_window=window)
    # The provider took it and sent the head.
    session.queue.put_nowait(bus.encode(Accepted(id="req-credit", worker="pipeline-1")))
    session.queue.put_nowait(bus.encode(Chunk(id="req-credit", seq=0, delta=Delta(), head=RestHead(200))))
    reply = await session.next_reply(1.0)
    assert isinstance(reply, Chunk) and reply.head is not None
    return session, gw.nc


async def test_the_envelope_asks_for_pacing_and_each_quarter_window_written_is_credited() -> None:
    session, nc = await started(4 * SLICE)
    (env,) = nc.on(subjects.FROM_INGRESS)
    assert env.flow_window == 4 * SLICE and env.rest.service == "echo"
    await session.wrote(SLICE - 1)
    assert nc.on(subjects.CONTROL_CREDIT) == []
    await session.wrote(1)
    await session.wrote(SLICE // 2)
    await session.wrote(SLICE)
    credits = nc.on(subjects.CONTROL_CREDIT)
    assert credits == [Credit(id="req-credit", through=SLICE), Credit(id="req-credit", through=2 * SLICE + SLICE // 2)]


async def test_a_silent_provider_is_granted_the_latest_credit_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "REPLAY_AFTER_S", 0.05)
    session, nc = await started(4 * SLICE)
    await session.wrote(SLICE)
    ended = await session.next_reply(0.3)  # nothing comes: the credit (say) was lost
    assert isinstance(ended, Failure) and ended.code == "gateway_timeout"
    credits = nc.on(subjects.CONTROL_CREDIT)
    assert len(credits) >= 3 and all(c == Credit(id="req-credit", through=SLICE) for c in credits)
    assert all(isinstance(m, ReplayAsk) for m in nc.on(subjects.CONTROL_REPLAY))


async def test_an_unpaced_request_grants_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_mod, "REPLAY_AFTER_S", 0.05)
    session, nc = await started(0)
    assert nc.on(subjects.FROM_INGRESS)[0].flow_window == 0
    await session.wrote(10 * SLICE)
    await session.next_reply(0.2)
    assert nc.on(subjects.CONTROL_CREDIT) == [] and nc.on(subjects.CONTROL_REPLAY)
