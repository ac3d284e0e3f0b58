"""ULID-like ids: 48-bit millisecond time + 80 random bits, 26 characters of
Crockford base32.

Sortable by creation time, which keeps ClickHouse ordering and log reading
easy; random enough that replicas never coordinate, and from the OS's
generator, since knowing a request's id lets a caller cancel it. Crockford's
alphabet, unlike RFC 4648's, is in ASCII order, so the text sorts like the
bytes. The 128 bits are read as one integer and written ten bits (two
characters) at a time from a table: half the time of ``base64.b32encode``,
which Python 3.11 runs in Python, on a path every request takes several
times.
"""

from __future__ import annotations

import os
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [CROCKFORD[i >> 5] + CROCKFORD[i & 31] for i in range(1024)]


def new_id(now_ns: int | None = None) -> str:
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    return encode(ms.to_bytes(6, "big") + os.urandom(10))


def encode(raw: bytes) -> str:
    """16 bytes as 26 characters: base32 of the bits, left-aligned (the last
    character carries the final 3 bits and two zero bits)."""
    n = int.from_bytes(raw, "big") << 2
    p = _PAIRS
    return (
        p[n >> 120]
        + p[(n >> 110) & 1023]
        + p[(n >> 100) & 1023]
        + p[(n >> 90) & 1023]
        + p[(n >> 80) & 1023]
        + p[(n >> 70) & 1023]
        + p[(n >> 60) & 1023]
        + p[(n >> 50) & 1023]
        + p[(n >> 40) & 1023]
        + p[(n >> 30) & 1023]
        + p[(n >> 20) & 1023]
        + p[(n >> 10) & 1023]
        + p[n & 1023]
    )
