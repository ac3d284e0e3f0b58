"""Running one durable job, exactly once.

The job's request answers on ``_INBOX.jobs.<request id>``, which a stream
keeps, and a claim (when it began, its deadline) is stored beside it before
the request is published. A job delivered again (its runner died, or
stopped before it ended) is first looked up there:

* an answer (Final or Failure) is there: that is the result, nothing runs;
* claimed, deadline not passed: wait for the answer the request may still give;
* claimed and past its deadline, and a provider took it (``Accepted``): it
  may have reached the upstream, so it is not run again: it failed;
* otherwise no provider said it took it: it runs again, under the same
  request id, carrying the reservation policy made for it (so it is
  neither counted twice nor refused by its own first copy), once every
  live provider said it holds no earlier copy and will take none
  (``services.fence``): a copy of the earlier run still on its way can
  then never reach the upstream too.

A prompt-API job runs several requests; one taken over after a crash is not
run again (it may have been charged) but ends as interrupted. A batch's line
(``ingress.batch_runner``) is a job like any other, its request carrying the
batch's id (``Envelope.batch_id``) to its row.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ingress import conversations, responses_background
from ingress.gateway import Gateway
from ingress.prompt_call import PromptCall
from ingress.session import BusSession
from schemas import bus, subjects
from schemas.envelope import Api
from schemas.errors import (
    ClientClosed,
    GatewayError,
    InvalidRequest,
    RateLimitExceeded,
    RecordNotFound,
    UpstreamError,
)
from schemas.jobs import JobClaim, JobResult
from schemas.prompt_calls import ApiAnswer
from schemas.replies import Accepted, Admitted, Chunk, Failure, Fenced, Final
from schemas.reservation import Reservation
from schemas.tasks import NativeBatchRequest
from services.apis.base import ClientApi, Parsed
from services.apis.table import APIS
from services.bus import quota_ledger
from services.fence import COPIES_PER_RUN
from services.reply_split import Assembler

log = logging.getLogger("sluice.ingress.jobs")
BY_NAME = {api.name: api for api in APIS}
_decode_claim = msgspec.msgpack.Decoder(JobClaim).decode
# How long past its deadline a claimed job's answer may still come.
GRACE_S = 1.0


class Replay(msgspec.Struct):
    """What a job's reply subject holds: how far its request got."""

    claim: JobClaim | None = None
    quota: Reservation | None = None
    accepted: bool = False
    ended: Final | Failure | None = None

    @property
    def refused(self) -> bool:
        """Ended by policy's refusal for the caller's own rate limit: no provider took it."""
        ended = self.ended
        return isinstance(ended, Failure) and ended.code == RateLimitExceeded.code and not self.accepted

    def saw(self, reply: object, pieces: Assembler) -> bool:
        """Take the next reply the subject kept; True once it ended the request.
        A provider's answer to a fence is kept there too (the fence asked with
        this subject as its reply): one that holds a copy took the request, as
        its ``Accepted`` would say; it never ends it."""
        if isinstance(reply, Admitted):
            # The newest copy's admission is what the run's fences said goes on;
            # an older copy's, kept later, was settled by the provider that refused it.
            if reply.quota is not None and (self.quota is None or reply.quota.copy >= self.quota.copy):
                self.quota = reply.quota
        elif isinstance(reply, Accepted):
            self.accepted = True
        elif isinstance(reply, Fenced):
            self.accepted = self.accepted or reply.holds
        elif isinstance(reply, Chunk):
            pieces.add(reply)
        elif isinstance(reply, Final | Failure):
            self.ended = pieces.complete(reply) if isinstance(reply, Final) else reply
            return True
        return False


def claim_subject(request_id: str) -> str:
    return f"{subjects.JOB_REPLIES}.{request_id}.claim"


