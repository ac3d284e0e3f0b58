"""A bounded memory of recently seen ids: each kept for a window of time, at
most so many, the oldest forgotten first. Memory stays bounded whatever
callers send."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class RecentMap(Generic[V]):
    """Recent keys, each with the first value given for it."""

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


class RecentSet:
    """A ``RecentMap`` of keys alone."""

    def __init__(self, window_ns: int, max_size: int) -> None:
        self._kept: RecentMap[None] = RecentMap(window_ns, max_size)

    def add(self, key: str, now_ns: int | None = None) -> bool:
        """Remember ``key``; True if it was not remembered already."""
        return self._kept.add(key, None, now_ns)[0]

    def __contains__(self, key: str) -> bool:
        return key in self._kept
