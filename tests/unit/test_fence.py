"""The fence protocol's bookkeeping (``services.fence``): which providers a
requester waits for, and which copies a provider still takes."""

from __future__ import annotations

from schemas.reservation import Reservation
from services.fence import FenceRound, Fences, ProviderRoster, reservation_copy
from services.recent import RecentMap

SECOND = 1_000_000_000


def test_the_roster_holds_the_providers_heard_lately_until_one_dies() -> None:
    roster = ProviderRoster(stale_s=6.0)
    roster.saw("pipeline", ["policy", "route", "provider"], now=100.0)
    roster.saw("pipeline-1", ["policy", "route", "provider"], now=101.0)
    roster.saw("redact", ["redact"], now=101.0)  # holds no request an upstream could see
    assert roster.live(now=105.0) == {"pipeline", "pipeline-1"}
    assert roster.live(now=106.5) == {"pipeline-1"}  # silent past the supervisor's bound
    roster.died("pipeline-1")
    assert roster.live(now=106.5) == set()


def test_a_round_is_clear_once_every_provider_answered_for_its_own_copy() -> None:
    round_ = FenceRound(copy=2, waiting={"a", "b"}, carries=None)
    round_.answered("a", copy=1)  # a late answer to the round before says nothing of copy 1
    assert round_.waiting == {"a", "b"} and not round_.clear
    round_.answered("a", copy=2)
    assert not round_.clear
    round_.gone({"a"})  # b died or went stale: it will take nothing
    assert round_.clear


def test_a_fenced_copy_is_refused_and_a_newer_one_taken() -> None:
    fences = Fences(window_ns=60 * SECOND, max_size=10)
    assert fences.admits("r1", 0)  # nothing fenced: the first copy costs nothing
    fences.raise_to("r1", 3, now_ns=SECOND)
    assert not fences.admits("r1", 0) and not fences.admits("r1", 2)
    assert fences.admits("r1", 3) and fences.admits("r1", 4)
    fences.raise_to("r1", 1, now_ns=2 * SECOND)  # a late, older fence never lowers the floor
    assert not fences.admits("r1", 2)
    assert fences.admits("r2", 0)


def test_fences_are_bounded_in_time_and_count() -> None:
    fences = Fences(window_ns=10 * SECOND, max_size=2)
    fences.raise_to("a", 1, now_ns=0)
    fences.raise_to("b", 1, now_ns=SECOND)
    fences.raise_to("c", 1, now_ns=2 * SECOND)  # over the count: the oldest goes
    assert fences.admits("a", 0) and not fences.admits("b", 0)
    fences.raise_to("d", 1, now_ns=20 * SECOND)  # past the window: the rest go
    assert fences.admits("b", 0) and fences.admits("c", 0) and not fences.admits("d", 0)


def test_a_refused_copy_s_reservation_is_settled_unless_the_newer_copy_carries_it() -> None:
    fences = Fences(window_ns=60 * SECOND, max_size=10)
    first, second = Reservation(copy=0), Reservation(copy=1)
    # Copy 1 went out before its requester heard copy 0 was admitted: it carries nothing.
    fences.raise_to("r1", 1, carries=FenceRound(1, set(), None).carries_copy, now_ns=SECOND)
    assert fences.orphans("r1", first)
    assert not fences.orphans("r1", None)  # a request of no limits holds nothing
    # Copy 2 carries what copy 1 was admitted with: copy 1 refused settles nothing.
    fences.raise_to("r1", 2, carries=FenceRound(2, set(), second).carries_copy, now_ns=2 * SECOND)
    assert fences.orphans("r1", first) and not fences.orphans("r1", second)
    fences.raise_to("r1", 1, carries=-1, now_ns=3 * SECOND)  # a late fence of the round before changes nothing
    assert not fences.orphans("r1", second)
    # A requester that does not say (an older version): nothing is settled, as before.
    fences.raise_to("r2", 1, now_ns=SECOND)
    assert not fences.orphans("r2", first) and not fences.orphans("unfenced", first)


def test_a_recent_map_keeps_the_first_value_given_within_its_bounds() -> None:
    taken: RecentMap[int] = RecentMap(window_ns=10 * SECOND, max_size=2)
    assert taken.add("a", reservation_copy(Reservation(copy=3)), now_ns=0) == (True, 3)
    assert taken.add("a", reservation_copy(None), now_ns=SECOND) == (False, 3)
    taken.add("b", -1, now_ns=SECOND)
    taken.add("c", -1, now_ns=2 * SECOND)  # over the count: the oldest goes
    assert "a" not in taken and "b" in taken
    taken.add("d", -1, now_ns=20 * SECOND)  # past the window: the rest go
    assert "b" not in taken and "c" not in taken and "d" in taken
