"""One provider batch's progress over time, whatever its API: a batch ends
``delay_s`` after it was created, its lines answered one by one over that
time (line i of n when its share of the delay has passed), so a cancel
mid-run leaves the lines not yet answered unanswered.

The time line, as a share of the delay: validating until 5 %, lines
answered from 5 % to 90 %, finalizing until 100 %, then ended. Work is
done lazily, when someone reads the batch (``advance``): the lines due by
then, SLICE at a time with the event loop let go between slices, so a
10,000-line batch never holds it. Each answer is rendered at once into the
family's output bytes and only its status and usage are kept.

A batch's clock (``seen``) moves only when it is advanced, so what a read
says of it (its phase, counts, outputs) is always what was done by then:
a batch never reads "ended" with a line still unanswered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from loadtest.mock_upstream.batch_lines import LineAnswer

SLICE = 200
VALIDATED_AT = 0.05
ANSWERED_BY = 0.9

Phase = Literal["validating", "running", "finalizing", "ended"]


class Line:
    __slots__ = ("answer", "body", "custom_id")

    def __init__(self, custom_id: str, body: bytes) -> None:
        self.custom_id = custom_id
        # The request as the batch carried it (OpenAI's ``body``, Anthropic's ``params``); dropped once answered.
        self.body: bytes | None = body
        self.answer: LineAnswer | None = None


class BatchRun:
    """``answer``: one line's answer from its body; ``render``: that answer as
    the family's output line (JSONL, newline included)."""

    def __init__(
        self,
        lines: list[Line],
        delay_s: float,
        answer: Callable[[bytes], LineAnswer],
        render: Callable[[str, LineAnswer], bytes],
        now: float | None = None,
    ) -> None:
        self.lines = lines
        self.created = time.time() if now is None else now
        self.delay_s = max(0.0, delay_s)
        self._answer = answer
        self._render = render
        # Lines answered (the first ``answered`` of ``lines``), and their rendered answers by outcome.
        self.answered = 0
        self.succeeded = 0
        self.ok_out = bytearray()
        self.error_out = bytearray()
        # When a cancel came; from then on no line is answered.
        self.cancelled_at: float | None = None
        # The time the batch was last brought up to (``advance``); never yet.
        self.seen = float("-inf")
        self._lock = asyncio.Lock()

    def at(self, share: float) -> float:
        """The time ``share`` of the delay has passed (unix seconds)."""
        return self.created + self.delay_s * share

    @property
    def ended_at(self) -> float:
        return self.cancelled_at if self.cancelled_at is not None else self.at(1.0)

    def phase(self) -> Phase:
        """Where the batch was when last advanced."""
        if self.cancelled_at is not None or self.seen >= self.at(1.0):
            return "ended"
        if self.seen < self.at(VALIDATED_AT):
            return "validating"
        return "running" if self.seen < self.at(ANSWERED_BY) else "finalizing"

    def due(self, now: float) -> int:
        """How many lines have been answered by ``now`` (all by ANSWERED_BY of the delay)."""
        n = len(self.lines)
        window = self.delay_s * (ANSWERED_BY - VALIDATED_AT)
        if window <= 0:
            return n
        elapsed = now - self.at(VALIDATED_AT)
        return max(0, min(n, int(n * elapsed / window)))

    @property
    def failed(self) -> int:
        return self.answered - self.succeeded

    @property
    def unanswered(self) -> int:
        """Lines a cancel left unanswered (none before the batch ended)."""
        return len(self.lines) - self.answered if self.cancelled_at is not None else 0

    async def advance(self, now: float | None = None) -> None:
        """Answer the lines due by ``now``, and move the batch's clock there."""
        async with self._lock:
            await self._answer_due(time.time() if now is None else now)

    async def cancel(self, now: float | None = None) -> bool:
        """Answer what was due, then answer no more. False if it had already ended."""
        async with self._lock:
            await self._answer_due(time.time() if now is None else now)
            if self.phase() == "ended":
                return False
            self.cancelled_at = self.seen
            for line in self.lines[self.answered :]:
                line.body = None
            return True

    async def _answer_due(self, now: float) -> None:
        if self.cancelled_at is not None or now <= self.seen:
            return
        due = self.due(now)
        while self.answered < due:
            for line in self.lines[self.answered : min(due, self.answered + SLICE)]:
                answer = self._answer(line.body or b"")
                line.answer = LineAnswer(answer.status, {}, answer.usage)
                line.body = None
                if answer.status < 400:
                    self.succeeded += 1
                    self.ok_out += self._render(line.custom_id, answer)
                else:
                    self.error_out += self._render(line.custom_id, answer)
                self.answered += 1
            await asyncio.sleep(0)
        self.seen = now
