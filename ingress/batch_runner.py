"""Running one line of a batch: the job runner (``ingress.jobs``) takes it
from the tenant's batch queue and hands it here.

A line runs as any durable job does (``JobRun``: claimed, fenced, never
sent upstream twice), its request carrying the batch id. Its outcome is
what ``POST <endpoint>`` would have answered (status and body, rendered by
the endpoint's own renderer), written once to the lines bucket
(``BatchStore.write_outcome``: the first write wins); only then is the job
acknowledged. A line delivered again finds its outcome there, or runs
through ``JobRun``'s take-over (which finds its answer, waits for it, or
ends it as worker_died if a provider took it).

A line queued twice (its batch queued again by a sweeper, past the
stream's duplicate window) is run by one job only: the first to take it
(``BatchStore.own_line``). Any other copy is dropped, as the owner's job
stays queued until the line's outcome is kept.

A line whose batch was cancelled (or whose window ran out) before it
started ends as "batch_cancelled" ("batch_expired") with no request at
all: nothing reaches the upstream, nothing is charged. A line an earlier
run claimed is not sent again either: it ends as that run's request did
(waiting for it if it may still answer), or, if no provider took that
request, as not run.

A line refused for its key's own rate limit (requests or tokens a minute,
requests in flight) is not an outcome: its job is delivered again once the
limit has room (``Paced``), and runs again (nothing went upstream). A line
refused for its budget ends so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg

from ingress.batch_store import BatchStore
from ingress.gateway import Gateway
from ingress.job_run import JobRun
from schemas.batches import BatchLine, BatchOutput, BatchRecord, decode_line, decode_output
from schemas.errors import GatewayError, InternalError, RateLimitExceeded
from schemas.replies import Failure, Final
from services import batches
from services.apis.base import ClientApi, RequestView
from services.apis.table import BY_PATH

log = logging.getLogger("sluice.ingress.batches")
# A batch's record is read again after this long: how soon runners see a cancel.
RECORD_FRESH_S = 0.25
# A line refused for its key's rate limit waits at most this long before it tries again.
MAX_PACE_S = 60.0
_decode_body = msgspec.json.Decoder(dict[str, Any]).decode


class Paced(msgspec.Struct):
    """A line refused for its key's own rate limit (requests, tokens, in
    flight): not an outcome. A batch's lines wait for room as OpenAI's
    batches do, rather than failing for a limit a direct caller retries."""

    delay_s: float


class BatchLines:
    def __init__(self, gw: Gateway, store: BatchStore, ended: Callable[[str, str], None]) -> None:
        self.gw = gw
        self.store = store
        # Told of each line that ended (``BatchFinisher.touched``): its batch may be done.
        self._ended = ended
        # batch id -> (when read, its record)
        self._records: dict[str, tuple[float, BatchRecord | None]] = {}

    async def run(self, run: JobRun, msg: Msg) -> None:
        """Run the line (or find how it ended), keep its outcome, then ack."""
        try:
            line = decode_line(msg.data)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # Only the gateway queues lines: one that does not decode is not a line.
            log.error("batch job %s does not decode; dropped", run.id)
            await msg.ack()
            return
        owner = await self.store.own_line(line.batch_id, line.line, run.id)
        if owner != run.id:
            log.warning("batch %s line %s was queued twice: job %s runs it", line.batch_id, line.line, owner)
            await msg.ack()
            return
        # Only a line delivered before can have ended already (a lookup saved on every other).
        redelivered = (msg.metadata.num_delivered or 1) > 1
        stored = await self.store.outcome(line.batch_id, line.line) if redelivered else None
        if stored is None:
            record = await self._record(run.tenant_id, line.batch_id)
            if record is None:
                log.warning("batch %s of line %s is gone; the line is dropped", line.batch_id, line.line)
                await msg.ack()
                return
            run.batch_id = record.id
            output = await self._outcome(run, msg, line, record)
            if isinstance(output, Paced):
                # Refused for the key's own rate limit: it runs again once the limit has room.
                await msg.nak(delay=output.delay_s)
                return
            await self.store.write_outcome(line.batch_id, line.line, output)
        else:
            # Ended in an earlier run that died before its ack: its mark too, if that was lost.
            await self.store.write_outcome(line.batch_id, line.line, decode_output(stored))
        self._ended(run.tenant_id, line.batch_id)
        await msg.ack()

    async def _outcome(self, run: JobRun, msg: Msg, line: BatchLine, record: BatchRecord) -> BatchOutput | Paced:
        delivery = msg.metadata.num_delivered or 1
        api = BY_PATH[record.endpoint]
        body = _decode_body(bytes(line.body))
        fate = batches.line_fate(record, time.time())
        try:
            if fate is not None:
                # Not to be sent now; but an earlier run may have sent it (only a line delivered before).
                earlier = await run.earlier_end(body) if delivery > 1 else None
                if earlier is None:
                    return batches.not_run(line.custom_id, fate)
                reply: Final | Failure = earlier.result  # type: ignore[assignment]
            else:
                reply = (await run.run(body, {}, delivery, again_if_refused=True)).result  # type: ignore[assignment]
                if isinstance(reply, Failure) and reply.code == RateLimitExceeded.code:
                    return Paced(min(MAX_PACE_S, max(1.0, reply.retry_after_s or 1.0)))
        except GatewayError as exc:
            reply = Failure.from_error(run.request_id, exc)
        return _answered(api, run, line, body, reply)

    async def _record(self, tenant_id: str, batch_id: str) -> BatchRecord | None:
        now = time.monotonic()
        cached = self._records.get(batch_id)
        if cached is not None and now - cached[0] < RECORD_FRESH_S:
            return cached[1]
        record, _ = await self.store.get(tenant_id, batch_id)
        if len(self._records) > 1024:  # batches long ended
            self._records = {k: v for k, v in self._records.items() if now - v[0] < RECORD_FRESH_S}
        self._records[batch_id] = (now, record)
        return record


def _answered(
    api: ClientApi, run: JobRun, line: BatchLine, body: dict[str, Any], reply: Final | Failure
) -> BatchOutput:
    return line_answer(api, run.request_id, line.custom_id, body, reply)


def line_answer(
    api: ClientApi, request_id: str, custom_id: str, body: dict[str, Any], reply: Final | Failure
) -> BatchOutput:
    """What ``POST <endpoint>`` would have answered, as the line's outcome."""
    if isinstance(reply, Final):
        try:
            parsed = api.parse(msgspec.json.encode({**body, "stream": False} if api.streams else body))
            view = RequestView(request_id, int(time.time()), parsed.model, parsed)
            return batches.answered(custom_id, request_id, 200, api.renderer(view).final(reply))
        except (GatewayError, AssertionError):
            # Answered, but not in a shape this endpoint renders (cannot happen for a line that parsed).
            log.exception("line %s of a batch: its answer could not be rendered", custom_id)
            reply = Failure.from_error(request_id, InternalError("The answer could not be rendered."))
    return batches.answered(custom_id, request_id, reply.status, api.error_body(reply))
