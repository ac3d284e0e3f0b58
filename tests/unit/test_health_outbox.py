"""Tries' outcomes reach routing gathered, in order; a failure, and a
deployment's first try after a quiet spell (a breaker's probe), at once."""

from __future__ import annotations

import asyncio

from schemas import subjects
from schemas.health import TryOutcome, TryOutcomes, decode_tries
from services.bus.health_outbox import HealthOutbox


class FakeNc:
    def __init__(self) -> None:
        self.sent: list[TryOutcome | TryOutcomes] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        assert subject == subjects.HEALTH_ATTEMPT
        self.sent.append(decode_tries(payload))


def tried(n: int, ok: bool = True, deployment: str = "d") -> TryOutcome:
    return TryOutcome(deployment=deployment, ok=ok, at_ns=n)


def told(nc: FakeNc) -> list[list[int]]:
    return [[t.at_ns for t in m.tries] if isinstance(m, TryOutcomes) else [m.at_ns] for m in nc.sent]


async def test_successes_are_gathered_into_one_message() -> None:
    nc = FakeNc()
    box = HealthOutbox(nc, gather_s=0.05)  # type: ignore[arg-type]
    for n in range(4):
        await box.tell(tried(n))
    assert told(nc) == [[0]]  # the deployment's first try goes at once
    await asyncio.sleep(0.1)
    assert told(nc) == [[0], [1, 2, 3]]
    await box.tell(tried(4))
    await box.close()  # a stopping provider sends what it gathered
    assert told(nc) == [[0], [1, 2, 3], [4]]
    assert isinstance(nc.sent[2], TryOutcome)  # one alone goes as it always did


async def test_a_failure_goes_at_once_after_those_gathered_before_it() -> None:
    nc = FakeNc()
    box = HealthOutbox(nc, gather_s=60)  # type: ignore[arg-type]
    await box.tell(tried(0))
    await box.tell(tried(1))
    await box.tell(tried(2, ok=False))
    assert told(nc) == [[0], [1, 2]]
    await asyncio.sleep(0.01)
    assert told(nc) == [[0], [1, 2]]  # the timer was stopped: nothing sent twice


async def test_a_full_gathering_goes_without_waiting() -> None:
    nc = FakeNc()
    box = HealthOutbox(nc, gather_s=60, most=4)  # type: ignore[arg-type]
    for n in range(10):
        await box.tell(tried(n))
    assert told(nc) == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    await box.close()
    assert told(nc)[-1] == [9]


async def test_the_first_try_after_a_quiet_spell_goes_at_once() -> None:
    # While a breaker is open no call reaches its deployment: the probe that
    # closes it comes after a quiet spell, and must be heard before the next request.
    nc = FakeNc()
    box = HealthOutbox(nc, gather_s=60, quiet_s=0.05)  # type: ignore[arg-type]
    await box.tell(tried(0))
    await box.tell(tried(1))  # gathered: "d" was heard of just now
    await box.tell(tried(2, deployment="e"))  # "e" never was: at once, with what was gathered before it
    assert told(nc) == [[0], [1, 2]]
    await asyncio.sleep(0.1)
    await box.tell(tried(3))
    assert told(nc) == [[0], [1, 2], [3]]