class JobRun:
    def __init__(
        self, gw: Gateway, job_id: str, api: str, slug: str, key_id: str, tenant_id: str, traceparent: str = ""
    ) -> None:
        self.gw = gw
        # The submitter's W3C trace context (the job message's header).
        self.traceparent = traceparent
        self.id = job_id
        self.api = api
        self.slug = slug
        # The key it was submitted with, by id: the job never holds its secret.
        self.key_id = key_id
        self.tenant_id = tenant_id
        self.request_id = f"job-{job_id}"
        # A background response's id (set by the ingress that queued it): its answer is stored there.
        self.response_id = ""
        # The batch a line belongs to (set by the batch runner): on its request, so on its row.
        self.batch_id = ""

    def result(self, reply: Final | Failure | ApiAnswer) -> JobResult:
        return JobResult(
            id=self.id,
            api=self.api if self.api != "prompt" else f"api.{self.slug}",
            request_id=self.request_id,
            result=reply,
            tenant_id=self.tenant_id,
            finished_at_ns=time.time_ns(),
        )

    def fail(self, error: GatewayError) -> JobResult:
        return self.result(Failure.from_error(self.request_id, error))

    async def run(
        self, body: dict[str, Any] | None, variables: dict[str, Any], delivery: int, *, again_if_refused: bool = False
    ) -> JobResult:
        """Run the job's ``delivery``-th time (1: the first). ``again_if_refused``:
        an earlier run that policy refused for the caller's own rate limit
        (nothing went upstream) runs again rather than ending so (a batch's
        line, paced)."""
        redelivered = delivery > 1
        replay = await self._replay() if redelivered else Replay()
        if again_if_refused and replay.refused:
            replay = Replay()  # its copies are numbered above the refused run's, and fence them off first
        if redelivered:
            log.info(
                "job %s taken over: claimed %s, admitted %s, accepted %s, ended %s",
                self.id,
                replay.claim is not None,
                replay.quota is not None,
                replay.accepted,
                type(replay.ended).__name__ if replay.ended is not None else "no",
            )
        # Ended in an earlier run: its result, unless a background response
        # still has to be stored from it (below).
        if replay.ended is not None and not self.response_id:
            return self.result(replay.ended)
        if self.api == "prompt":
            if replay.claim is not None:
                return self.fail(
                    UpstreamError("The job was interrupted; it was not run again.", code="job_interrupted")
                )
            return await self._prompt(variables)
        api, parsed = self._parse(body)
        parsed, _ = await conversations.resume(self.gw, api, parsed, None, self.key_id)
        result = await self._answer(api, parsed, replay, delivery)
        # A background response's answer is stored under its id, also when an
        # earlier run got the answer and died before storing it.
        if self.response_id and isinstance(result.result, Final | Failure):
            await responses_background.finish(self.gw, self.tenant_id, self.response_id, parsed, result.result)
        return result

    async def earlier_end(self, body: dict[str, Any] | None) -> JobResult | None:
        """How an earlier run's request ended, for a job that must not be
        sent again (a batch's line cancelled after it was claimed): its end,
        waited for while it may still come, or worker_died if a provider
        took it and died; None if no provider took it, so nothing reached
        the upstream (a copy past its deadline is refused by every stage)."""
        replay = await self._replay()
        if replay.refused:
            return None
        if replay.ended is not None:
            return self.result(replay.ended)
        if replay.claim is None:
            return None
        api, parsed = self._parse(body)
        parsed, _ = await conversations.resume(self.gw, api, parsed, None, self.key_id)
        ended = await self._wait_for_answer(replay, api.name, parsed)
        if ended is None:  # admitted, never taken: what policy reserved for it is given back whole
            quota_ledger.settle(self.gw.counters, replay.quota, 0, 0)
        return ended

    async def _answer(self, api: ClientApi, parsed: Parsed, replay: Replay, delivery: int) -> JobResult:
        if replay.ended is not None:
            return self.result(replay.ended)
        if self.response_id and not await responses_background.started(self.gw, self.tenant_id, self.response_id):
            return self.fail(ClientClosed("The background response was cancelled before it ran."))
        if replay.claim is not None:
            waited = await self._wait_for_answer(replay, api.name, parsed)
            if waited is not None:
                return waited
        # A copy sent by an earlier run may still be on its way: this run's
        # copies are numbered above all of its, and fence them off first.
        return await self._request(api.name, parsed, replay.quota, (delivery - 1) * COPIES_PER_RUN)

    async def ended_before(self) -> JobResult | None:
        """How an earlier delivery of the job ended, if it did."""
        replay = await self._replay()
        return self.result(replay.ended) if replay.ended is not None else None

    async def run_task(self, task: NativeBatchRequest, delivery: int) -> JobResult:
        """Run, the ``delivery``-th time, a job whose request the gateway made
        itself (a native batch's submit): exactly once, as any job, with no
        client's body to read."""
        replay = await self._replay() if delivery > 1 else Replay()
        if delivery > 1:
            log.info(
                "job %s taken over: claimed %s, ended %s", self.id, replay.claim is not None, replay.ended is not None
            )
        if replay.ended is not None:
            return self.result(replay.ended)
        parsed = Parsed(model=task.model, task=task)
        if replay.claim is not None:
            waited = await self._wait_for_answer(replay, "native_batch", parsed)
            if waited is not None:
                return waited
        return await self._request("native_batch", parsed, replay.quota, (delivery - 1) * COPIES_PER_RUN)

    def _parse(self, body: dict[str, Any] | None) -> tuple[ClientApi, Parsed]:
        api = BY_NAME.get(self.api)
        if api is None or body is None:
            raise RecordNotFound(f"No job API {self.api!r}, or no 'body'.")
        return api, api.parse(msgspec.json.encode({**body, "stream": False} if api.streams else body))

    async def _claim(self) -> JobClaim:
        now = time.time_ns()
        claim = JobClaim(at_ns=now, deadline_ns=now + int(self.gw.settings.request_timeout_s * 1e9))
        # Stored before the request goes out: a runner taking over must see it.
        await self.gw.nc.jetstream().publish(
            claim_subject(self.request_id), msgspec.msgpack.encode(claim), stream=subjects.JOB_REPLIES_STREAM
        )
        return claim

    def _session(self, api: Api, parsed: Parsed, claim: JobClaim, first_copy: int = 0) -> BusSession:
        # Received when claimed, in every run that waits on this claim: a row
        # the runner taking over records (worker_died) carries the same time
        # as the provider's, so the sink finds the two and counts one.
        return BusSession(
            self.gw,
            api,
            parsed.model,
            False,
            claim.at_ns,
            self.request_id,
            origin="job",
            deadline_ns=claim.deadline_ns,
            job=True,
            first_copy=first_copy,
        )

    async def _request(self, api: Api, parsed: Parsed, quota: Reservation | None, first_copy: int) -> JobResult:
        session = self._session(api, parsed, await self._claim(), first_copy)
        try:
            session.quota = quota
            await session.publish(
                None,
                parsed.body,
                parsed.embeddings,
                raw=parsed.raw,
                traceparent=self.traceparent,
                key_id=self.key_id,
                task=parsed.task,
                batch_id=self.batch_id,
            )
            whole = await session.collect()
        finally:
            session.close()
        assert whole is not None  # only a client can go away, and a job has none
        return self.result(whole)

    async def _prompt(self, variables: dict[str, Any]) -> JobResult:
        claim = await self._claim()
        call = PromptCall(
            self.gw,
            self.slug,
            variables,
            request_id=self.request_id,
            received_ns=claim.at_ns,
            origin="job",
            api_key=None,
            key_id=self.key_id,
            traceparent=self.traceparent,
        )
        call.deadline_ns = claim.deadline_ns
        return self.result(await call.run())

    async def _wait_for_answer(self, replay: Replay, api: Api, parsed: Parsed) -> JobResult | None:
        """A claimed job whose request may still answer: wait for it until
        its deadline. None: it never reached a provider; run it again."""
        assert replay.claim is not None
        session = self._session(api, parsed, replay.claim)
        session.body, session.embeddings, session.quota = parsed.body, parsed.embeddings, replay.quota
        try:
            left_s = (replay.claim.deadline_ns - time.time_ns()) / 1e9 + GRACE_S
            if left_s > 0:
                pieces = Assembler()
                reply = await session.next_reply(left_s)
                while isinstance(reply, Chunk):
                    pieces.add(reply)
                    reply = await session.next_reply(left_s)
                if isinstance(reply, Final):
                    return self.result(pieces.complete(reply))
                # A failure a stage sent (and recorded) ends the job; one made
                # here (nothing came in time) says only that we know no more.
                if isinstance(reply, Failure) and not session.made_here(reply):
                    return self.result(reply)
                if isinstance(reply, Failure) and reply.code == "worker_died":  # its provider died as we waited
                    session.record(reply)
                    return self.result(reply)
                again = await self._replay()
                if again.ended is not None:
                    return self.result(again.ended)
                replay.accepted = replay.accepted or again.accepted or bool(session.accepted_by)
                replay.quota = session.quota = replay.quota or again.quota
            if not replay.accepted:
                return None
            # A provider took it and is gone: the upstream may have answered,
            # so it is not run again; it is billed (once) as far as is known.
            failure = session.end_as_worker_died()
            session.record(failure)
            return self.result(failure)
        finally:
            session.close()

    async def _replay(self) -> Replay:
        """Read the job's reply subject and claim from the stream."""
        js = self.gw.nc.jetstream()
        out = Replay()
        try:
            claim = await js.get_last_msg(subjects.JOB_REPLIES_STREAM, claim_subject(self.request_id))
        except NotFoundError:
            return out
        out.claim = _decode_claim(claim.data)
        subject = f"{subjects.JOB_REPLIES}.{self.request_id}"
        try:
            await js.get_last_msg(subjects.JOB_REPLIES_STREAM, subject)
        except NotFoundError:
            return out
        sub = await js.subscribe(
            subject,
            stream=subjects.JOB_REPLIES_STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        pieces = Assembler()
        try:
            while True:
                msg = await sub.next_msg(timeout=2.0)
                if out.saw(bus.decode_reply(msg.data), pieces) or msg.metadata.num_pending == 0:
                    break
        except (TimeoutError, msgspec.DecodeError):
            pass
        finally:
            await sub.unsubscribe()
        return out


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_job")
