"""The fence protocol: a request is sent again without ever reaching the
upstream twice, and the first send costs nothing extra.

A requester (the ingress's session) sends a request once. If no provider
says it took it (``Accepted``) in time, the request may have been lost on
the way, or may be queued behind others, or its provider's ``Accepted``
may have been lost. Before it sends a copy, the requester asks every live
provider process (``Fence``, one broadcast): each answers that it holds the
request (it took a copy: the requester waits for that one), or that it does
not, and from then on refuses every older copy. Once every live provider
has answered "not here", no older copy can reach the upstream any more, and
the new copy goes out.

Why no race is left: a provider takes a copy (``Fences.admits`` then its
``seen`` set) and answers a fence (``holds`` then ``Fences.raise_to``) in
its one event loop, each without awaiting between the check and the
mark, so for any copy either the take came first (the answer says "holds")
or the fence did (the take refuses it). A provider that dies holding the
request has written its ``Accepted`` before calling the upstream, so the
requester knows the process and ends the request when the supervisor says
it died, rather than sending it again. A provider that stops answering
(a NATS node it was on died, a stall) is waited for while its heartbeat is
younger than ``STALE_S``, longer than the supervisor waits before it kills
a silent process and says so.

What policy reserved goes with the copies: a copy sent again carries the
reservation its requester knows of (``FenceRound.carries``), and the fence
says which one that is. A copy sent before the requester heard that an
older one was admitted is admitted afresh, so the older copy's reservation
would be held for ever; the provider refusing that older copy gives it
back (``Fences.orphans``). Policy hears the fences too, and admits no copy
older than one it heard of: a first copy that waited in policy past the
resend (a stall, a first limited request building its tokenizer) would
otherwise hold the request's units beside the copy that runs, and on a
tight budget or limit get that copy refused.

This module is the bookkeeping of both sides, with no NATS in it.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from schemas.reservation import Reservation

# A request that no provider took this long after it was published may have
# been lost on the way (a stage died holding it, or had no live replica when
# it was sent): policy and routing take well under a millisecond, so it is
# sent again, up to MAX_RESENDS times while its deadline allows. When a
# process dies or comes back, requests unclaimed for NEWS_RESEND_AFTER_NS go
# at once. Every copy after the first goes out only once every live provider
# said it holds no copy and will take no older one (this module): a
# first copy merely queued somewhere can then never reach the upstream too.
# A fence not answered by everyone is asked again every FENCE_AGAIN_S.
FIRST_RESEND_AFTER_S = 0.5
RESEND_AFTER_S = 1.0
FENCE_AGAIN_S = 0.5
NEWS_RESEND_AFTER_NS = 100_000_000
MAX_RESENDS = 8

# A provider not heard of for this long is gone: the supervisor kills a
# process silent for 5 s (and says it died), so one silent longer was.
STALE_S = 6.0
# Copies of one request per delivery of a job: a job taken over after its
# runner died sends copies numbered from ``(delivery - 1) * COPIES_PER_RUN``,
# above any copy an earlier runner sent.
COPIES_PER_RUN = 100


def reservation_copy(reservation: Reservation | None) -> int:
    """The copy a reservation was made for; -1 for none."""
    return reservation.copy if reservation is not None else -1


class ProviderRoster:
    """The provider processes a requester must hear from before it sends a
    copy: every process whose heartbeat names the provider stage, until it
    is stale or the supervisor says it died."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self._last: dict[str, float] = {}

    def saw(self, name: str, serves: list[str], now: float) -> None:
        if "provider" in serves:
            self._last[name] = now

    def died(self, name: str) -> None:
        self._last.pop(name, None)

    def live(self, now: float) -> set[str]:
        return {name for name, at in self._last.items() if now - at <= self.stale_s}


class FenceRound:
    """One round of asking, for the copy that goes out when it is clear."""

    def __init__(self, copy: int, waiting: set[str], carries: Reservation | None) -> None:
        self.copy = copy
        self.waiting = waiting
        # Fixed when the round starts: the fence tells the providers, and
        # the copy must carry what they were told.
        self.carries = carries

    @property
    def carries_copy(self) -> int:
        return reservation_copy(self.carries)

    def answered(self, worker: str, copy: int) -> None:
        """A provider holds no copy and will take none below this round's."""
        if copy == self.copy:  # a late "not here" from an earlier round says nothing of this one's copies
            self.waiting.discard(worker)

    def gone(self, live: set[str]) -> None:
        """Providers that died or went stale will take nothing."""
        self.waiting &= live

    @property
    def clear(self) -> bool:
        return not self.waiting


# How long, and how many, fences a process remembers (at least a request's
# timeout: a copy is never taken after its deadline).
FENCE_MEMORY_NS = 60 * 1_000_000_000
FENCE_MEMORY_MAX = 50_000


def remembered_fences(timeout_s: float) -> Fences:
    """The fences a provider answers, or policy hears, kept past any deadline."""
    return Fences(max(FENCE_MEMORY_NS, int(timeout_s * 1e9)), FENCE_MEMORY_MAX)


class Fences:
    """A provider's or policy's memory of fences: request id -> the lowest
    copy it may still take, and the copy whose reservation goes on with the
    copies from there. Bounded like ``RecentSet``: kept ``window_ns``
    (longer than any request's deadline, after which no copy is taken
    anyway), at most ``max_size``, the oldest forgotten first."""

    def __init__(self, window_ns: int, max_size: int) -> None:
        self._window_ns = window_ns
        self._max = max_size
        # request id -> (lowest copy taken, copy whose reservation goes on or None, when)
        self._floor: OrderedDict[str, tuple[int, int | None, int]] = OrderedDict()

    def raise_to(self, request_id: str, copy: int, carries: int | None = None, now_ns: int | None = None) -> None:
        now_ns = time.time_ns() if now_ns is None else now_ns
        floor = self._floor
        while floor and (len(floor) >= self._max or next(iter(floor.values()))[2] < now_ns - self._window_ns):
            floor.popitem(last=False)
        known = floor.pop(request_id, None)
        if known is not None and known[0] > copy:  # a late fence of an earlier round
            floor[request_id] = (known[0], known[1], now_ns)
        else:
            floor[request_id] = (copy, carries, now_ns)

    def admits(self, request_id: str, copy: int) -> bool:
        known = self._floor.get(request_id)
        return known is None or copy >= known[0]

    def orphans(self, request_id: str, reservation: Reservation | None) -> bool:
        """A refused copy's ``reservation`` goes on with no newer copy: the
        refusing provider settles it, or it is held for ever."""
        known = self._floor.get(request_id)
        if reservation is None or known is None or known[1] is None:
            return False
        return reservation.copy != known[1]
