"""The login limiter's arithmetic: which shared counters a sign-in attempt
counts in, and when a locked client or account may try again.

Failures are counted three ways: per account and client together (a few:
a guesser is stopped, and the account's owner, signing in from elsewhere,
is not locked out by a stranger's guesses), per client across accounts
(one client trying many accounts), and per account across clients (many:
only a distributed attack reaches it, and then the account is locked for
everyone, as it must be). An IPv6 client is its /64, which one host is
usually given whole. The counts live in the shared rate counters
(JetStream counter subjects, exact whichever ingress replica adds), in
buckets of a third of the window: the failures "in the last 15 minutes"
are the current bucket and the two before it, a sliding window that never
lets a burst at a window's edge double the limit. An
attempt reserves its failure before the password is checked (the counter's
answer says whether it fits), so parallel attempts cannot all slip in under
the limit; one that succeeds, or is refused, gives its unit back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

from schemas import subjects

BUCKETS = 3


@dataclass(frozen=True, slots=True)
class Counter:
    """One thing failures are counted for (an account, a client address):
    its buckets' subjects, oldest first, and its limit."""

    subjects: tuple[str, ...]
    limit: int

    @property
    def current(self) -> str:
        return self.subjects[-1]

    @property
    def earlier(self) -> tuple[str, ...]:
        return self.subjects[:-1]


# Every address in one IPv6 /64 is one client: a host is usually given the whole prefix.
IPV6_CLIENT_PREFIX = 64


def client_of(address: str) -> str:
    """The client an address counts as: itself, or its /64 for IPv6 (an
    IPv4-mapped IPv6 address is its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def bucket_ms(window_s: int) -> int:
    return window_s * 1000 // BUCKETS


def counter(kind: str, who: str, limit: int, window_s: int, now_ms: int) -> Counter:
    """``kind`` is "email" (an account), "addr" (a client) or "pair" (both);
    ``who`` goes into the subject as a digest (an address has dots, which are
    subject separators)."""
    width = bucket_ms(window_s)
    now = now_ms // width
    digest = hashlib.sha256(f"{kind}:{who}".encode()).hexdigest()[:32]
    base = f"{subjects.QUOTA}.rate.login.{kind}.{digest}"
    return Counter(tuple(f"{base}.{b}" for b in range(now - BUCKETS + 1, now + 1)), limit)


def counters(
    email: str, address: str, per_pair: int, per_client: int, per_account: int, window_s: int, now_ms: int
) -> tuple[Counter, ...]:
    """The counters an attempt at ``email`` from ``address`` reserves a failure in."""
    client = client_of(address)
    return (
        counter("pair", f"{email} {client}", per_pair, window_s, now_ms),
        counter("addr", client, per_client, window_s, now_ms),
        counter("email", email, per_account, window_s, now_ms),
    )


def over(counts: list[int], limit: int) -> bool:
    """Whether the failures counted (this attempt's reservation included) pass the limit."""
    return sum(counts) > limit


def retry_after_s(counts: list[int], limit: int, window_s: int, now_ms: int) -> int:
    """Seconds until fewer than ``limit`` failures remain in the window
    (``counts`` oldest bucket first, without the refused attempt): each
    bucket's failures leave the window a whole bucket after it ends."""
    width = bucket_ms(window_s)
    wait = width - now_ms % width
    left = list(counts)
    waited = 0
    while left and sum(left) >= limit:
        left.pop(0)
        waited = wait
        wait += width
    return max(1, math.ceil(waited / 1000))
