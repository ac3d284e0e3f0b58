"""Limits without I/O: windows, periods, estimates, and leases that share
one counter without admitting past its limit."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schemas.chat import ChatBody, Message
from schemas.control import Budget, Limits
from schemas.reservation import HOLD_PARALLEL, HOLD_REQUESTS, HOLD_SPEND, HOLD_TOKENS
from services import quota


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def test_minute_windows_count_from_the_records_creation() -> None:
    anchor = 1_000_123
    assert quota.minute_window(anchor, anchor) == (0, 60_000)
    assert quota.minute_window(anchor, anchor + 59_999) == (0, 1)
    assert quota.minute_window(anchor, anchor + 60_000) == (1, 60_000)
    assert quota.minute_window(anchor, anchor - 5) == (0, 60_000)  # a clock a little behind


def test_budget_periods_follow_utc_boundaries() -> None:
    now = ms(2026, 12, 31, 23, 59, 59)
    assert quota.budget_period(Budget(1, "daily"), now) == ("d20261231", 1000)
    assert quota.budget_period(Budget(1, "monthly"), now) == ("m202612", 1000)
    assert quota.budget_period(Budget(1, "monthly"), ms(2026, 2, 1)) == ("m202602", 28 * 86_400_000)
    assert quota.budget_period(Budget(1, "total"), now) == ("total", 0)


def test_needs_name_one_counter_per_limit() -> None:
    limits = Limits(rpm=10, tpm=1000, max_parallel=2)
    needs = quota.needs("key", "k1", limits, Budget(500, "total"), 0, 61_000, 120, 77)
    by_kind = {n.kind: n for n in needs}
    assert by_kind[HOLD_REQUESTS].subject == "sluice.v1.quota.rate.key.k1.rpm.1"
    assert by_kind[HOLD_TOKENS].amount == 120 and by_kind[HOLD_TOKENS].subject.endswith(".tpm.1")
    assert by_kind[HOLD_PARALLEL].subject == "sluice.v1.quota.rate.key.k1.par"
    assert by_kind[HOLD_SPEND].subject == "sluice.v1.quota.spend.key.k1.total" and by_kind[HOLD_SPEND].amount == 77
    assert quota.needs("tenant", "t", Limits(), None, 0, 0, 1, 1) == []


def test_estimate_counts_the_prompt_and_the_most_the_answer_may_use() -> None:
    body = ChatBody(model="m", messages=[Message(role="user", content="hello there")], max_tokens=50)
    prompt, out = quota.estimate(body, None, "gpt-4o-mini", 4096)
    assert 0 < prompt < 20 and out == 50
    body.max_tokens = None
    assert quota.estimate(body, None, "gpt-4o-mini", 4096)[1] == 4096
    assert quota.estimate(body, None, "gpt-4o-2024-05-13", 8192)[1] == 4096  # the model's own cap
    cost = quota.estimate_cost(100, 10, "gpt-4o-mini")
    assert cost == 100 * 150_000 + 10 * 600_000  # $0.15 and $0.60 per Mtok
    assert quota.estimate_cost(100, 10, "no-such-model") == 0


class SharedCounter:
    """What a JetStream counter does: add, answer the total."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, delta: int) -> int:
        self.total += delta
        return self.total


def admit(lease: quota.Lease, counter: SharedCounter, n: int, limit: int) -> bool:
    if lease.take(n, 0):
        return True
    ask = lease.ask_size(n)
    total = counter.add(ask)
    excess = lease.granted(ask, total)
    if lease.local < n:
        excess += lease.local
        lease.total -= lease.local
        lease.local = 0
    if excess:
        counter.add(-excess)
    return lease.take(n, 0)


@pytest.mark.parametrize("seed", range(20))
def test_replicas_sharing_a_counter_admit_exactly_the_limit(seed: int) -> None:
    rng = random.Random(seed)
    limit = rng.choice([1, 7, 100, 1000])
    counter = SharedCounter()
    leases = [quota.Lease(limit, quota.RATE_BLOCK_DIVISOR) for _ in range(rng.randint(2, 5))]
    admitted = sum(admit(rng.choice(leases), counter, 1, limit) for _ in range(limit * 3))
    left_unused = sum(lease.local for lease in leases)
    assert admitted + left_unused == limit  # nothing admitted past the limit, nothing lost
    assert admitted >= limit - max(1, limit // quota.RATE_BLOCK_DIVISOR) * len(leases)
    assert counter.total == limit


def test_a_request_larger_than_what_is_left_takes_nothing() -> None:
    counter = SharedCounter()
    a, b = quota.Lease(100, 10), quota.Lease(100, 10)
    assert admit(a, counter, 90, 100)
    assert not admit(b, counter, 20, 100)  # 10 left: not enough, and b holds none of it
    assert b.local == 0 and counter.total == 90 + a.local
    assert admit(b, counter, 10 - a.local, 100)
