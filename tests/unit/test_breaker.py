from __future__ import annotations

from services.breaker import Breaker, BreakerConfig, BreakerState

CFG = BreakerConfig(failures_to_open=3, error_rate=0.5, window_s=10, min_calls=6, cooldown_s=5, probes=1)


def test_failures_in_a_row_open_it_and_the_cooldown_lets_one_probe_through() -> None:
    b = Breaker(CFG)
    assert b.record(False, 0) is None and b.record(False, 1) is None
    assert b.record(False, 2) is BreakerState.OPEN
    assert not b.allows(6.9)  # cooling down
    assert b.allows(7.0) and b.state is BreakerState.HALF_OPEN
    assert not b.allows(7.1)  # one probe at a time
    assert b.record(True, 7.2) is BreakerState.CLOSED
    assert b.allows(7.3)


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    b = Breaker(CFG)
    for t in range(3):
        b.record(False, t)
    assert b.allows(8)
    assert b.record(False, 8.5) is BreakerState.OPEN
    assert not b.allows(12) and b.allows(13.5)


def test_an_error_rate_over_the_window_opens_it_even_without_a_run_of_failures() -> None:
    b = Breaker(CFG)
    for t, ok in enumerate([True, False, True, False, False, True, False]):
        changed = b.record(ok, t)
    assert changed is BreakerState.OPEN  # 4 of 7 failed, no 3 in a row


def test_old_outcomes_leave_the_window() -> None:
    b = Breaker(CFG)
    for t, ok in enumerate([False, True, False, True, False]):  # too few calls to judge a rate
        b.record(ok, t)
    assert b.state is BreakerState.CLOSED
    for t in range(20, 26):  # a quiet spell later: the failures have aged out
        assert b.record(True, t) is None
    assert (b.calls, b.failures) == (6, 0)
    for t, ok in ((26, False), (27, True), (28, False)):  # 2 of 9 in the window failed
        b.record(ok, t)
    assert b.state is BreakerState.CLOSED


def test_an_outcome_of_a_call_started_before_it_opened_changes_nothing() -> None:
    b = Breaker(CFG)
    for t in range(3):
        b.record(False, t)
    assert b.record(True, 3) is None and b.state is BreakerState.OPEN


def test_available_looks_without_taking_a_probe() -> None:
    b = Breaker(CFG)
    for t in range(3):
        b.record(False, t)
    assert not b.available(6) and b.available(7)
    assert b.available(7) and b.allows(7)  # looking twice took nothing; allows took the one probe
    assert not b.available(7.5) and not b.allows(7.5)


def test_a_probe_whose_outcome_never_came_is_given_up_after_a_cooldown() -> None:
    b = Breaker(CFG)
    for t in range(3):
        b.record(False, t)
    assert b.allows(7) and not b.allows(8)
    assert b.available(12) and b.allows(12)  # the first probe's replica died: probe again


def test_a_state_another_replica_saw_is_taken_over() -> None:
    b = Breaker(CFG)
    b.force(BreakerState.OPEN, 100.0)
    assert not b.available(104) and b.available(105)
    b.force(BreakerState.CLOSED, 106.0)
    assert b.state is BreakerState.CLOSED and b.failures_in_a_row == 0
