"""Shared limit and budget counters on JetStream: admitting from leases, and
settling what a request really used.

Counters are JetStream counter streams (``allow_msg_counter``): a publish
with ``Nats-Incr: +N`` adds N and answers the new total, exactly, whichever
process sent it. Background adds carry a ``Nats-Msg-Id``, so a retried one
counts once.
"""

from __future__ import annotations

import asyncio
import logging
import time

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError

from schemas import subjects
from schemas.errors import GatewayError, QuotaExceeded, QuotaUnavailable, RateLimitExceeded
from schemas.events import AlertEvent
from schemas.ids import new_id
from schemas.reservation import HOLD_PARALLEL, HOLD_REQUESTS, HOLD_SPEND, HOLD_TOKENS, Hold, RateState, Reservation
from services import pricing
from services.bus.events import EventPublisher
from services.quota import RATE_BLOCK_DIVISOR, SPEND_BLOCK_DIVISOR, Lease, Need

log = logging.getLogger("sluice.quota")
INCR = "Nats-Incr"
# Settlements and returned units wait at most this long to be sent, coalesced.
FLUSH_S = 0.05
# A lease untouched this long gives its units back.
IDLE_MS = 1_000
# Rate counters older than this are gone (windows are a minute; a parallel
# counter idle this long had nothing in flight, so it restarts from zero,
# which also heals a slot lost with a process killed mid-request).
RATES_MAX_AGE_S = 15 * 60
ALERT_SHARES = (80, 100)


async def ensure_streams(nc: Client, replicas: int = 1) -> None:
    js = nc.jetstream()
    for config in (
        StreamConfig(
            name=subjects.RATES_STREAM,
            subjects=[subjects.RATES_ALL],
            allow_msg_counter=True,
            allow_direct=True,
            max_msgs_per_subject=1,
            max_age=RATES_MAX_AGE_S,
            duplicate_window=120,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.SPEND_STREAM,
            subjects=[subjects.SPEND_ALL],
            allow_msg_counter=True,
            allow_direct=True,
            max_msgs_per_subject=1,
            duplicate_window=120,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    ):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)


class Counters:
    """Adds to counters: awaited when the caller needs the total; otherwise
    coalesced (every change to one counter within ``FLUSH_S`` goes as one
    increment) and sent in the background, retried until JetStream confirms.
    Coalescing is what keeps settlements off the hot path: one JetStream
    write per counter per flush, not three per request."""

    def __init__(self, js: JetStreamContext, events: EventPublisher | None = None) -> None:
        self.js = js
        self.events = events
        self._deltas: dict[str, int] = {}
        # spend subject -> its budget, to tell when a flush crosses 80% or 100%
        self._budgets: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None
        # Changes that go out in the loop's next turn (``add_soon``).
        self._now: dict[str, int] = {}
        self._now_scheduled = False
        self._pending: set[asyncio.Task[None]] = set()

    async def add(self, subject: str, delta: int, msg_id: str | None = None) -> int | None:
        """The counter's total after adding; None for a duplicate ``msg_id``."""
        headers = {INCR: f"{delta:+d}"}
        if msg_id:
            headers["Nats-Msg-Id"] = msg_id
        ack = await self.js.publish(subject, b"", headers=headers, timeout=2.0)
        return int(ack.val) if ack.val is not None else None

    def add_later(self, subject: str, delta: int, budget: int = 0) -> None:
        """``budget``: the limit of a spend counter, for its alerts."""
        self._deltas[subject] = self._deltas.get(subject, 0) + delta
        if budget:
            self._budgets[subject] = budget
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    def add_soon(self, subject: str, delta: int) -> None:
        """Sent in the event loop's next turn, coalesced with what else that
        turn adds to the counter: a parallel slot given back goes out right
        behind the reply that ends its request, long before the client's
        next request can reach policy."""
        self._now[subject] = self._now.get(subject, 0) + delta
        if not self._now_scheduled:
            self._now_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._now_scheduled = False
        deltas, self._now = self._now, {}
        self._send(deltas, {})

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_S)
        self.flush()

    def flush(self) -> None:
        deltas, self._deltas = self._deltas, {}
        budgets, self._budgets = self._budgets, {}
        self._send(deltas, budgets)

    def _send(self, deltas: dict[str, int], budgets: dict[str, int]) -> None:
        batch = new_id()
        for i, (subject, delta) in enumerate(deltas.items()):
            if delta:
                # One id per flush and counter: a retried publish counts once.
                task = asyncio.create_task(self._add_reliably(subject, delta, f"{batch}.{i}", budgets.get(subject, 0)))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

    async def _add_reliably(self, subject: str, delta: int, msg_id: str, budget: int) -> None:
        delay = 0.1
        for attempt in range(1, 11):
            try:
                total = await self.add(subject, delta, msg_id)
            except (TimeoutError, nats.errors.Error, APIError) as exc:
                log.warning("counter %s %+d: try %d failed: %r", subject, delta, attempt, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if budget and total is not None:
                self.alert_crossings(subject, total - delta, total, budget)
            return
        log.error("counter %s: lost an adjustment of %+d after retries", subject, delta)

    def alert_crossings(self, subject: str, before: int, after: int, limit: int) -> None:
        """An event each time a spend counter rises past 80% or 100% of its budget."""
        if self.events is None or limit <= 0:
            return
        for share in ALERT_SHARES:
            mark = limit * share // 100
            if before < mark <= after:
                usd = pricing.pico_to_usd(after)
                self.events.emit(
                    AlertEvent(
                        event_id=new_id(),
                        request_id="",
                        at_ns=time.time_ns(),
                        alert=f"budget_{share}",
                        model="",
                        deployment="",
                        detail=f"{subject}: spent ${usd} of ${pricing.pico_to_usd(limit)}",
                    )
                )

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self._flush_now()
        self.flush()
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)


