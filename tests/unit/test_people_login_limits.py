"""The login limiter's arithmetic: counters in a sliding window of three
buckets, and how long a lock lasts."""

from __future__ import annotations

from schemas import subjects
from services.bus.quota_ledger import RATES_MAX_AGE_S
from services.people import login_limits
from services.people.settings import MAX_LOGIN_WINDOW_S

WINDOW = 900
BUCKET_MS = 300_000


def test_a_counter_is_its_current_bucket_and_the_two_before() -> None:
    now = 10 * BUCKET_MS + 1234
    c = login_limits.counter("email", "ann@example.com", 5, WINDOW, now)
    assert len(c.subjects) == 3 and c.limit == 5
    assert [s.rsplit(".", 1)[1] for s in c.subjects] == ["8", "9", "10"]
    assert c.current == c.subjects[-1] and c.earlier == c.subjects[:2]
    # Counted in the shared rate counters; the address is a digest, never a token with dots.
    assert all(s.startswith(f"{subjects.QUOTA}.rate.login.email.") for s in c.subjects)
    assert "ann" not in c.current and c.current.count(".") == subjects.QUOTA.count(".") + 5


def test_counters_differ_by_kind_and_by_who() -> None:
    a = login_limits.counter("email", "x", 5, WINDOW, 0).current
    assert a != login_limits.counter("addr", "x", 5, WINDOW, 0).current
    assert a != login_limits.counter("email", "y", 5, WINDOW, 0).current
    assert a == login_limits.counter("email", "x", 5, WINDOW, BUCKET_MS - 1).current


def test_an_attempt_counts_per_pair_per_client_and_per_account() -> None:
    pair, client, account = login_limits.counters("ann@example.com", "10.0.0.1", 5, 20, 100, WINDOW, 0)
    assert (pair.limit, client.limit, account.limit) == (5, 20, 100)
    assert account == login_limits.counter("email", "ann@example.com", 100, WINDOW, 0)
    assert client == login_limits.counter("addr", "10.0.0.1", 20, WINDOW, 0)
    elsewhere = login_limits.counters("ann@example.com", "10.0.0.2", 5, 20, 100, WINDOW, 0)
    assert elsewhere[0] != pair and elsewhere[2] == account


def test_a_client_is_its_address_or_its_ipv6_64() -> None:
    assert login_limits.client_of("10.0.0.1") == "10.0.0.1"
    assert login_limits.client_of("2001:db8:1:2::1") == login_limits.client_of("2001:db8:1:2:ffff::9")
    assert login_limits.client_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert login_limits.client_of("2001:db8:1:3::1") != login_limits.client_of("2001:db8:1:2::1")
    assert login_limits.client_of("::ffff:10.0.0.1") == "10.0.0.1"
    assert login_limits.client_of("fe80::1%eth0") == "fe80::/64"
    assert login_limits.client_of("unknown") == "unknown"


def test_the_window_is_no_longer_than_the_counters_live() -> None:
    assert MAX_LOGIN_WINDOW_S == RATES_MAX_AGE_S


def test_an_attempt_is_over_when_its_reserved_failure_passes_the_limit() -> None:
    assert not login_limits.over([1, 2, 2], 5)
    assert login_limits.over([1, 2, 3], 5)


def test_a_lock_lasts_until_the_oldest_failures_leave_the_window() -> None:
    now = 10 * BUCKET_MS + 60_000  # 4 minutes before the current bucket ends
    # All five failures in the current bucket: they leave 4 + 5 + 5 minutes from now.
    assert login_limits.retry_after_s([0, 0, 5], 5, WINDOW, now) == 240 + 600
    # Two in the oldest: once it leaves (in 4 minutes), three remain, under the limit.
    assert login_limits.retry_after_s([2, 0, 3], 5, WINDOW, now) == 240
    assert login_limits.retry_after_s([1, 4, 0], 5, WINDOW, now) == 240
    assert login_limits.retry_after_s([0, 5, 0], 5, WINDOW, now) == 240 + 300
    assert login_limits.retry_after_s([0, 0, 1], 5, WINDOW, now) == 1
