"""The tenant's moderation guardrail as the provider runs it, before a chat
request's own call (``services.moderation_guardrail`` says what it checks
and what its verdicts mean).

The moderation walks its group's deployments as any request does
(``attempts.Walk``: fail-over, retry rounds, within the request's
deadline), one try a ``tasks.moderation.call``. Its tries are reported as
the chat's are (attempt rows, every routing replica's health board), with
``number`` 0: they are the guardrail's, not the request's own tries, whose
numbers start at 1. Its time is a span of its own ("moderation") within
the provider's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

from schemas.chat import ChatBody, Cost, Usage
from schemas.envelope import Deployment, ModerationCheck, Span
from schemas.errors import GatewayError
from schemas.events import Detection
from schemas.tasks import ModerationResult
from services import moderation_guardrail as guardrail
from services.providers.attempts import Try, Walk, WalkFailed
from services.providers.call import CallOutcome, CallProgress, OnDelta
from services.providers.http import Upstream
from services.providers.tasks import moderation

# A try that ended, and whether its end tells of the deployment's health.
Tried = Callable[[Try, bool], Awaitable[None]]
# The attempt number of the guardrail's tries.
GUARDRAIL_TRY = 0


class GuardrailStop(Exception):
    """The guardrail refused the request (flagged, or not checked, for a
    tenant that blocks): ``error`` is its answer; no chat call is made."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class ModerationGate:
    """One request's guardrail: ``run`` once, before the chat call."""

    def __init__(
        self,
        check: ModerationCheck,
        body: ChatBody,
        client: Upstream,
        tried: Tried,
        in_flight: dict[str, int],
        deadline_ns: int = 0,
    ) -> None:
        self.check = check
        self.inputs = guardrail.texts(body)
        self.client = client
        self.tried = tried
        self.in_flight = in_flight
        self.walk = Walk(check.candidates, retries=check.retries, deadline_ns=deadline_ns) if check.candidates else None
        # What it found (a detection each flagged category of each text, or
        # the mark of a request it could not check), what the moderation
        # used and cost, and its span: once ``run`` returned or raised.
        self.found: list[Detection] = []
        self.usage: Usage | None = None
        self.cost = Cost()
        self.span: Span | None = None
        # ``run`` ended by itself (not cut short by the deadline or a cancel).
        self.done = False

    @property
    def deployment(self) -> Deployment | None:
        """The moderation deployment called last, if any."""
        return self.walk.current if self.walk is not None and self.walk.tries else None

    async def run(self) -> None:
        """Check the request. Raises ``GuardrailStop`` when it may not go on."""
        start_ns = time.time_ns()
        try:
            error = await self._moderate()
        finally:
            self.span = Span("moderation", start_ns, time.time_ns())
        self.done = True
        block = self.check.action == "block"
        if error is not None or (self.inputs and self.walk is None):
            self.found = [guardrail.unchecked(self.check.action)]
            if block:
                raise GuardrailStop(guardrail.unavailable(self.check, error))
        elif self.found and block:
            raise GuardrailStop(guardrail.refusal(self.found))

    async def cut(self, error: GatewayError, *, says_health: bool) -> None:
        """Record the try the deadline or a cancel cut short, as the request's own would be."""
        walk = self.walk
        if walk is None or self.done or not walk.progress.sent:
            return
        dep, progress = walk.current, walk.progress
        start_ns = walk.tries[-1].end_ns if walk.tries else (self.span.start_ns if self.span else 0)
        cut = Try(GUARDRAIL_TRY, dep, start_ns, progress.first_byte_ns, time.time_ns(), error.status, error)
        walk.tries.append(cut)
        await self.tried(cut, says_health)

    async def _moderate(self) -> GatewayError | None:
        """The verdicts on the request's texts (in ``found``); the error that
        kept them from being had, if one did."""
        if not self.inputs or self.walk is None:
            return None  # no text to judge; or no deployment, which ``run`` answers
        task = guardrail.request_of(self.check, self.inputs)

        async def one_try(dep: Deployment, progress: CallProgress, _on_delta: OnDelta | None) -> CallOutcome:
            self.in_flight[dep.name] = self.in_flight.get(dep.name, 0) + 1
            try:
                return await moderation.call(self.client, dep, task, progress)
            finally:
                self.in_flight[dep.name] -= 1

        try:
            outcome = await self.walk.run(one_try, self._ended)
        except WalkFailed as failed:
            return failed.error
        result = outcome.task_result
        assert isinstance(result, ModerationResult), "a moderation call answers with verdicts, one an input"
        self.usage, self.cost = outcome.usage, outcome.cost
        self.found = guardrail.found(self.inputs, result.results, self.check.action)
        return None

    async def _ended(self, t: Try) -> None:
        await self.tried(dataclasses.replace(t, number=GUARDRAIL_TRY), True)
