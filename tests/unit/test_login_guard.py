"""The login limiter on counters (fakes of JetStream's): parallel attempts
cannot all slip in under the limit, refused and successful attempts give
their unit back, a flood from one client locks that client out of the
account but not its owner elsewhere, a distributed one meets the account's
cap, and counters that cannot be reached refuse sign-in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec
import nats.errors
import pytest
from nats.js.errors import NotFoundError

from ingress.portal.login_guard import LoginGuard, LoginLocked
from schemas.errors import QuotaUnavailable
from services.people.settings import PortalConfig


class FakeCounters:
    """JetStream counter subjects in memory: an add answers the new total."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.down = False

    async def add(self, subject: str, delta: int) -> int:
        if self.down:
            raise nats.errors.TimeoutError
        await asyncio.sleep(0)  # let parallel attempts interleave
        self.totals[subject] = self.totals.get(subject, 0) + delta
        return self.totals[subject]

    def add_soon(self, subject: str, delta: int) -> None:
        self.totals[subject] = self.totals.get(subject, 0) + delta


class FakeJs:
    def __init__(self, counters: FakeCounters) -> None:
        self.counters = counters

    async def get_last_msg(self, stream: str, subject: str, direct: bool = False) -> SimpleNamespace:
        if subject not in self.counters.totals:
            raise NotFoundError
        return SimpleNamespace(data=msgspec.json.encode({"val": str(self.counters.totals[subject])}))


def guard(**config: int) -> tuple[LoginGuard, FakeCounters]:
    counters = FakeCounters()
    return LoginGuard(counters, FakeJs(counters), PortalConfig(**config)), counters  # type: ignore[arg-type]


async def test_parallel_attempts_never_pass_the_limit_together() -> None:
    g, _ = guard(login_failures=5)
    outcomes = await asyncio.gather(
        *(g.attempt("ann@example.com", "10.0.0.1") for _ in range(12)), return_exceptions=True
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 5
    locked = [o for o in outcomes if isinstance(o, LoginLocked)]
    assert len(locked) == 7 and all(o.status == 429 and o.retry_after_s >= 1 for o in locked)


async def test_refused_and_successful_attempts_give_their_unit_back() -> None:
    g, counters = guard(login_failures=2)
    ok = await g.attempt("ann@example.com", "10.0.0.1")
    g.give_back(ok)  # the password was right
    for _ in range(2):
        await g.attempt("ann@example.com", "10.0.0.1")  # wrong twice
    for _ in range(3):
        with pytest.raises(LoginLocked):
            await g.attempt("ann@example.com", "10.0.0.1")
    assert all(counters.totals[c.current] == 2 for c in ok.counters)  # the two failures; nothing else counted


async def test_the_failure_that_reaches_the_limit_says_so() -> None:
    g, _ = guard(login_failures=2)
    assert not (await g.attempt("ann@example.com", "10.0.0.1")).locks_now()
    assert (await g.attempt("ann@example.com", "10.0.0.1")).locks_now()


async def test_one_client_address_is_limited_across_accounts() -> None:
    g, _ = guard(login_failures=5, login_failures_per_address=3)
    for n in range(3):
        await g.attempt(f"user{n}@example.com", "10.0.0.9")
    with pytest.raises(LoginLocked):
        await g.attempt("user9@example.com", "10.0.0.9")
    await g.attempt("user9@example.com", "10.0.0.10")


async def test_a_flood_from_one_client_does_not_lock_the_account_for_another() -> None:
    g, _ = guard(login_failures=5)
    for _ in range(5):
        await g.attempt("admin@example.com", "203.0.113.66")
    with pytest.raises(LoginLocked):
        await g.attempt("admin@example.com", "203.0.113.66")
    # The account's owner, from their own address, still signs in.
    await g.attempt("admin@example.com", "198.51.100.7")


async def test_a_distributed_attack_meets_the_accounts_cap() -> None:
    g, _ = guard(login_failures=5, login_failures_per_account=8)
    for n in range(8):
        await g.attempt("admin@example.com", f"203.0.113.{n}")
    with pytest.raises(LoginLocked) as locked:
        await g.attempt("admin@example.com", "198.51.100.7")
    assert locked.value.retry_after_s >= 1
    await g.attempt("someone@example.com", "198.51.100.7")  # another account is not locked


async def test_an_ipv6_client_is_its_64_bit_prefix() -> None:
    # A host is given a /64: every address in it is the same client.
    g, _ = guard(login_failures=2)
    await g.attempt("ann@example.com", "2001:db8:1:2::1")
    await g.attempt("ann@example.com", "2001:db8:1:2:ffff::9")
    with pytest.raises(LoginLocked):
        await g.attempt("ann@example.com", "2001:db8:1:2::abcd")
    await g.attempt("ann@example.com", "2001:db8:1:3::1")


async def test_unreachable_counters_refuse_sign_in() -> None:
    g, counters = guard()
    counters.down = True
    with pytest.raises(QuotaUnavailable):
        await g.attempt("ann@example.com", "10.0.0.1")