def settle(counters: Counters, reservation: Reservation | None, tokens_used: int, cost_used: int) -> None:
    """Replace what admission reserved with what the request used: tokens and
    spend adjusted by the difference (coalesced, within ``FLUSH_S``), the
    parallel slot given back at once (``add_soon``). Called once, by whichever
    process ends the request, before it sends the last reply."""
    if reservation is None:
        return
    for hold in reservation.holds:
        if hold.kind == HOLD_REQUESTS:
            continue  # a request counts whatever became of it
        if hold.kind == HOLD_TOKENS:
            delta = tokens_used - hold.amount
        elif hold.kind == HOLD_SPEND:
            delta = cost_used - hold.amount
        else:  # a parallel slot
            counters.add_soon(hold.subject, -hold.amount)
            continue
        if delta:
            counters.add_later(hold.subject, delta, hold.limit if hold.kind == HOLD_SPEND else 0)


def release(counters: Counters, reservation: Reservation | None) -> None:
    """Give back everything a copy of a request that never ran was admitted
    with, at once (``add_soon``): the copy the ingress sent after it is the
    one that runs and counts, and a tight budget must find these units free
    when that copy comes to be admitted."""
    if reservation is None:
        return
    for hold in reservation.holds:
        counters.add_soon(hold.subject, -hold.amount)


