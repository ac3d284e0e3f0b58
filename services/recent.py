"""A bounded memory of recently seen ids: each kept for a window of time, at
most so many, the oldest forgotten first. Memory stays bounded whatever
callers send."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


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


class RecentMap(Generic[V]):
    """A ``RecentSet`` that keeps a value with each key: the first one given."""

    def __init__(self, window_ns: int, max_size: int) -> None:
        self._window_ns = window_ns
        self._max = max_size
        self._kept: OrderedDict[str, tuple[int, V]] = OrderedDict()

    def add(self, key: str, value: V, now_ns: int | None = None) -> tuple[bool, V]:
        """Remember ``key`` with ``value`` unless it is remembered already:
        (whether it was new, the value kept)."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        kept = self._kept
        while kept and (len(kept) >= self._max or next(iter(kept.values()))[0] < now_ns - self._window_ns):
            kept.popitem(last=False)
        known = kept.get(key)
        if known is not None:
            return False, known[1]
        kept[key] = (now_ns, value)
        return True, value

    def __contains__(self, key: str) -> bool:
        return key in self._kept
