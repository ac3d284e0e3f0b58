"""A bounded memory of recently seen ids: each kept for a window of time, at
most so many, the oldest forgotten first. Memory stays bounded whatever
callers send."""

from __future__ import annotations

import time
from collections import OrderedDict


class RecentSet:
    def __init__(self, window_ns: int, max_size: int) -> None:
        self._window_ns = window_ns
        self._max = max_size
        self._seen: OrderedDict[str, int] = OrderedDict()

    def add(self, key: str, now_ns: int | None = None) -> bool:
        """Remember ``key``; True if it was not remembered already."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        seen = self._seen
        while seen and (len(seen) >= self._max or next(iter(seen.values())) < now_ns - self._window_ns):
            seen.popitem(last=False)
        if key in seen:
            return False
        seen[key] = now_ns
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._seen
