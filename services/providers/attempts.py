"""One request's way through its candidate deployments: fallbacks, retries
with backoff, and the context-length move to a larger group.

The provider worker builds a ``Walk`` from what routing put on the envelope
and hands it the call to make; the walk decides, after each failed try,
whether to move on, wait, or give up:

* a retryable failure (429, 5xx, timeout, no connection, a refused provider
  key) moves to the next candidate; after a round where every candidate
  failed, the walk waits (exponential backoff with full jitter, at least the
  longest ``Retry-After`` it was given) and goes round again, ``retries``
  times at most, never past the request's deadline;
* a context-length error moves once to the larger-context candidates;
* anything else (the caller's 400, a content filter) ends the walk at once;
* once a streamed answer has sent a chunk to the client, nothing is retried:
  the client already holds part of one answer and must not get a second;
* nor is a try its call says may not be repeated (``CallFailed.repeatable``:
  a REST call that is not idempotent and whose request may have reached the
  instance), whatever its error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from schemas.chat import Delta
from schemas.envelope import Deployment
from schemas.errors import ContextLengthExceeded, GatewayError, UpstreamAuthFailed, UpstreamError, UpstreamTimeout
from services.providers.call import CallFailed, CallOutcome, CallProgress, OnDelta

BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 8.0
# Longest wait between rounds that is worth it (a Retry-After may ask more).
RETRY_AFTER_CAP_S = 30.0

# Seeding a Random costs an os.urandom call: one per process, not per request.
_RNG = random.Random()


def retryable(error: GatewayError) -> bool:
    """A failure another deployment (or the same one later) may not have."""
    if isinstance(error, (UpstreamError, UpstreamTimeout, UpstreamAuthFailed)):
        return True
    return error.status == 429 or error.status >= 500


def backoff_s(round_: int, retry_after_s: float, rng: random.Random) -> float:
    """Full jitter over an exponential ceiling, but no less than the upstream asked."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**round_)
    return max(rng.uniform(0, ceiling), min(retry_after_s, RETRY_AFTER_CAP_S))


@dataclass(slots=True)
class Try:
    """One upstream try, for its attempt row and for shared health."""

    number: int
    deployment: Deployment
    start_ns: int
    first_byte_ns: int
    end_ns: int
    # 200, or the status of the error it ended with.
    status: int
    error: GatewayError | None = None
    # Tokens a successful try used (a deployment's own TPM counts them).
    tokens: int = 0


Call = Callable[[Deployment, CallProgress, OnDelta | None], Awaitable[CallOutcome]]
OnTry = Callable[[Try], Awaitable[None]]


class WalkFailed(Exception):
    """Every allowed try failed; ``error`` is the last one's."""

    def __init__(self, error: GatewayError, last: Try) -> None:
        super().__init__(error.message)
        self.error = error
        self.last = last


class Walk:
    def __init__(
        self,
        candidates: list[Deployment],
        *,
        context_candidates: list[Deployment] | None = None,
        retries: int = 0,
        deadline_ns: int = 0,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not candidates:
            raise ValueError("a walk needs at least one candidate")
        self.candidates = candidates
        self.context_candidates = context_candidates or []
        self.retries = max(0, retries)
        self.deadline_ns = deadline_ns
        self.rng = rng or _RNG
        self.sleep = sleep
        self.tries: list[Try] = []
        # The deployment being called and how far its call got: when the walk
        # is cut short from outside (deadline, cancel), this is what was billed.
        self.current: Deployment = candidates[0]
        self.progress = CallProgress()
        # A chunk of the answer reached the client: from here nothing is retried.
        self.delivered = False

    async def run(self, call: Call, on_try: OnTry, on_delta: OnDelta | None = None) -> CallOutcome:
        forward = self._forwarding(on_delta) if on_delta is not None else None
        moved_to_larger = False
        candidates = self.candidates
        round_ = 0
        while True:
            retry_after = 0.0
            for dep in candidates:
                try:
                    outcome = await self._one(call, dep, forward, on_try)
                except CallFailed as failed:
                    error = failed.error
                    if self.delivered or not failed.repeatable:
                        raise WalkFailed(error, self.tries[-1]) from failed
                    if isinstance(error, ContextLengthExceeded) and self.context_candidates and not moved_to_larger:
                        moved_to_larger = True
                        break
                    if not retryable(error):
                        raise WalkFailed(error, self.tries[-1]) from failed
                    retry_after = max(retry_after, error.retry_after_s or 0.0)
                    continue
                return outcome
            else:
                # Every candidate of this round failed.
                if round_ >= self.retries:
                    last = self.tries[-1]
                    assert last.error is not None
                    raise WalkFailed(last.error, last)
                wait = backoff_s(round_, retry_after, self.rng)
                if self.deadline_ns and time.time_ns() + wait * 1e9 >= self.deadline_ns:
                    last = self.tries[-1]
                    assert last.error is not None
                    raise WalkFailed(last.error, last)
                await self.sleep(wait)
                round_ += 1
                continue
            # A context-length error: the larger group, with its own rounds.
            candidates, round_ = self.context_candidates, 0

    async def _one(self, call: Call, dep: Deployment, on_delta: OnDelta | None, on_try: OnTry) -> CallOutcome:
        self.current, self.progress = dep, CallProgress()
        number = len(self.tries) + 1
        try:
            outcome = await call(dep, self.progress, on_delta)
        except CallFailed as failed:
            done = Try(
                number, dep, failed.start_ns, failed.first_byte_ns, time.time_ns(), failed.error.status, failed.error
            )
            self.tries.append(done)
            await on_try(done)
            raise
        # A REST service's answer is a success of the try whatever its status; the row shows that status.
        status = outcome.rest.status if outcome.rest is not None else 200
        done = Try(
            number,
            dep,
            outcome.start_ns,
            outcome.first_byte_ns,
            outcome.end_ns,
            status,
            tokens=outcome.usage.total_tokens,
        )
        self.tries.append(done)
        await on_try(done)
        return outcome

    def _forwarding(self, on_delta: OnDelta) -> OnDelta:
        async def forward(delta: Delta, model: str) -> None:
            self.delivered = True
            await on_delta(delta, model)

        return forward
