"""The replies a provider sent for each request, kept a little while so that
they can be sent again.

Replies travel on core NATS, which keeps nothing: a reply in flight when a
NATS node dies is gone, and the ingress waiting for it would wait until the
deadline although the upstream answered (and was billed). The provider
keeps each request's encoded replies while it runs and ``KEEP_NS`` after,
and sends them again when the ingress asks (``ReplayAsk``). Memory stays
bounded: at most ``MAX_REQUESTS`` finished requests, and ``MAX_BYTES`` per
request (a longer answer keeps only its last replies; a replay that would
need the dropped ones cannot be served, and the request ends as before, at
its stream's idle timeout).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from services.flow_window import WINDOW

# The ingress asks after 2 s of silence; a NATS client reconnects within a
# second or two.
KEEP_NS = 10 * 1_000_000_000
MAX_REQUESTS = 10_000
# A paced answer (a REST body) is never more than its window (and a slice,
# and the head's reply) past what the ingress took in order: kept whole, a
# reply lost in it can always be sent again.
MAX_BYTES = WINDOW + 512 * 1024


class _Sent:
    __slots__ = ("dropped", "payloads", "reply_to", "size")

    def __init__(self, reply_to: str) -> None:
        self.reply_to = reply_to
        self.payloads: list[bytes] = []
        self.size = 0
        # Replies dropped from the front to stay under MAX_BYTES.
        self.dropped = 0


class ReplyLog:
    def __init__(self, keep_ns: int = KEEP_NS, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> None:
        self._keep_ns, self._max_requests, self._max_bytes = keep_ns, max_requests, max_bytes
        self._running: dict[str, _Sent] = {}
        # request id -> (when it ended, what it sent), oldest first
        self._ended: OrderedDict[str, tuple[int, _Sent]] = OrderedDict()

    def sent(self, request_id: str, reply_to: str, payload: bytes) -> None:
        entry = self._running.get(request_id)
        if entry is None:
            entry = self._running[request_id] = _Sent(reply_to)
        entry.payloads.append(payload)
        entry.size += len(payload)
        while entry.size > self._max_bytes and len(entry.payloads) > 1:
            entry.size -= len(entry.payloads.pop(0))
            entry.dropped += 1

    def ended(self, request_id: str, now_ns: int | None = None) -> None:
        entry = self._running.pop(request_id, None)
        if entry is None:
            return
        now_ns = time.time_ns() if now_ns is None else now_ns
        self._ended[request_id] = (now_ns, entry)
        self._forget_old(now_ns)

    def replies(self, request_id: str, now_ns: int | None = None) -> tuple[str, list[bytes], int] | None:
        """(where the replies went, the payloads kept, how many were dropped
        before them), or None if this process keeps nothing of the request."""
        self._forget_old(time.time_ns() if now_ns is None else now_ns)
        entry = self._running.get(request_id)
        if entry is None:
            kept = self._ended.get(request_id)
            if kept is None:
                return None
            entry = kept[1]
        return entry.reply_to, list(entry.payloads), entry.dropped

    def __len__(self) -> int:
        return len(self._running) + len(self._ended)

    def _forget_old(self, now_ns: int) -> None:
        ended = self._ended
        while ended and (len(ended) > self._max_requests or next(iter(ended.values()))[0] < now_ns - self._keep_ns):
            ended.popitem(last=False)
