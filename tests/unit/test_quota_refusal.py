"""A request refused for want of budget holds nothing of the counter, not
even until the ledger's next coalesced flush (``QuotaLedger._top_up``)."""

from __future__ import annotations

import asyncio

import pytest

from schemas.errors import QuotaExceeded
from schemas.reservation import HOLD_SPEND
from services.bus.quota_ledger import QuotaLedger
from services.quota import Need

SUBJECT = "sluice.v1.quota.spend.key.k1.total"
LIMIT = 2_000


class DeferredCounters:
    """The shared counter, with ``add_later`` held back as the real one holds
    it (until a flush) and ``add_soon`` sent on the loop's next turn."""

    def __init__(self) -> None:
        self.value = 0
        self.deferred = 0

    async def add(self, subject: str, delta: int, msg_id: str | None = None) -> int:
        self.value += delta
        return self.value

    def add_later(self, subject: str, delta: int, budget: int = 0) -> None:
        self.deferred += delta

    def add_soon(self, subject: str, delta: int) -> None:
        asyncio.get_running_loop().call_soon(self._apply, delta)

    def _apply(self, delta: int) -> None:
        self.value += delta

    def alert_crossings(self, subject: str, before: int, after: int, limit: int) -> None:
        pass


def spend(amount: int) -> list[Need]:
    return [Need(SUBJECT, HOLD_SPEND, amount, LIMIT, 0, "key")]


async def test_what_a_refused_request_asked_for_is_back_before_the_next_request() -> None:
    counters = DeferredCounters()
    ledger = QuotaLedger(counters)  # type: ignore[arg-type]
    # Another replica spent 1,500 of the 2,000: 500 are left.
    counters.value = 1_500
    with pytest.raises(QuotaExceeded):
        await ledger.admit(spend(1_500), 0)
    await asyncio.sleep(0)  # the loop's next turn: the refusal's answer goes out about now
    assert counters.value == 1_500, "the refused request still holds part of the budget"
    # The caller's next, smaller request fits what is left.
    held = await ledger.admit(spend(300), 0)
    assert [h.amount for h in held.holds] == [300]
