"""ULID-like ids: 48-bit millisecond time + 80 random bits, 26 characters of
Crockford base32.

Sortable by creation time, which keeps ClickHouse ordering and log reading
easy; random enough that replicas never coordinate. Encoded by the C base32
codec and a translation to Crockford's alphabet, whose characters, unlike
RFC 4648's, are in ASCII order, so the text sorts like the bytes.
"""

from __future__ import annotations

import base64
import os
import time

_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(now_ns: int | None = None) -> str:
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    raw = ms.to_bytes(6, "big") + os.urandom(10)
    return base64.b32encode(raw)[:26].translate(_TO_CROCKFORD).decode()