class QuotaLedger:
    """One policy replica's leases on every counter it admits from."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.leases: dict[str, Lease] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="quota-sweeper")

    def _lease(self, need: Need) -> Lease:
        lease = self.leases.get(need.subject)
        if lease is None:
            divisor = SPEND_BLOCK_DIVISOR if need.kind == HOLD_SPEND else RATE_BLOCK_DIVISOR
            lease = self.leases[need.subject] = Lease(need.limit, divisor)
        lease.limit = need.limit  # an admin may have changed it
        return lease

    async def admit(self, wanted: list[Need], now_ms: int) -> Reservation:
        """Take every need or none; raise the error of the first that does not fit."""
        taken: list[tuple[Lease, Need]] = []
        short: list[tuple[Lease, Need]] = []
        for need in wanted:
            lease = self._lease(need)
            if need.amount > need.limit:
                self._give_back(taken)
                raise _refusal(need, lease, too_big=True)
            (taken if lease.take(need.amount, now_ms) else short).append((lease, need))
        if short:
            done = await asyncio.gather(*(self._top_up(lease, need) for lease, need in short), return_exceptions=True)
            failed = next((r for r in done if isinstance(r, BaseException)), None)
            if failed is not None:
                self._give_back(taken)
                raise failed
            for lease, need in short:
                if not lease.take(need.amount, now_ms):
                    self._give_back(taken)
                    raise _refusal(need, lease)
                taken.append((lease, need))
        holds = [Hold(need.subject, need.kind, need.amount, need.limit) for _, need in taken]
        return Reservation(holds=holds, rate=_rate_state(taken))

    async def _top_up(self, lease: Lease, need: Need) -> None:
        ask = lease.ask_size(need.amount)
        try:
            total = await self.counters.add(need.subject, ask)
        except (TimeoutError, nats.errors.Error, APIError) as exc:
            # Without the shared counter no one can know what is left: refuse
            # rather than admit past a limit.
            log.warning("counter %s unreachable: %r", need.subject, exc)
            raise QuotaUnavailable("The gateway cannot check this key's limits right now; try again.") from exc
        assert total is not None
        excess = lease.granted(ask, total)
        if need.kind == HOLD_SPEND:
            self.counters.alert_crossings(need.subject, total - ask, total - excess, need.limit)
        if lease.local < need.amount:
            # Not enough for this request: hold nothing another replica could
            # use, and give it back at once, not with the next coalesced
            # flush: the caller's next request, a smaller one that fits what
            # is left, must find it there.
            excess += lease.local
            lease.total -= lease.local
            lease.local = 0
            if excess:
                self.counters.add_soon(need.subject, -excess)
            return
        if excess:
            self.counters.add_later(need.subject, -excess)

    @staticmethod
    def _give_back(taken: list[tuple[Lease, Need]]) -> None:
        for lease, need in taken:
            lease.local += need.amount

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_MS / 1000)
            self.return_idle(int(time.time() * 1000) - IDLE_MS)

    def return_idle(self, before_ms: int) -> None:
        for subject, lease in list(self.leases.items()):
            if lease.used_ms >= before_ms:
                continue
            if lease.local:
                self.counters.add_later(subject, -lease.local)
                lease.total -= lease.local
                lease.local = 0
            del self.leases[subject]

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.return_idle(2**62)
        await self.counters.close()


def _refusal(need: Need, lease: Lease, too_big: bool = False) -> GatewayError:
    retry_s = max(1.0, need.reset_ms / 1000) if need.reset_ms else 1.0
    what = {HOLD_REQUESTS: "requests per minute", HOLD_TOKENS: "tokens per minute", HOLD_PARALLEL: "requests in flight"}
    if need.kind == HOLD_SPEND:
        return QuotaExceeded(
            f"This request would exceed the {need.scope}'s budget of ${pricing.pico_to_usd(need.limit)}"
            f" (${pricing.pico_to_usd(max(0, need.limit - lease.total))} left; it may cost up to"
            f" ${pricing.pico_to_usd(need.amount)}).",
            retry_after_s=need.reset_ms / 1000 if need.reset_ms else None,
        )
    if too_big:
        return RateLimitExceeded(
            f"Request too large: it needs {need.amount} {what[need.kind].split(' per')[0]}, more than the"
            f" {need.scope}'s limit of {need.limit} {what[need.kind]}.",
            retry_after_s=retry_s,
        )
    error = RateLimitExceeded(
        f"Rate limit reached for this {need.scope}: {need.limit} {what[need.kind]}. Try again in {retry_s:.0f} s.",
        retry_after_s=retry_s,
    )
    if need.kind == HOLD_REQUESTS:
        error.rate = RateState(limit_requests=need.limit, reset_requests_ms=need.reset_ms)
    elif need.kind == HOLD_TOKENS:
        error.rate = RateState(limit_tokens=need.limit, reset_tokens_ms=need.reset_ms)
    return error


def _rate_state(taken: list[tuple[Lease, Need]]) -> RateState | None:
    """The key's limits when it has them, else its tenant's."""
    requests = tokens = None
    for lease, need in taken:
        if need.kind == HOLD_REQUESTS and (requests is None or need.scope == "key"):
            requests = (lease, need)
        elif need.kind == HOLD_TOKENS and (tokens is None or need.scope == "key"):
            tokens = (lease, need)
    if requests is None and tokens is None:
        return None
    state = RateState()
    if requests is not None:
        lease, need = requests
        state.limit_requests, state.remaining_requests, state.reset_requests_ms = (
            need.limit,
            lease.remaining(),
            need.reset_ms,
        )
    if tokens is not None:
        lease, need = tokens
        state.limit_tokens, state.remaining_tokens, state.reset_tokens_ms = need.limit, lease.remaining(), need.reset_ms
    return state
