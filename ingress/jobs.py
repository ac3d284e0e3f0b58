"""Durable jobs: taken in by every ingress process (``job_intake``), queued
per tenant in a work-queue stream, and run by every ingress process, their
results kept in a bucket and sent to the job's ``reply``.

Tenants take turns: each round, a runner asks each tenant that has jobs
waiting (and room under its concurrency) for one job, so one tenant's
backlog of thousands never stands in front of another tenant's first job.
A tenant's batch lines (``ingress.batch_runner``) wait in a queue of their
own beside its jobs, asked in the same rounds for a few lines at a time, at
the tenant's batch concurrency: a batch takes none of its jobs' room.
A tenant's concurrency holds across every runner: its consumer's ack limit
is that number, and a job is acknowledged only once its result is stored,
so a runner that dies or stops leaves it to another (see ``job_run`` for
how it is then run once). Results are read with a request on
``sluice.v1.in.jobs.result``: a caller sees only its own tenant's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ingress.batch_service import BatchService
from ingress.gateway import Gateway
from ingress.job_intake import JobIntake, reply_of
from ingress.job_run import JobRun, invalid
from schemas import bus, subjects
from schemas.errors import GatewayError, InternalError, RecordNotFound
from schemas.jobs import Job, JobQuery, JobResult
from schemas.replies import Failure
from services import policy
from services.admission import valid_reply_subject
from services.apis.base import decode_json, is_json

log = logging.getLogger("sluice.ingress.jobs")

# A held job is told "in progress" this often, well inside the ack wait, so
# the server does not hand it to another runner meanwhile.
KEEPALIVE_S = 3.0
# On a clean stop, jobs running get this long to end before they are left
# to the next runner.
STOP_WAIT_S = 5.0
# With nothing to take, a runner looks again after this (sooner when told of new jobs).
IDLE_S = 1.0
# How long one round waits for the tenants' answers (each comes at once: no_wait).
ROUND_S = 2.0
# Statuses that end a pull request without a job: none waiting (404), the
# ack limit reached (409), the request expired (408).
_NO_JOB = {"404", "408", "409"}
# The server lists consumers this many at a time.
CONSUMERS_PAGE = 256
# A batch queue is asked for up to this many lines a round (a job queue for one).
LINES_PER_ASK = 8
_JOBS_PREFIX = subjects.jobs_consumer("")
_BATCH_PREFIX = subjects.batch_consumer("")
_decode_job_msgpack = msgspec.msgpack.Decoder(Job).decode
_decode_job_json = msgspec.json.Decoder(Job).decode
_decode_query_msgpack = msgspec.msgpack.Decoder(JobQuery).decode
_decode_query_json = msgspec.json.Decoder(JobQuery).decode
_decode_result = msgspec.msgpack.Decoder(JobResult).decode
# Jobs whose stored result did not decode, each said once (this many remembered).
UNREADABLE_KEPT = 1024


class _Owner(msgspec.Struct):
    """What a stored result that does not decode whole may still say: whose it is."""

    tenant_id: str = ""
    api: str = ""
    request_id: str = ""


@dataclass
class Held:
    msg: Msg
    run: JobRun
    job: Job | None = None
    task: asyncio.Task[None] | None = None


class JobRunner:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.intake = JobIntake(gw)
        self.batches = BatchService(gw, self.intake)
        self.held: dict[str, Held] = {}
        self._room = asyncio.Event()
        self._news = asyncio.Event()
        # queue (its consumer's name) -> its pull request in flight this round
        self._asked: dict[str, asyncio.Future[None]] = {}
        self._turn = 0
        # Jobs taken since start: how a round tells it took any.
        self._taken = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.kv: KeyValue | None = None
        self._unreadable: set[str] = set()

    async def start(self) -> None:
        nc = self.gw.nc
        self.kv = await nc.jetstream().key_value(subjects.KV_JOB_RESULTS)
        await self.intake.start()
        await self.batches.start()
        # Jobs answer pull requests here, one subject per queue.
        self._inbox = nc.new_inbox()
        self.pulls = await nc.subscribe(f"{self._inbox}.*", cb=self._on_pulled)
        self.news = await nc.subscribe(subjects.CONTROL_JOBS, cb=self._on_news)
        self.queries = await nc.subscribe(subjects.JOBS_RESULT, queue="jobs", cb=self._on_query)
        self._tasks = [asyncio.create_task(self._rounds()), asyncio.create_task(self._keep_alive())]

    async def stop(self) -> None:
        """Take no more; what runs gets a moment, then goes back to the queue."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # Unsubscribed here rather than drained with the connection: a pull
        # answered after this must not start a job this process cannot finish.
        for sub in (self.pulls, self.news, self.queries):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await self.intake.stop()
        with contextlib.suppress(Exception):
            await self.batches.stop()
        running = [h.task for h in self.held.values() if h.task is not None]
        if running:
            await asyncio.wait(running, timeout=STOP_WAIT_S)
        for h in list(self.held.values()):
            if h.task is not None and not h.task.done():
                h.task.cancel()
                await _quietly(h.msg.nak())

    async def _on_news(self, _msg: Msg) -> None:
        self._news.set()

    async def _rounds(self) -> None:
        while not self._stopping:
            # Cleared before the round: news during it (a job queued or ended) means look again.
            self._news.clear()
            try:
                took = await self._round()
            except Exception:
                log.exception("taking jobs failed; trying again")
                took = 0
                await asyncio.sleep(1.0)
            if took:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_S):
                    await self._news.wait()

    async def _round(self) -> int:
        """Ask each queue with work (and room) for a job (a few lines of a
        batch queue), starting one further along each round; the jobs are
        taken as they come."""
        room = self.gw.settings.jobs_held - len(self.held)
        if room <= 0:
            self._room.clear()
            await self._room.wait()
            return 1
        queues = await self._queues_with_work()
        if not queues:
            return 0
        self._turn = (self._turn + 1) % len(queues)
        turn = (queues[self._turn :] + queues[: self._turn])[:room]
        lines = max(1, min(LINES_PER_ASK, room // len(turn)))
        before = self._taken
        loop = asyncio.get_running_loop()
        for queue in turn:
            self._asked[queue] = loop.create_future()
            ask = {"batch": lines if queue.startswith(_BATCH_PREFIX) else 1, "no_wait": True}
            api = f"$JS.API.CONSUMER.MSG.NEXT.{subjects.JOBS_STREAM}.{queue}"
            await self.gw.nc.publish(api, json.dumps(ask).encode(), reply=f"{self._inbox}.{queue}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ROUND_S):
                await asyncio.gather(*self._asked.values())
        self._asked.clear()
        return self._taken - before

    async def _queues_with_work(self) -> list[str]:
        """The consumers (a tenant's jobs, a tenant's batch lines) with
        work, in an order where each tenant's two queues are apart."""
        js = self.gw.nc.jetstream()
        infos = page = await js.consumers_info(subjects.JOBS_STREAM)
        while len(page) == CONSUMERS_PAGE:
            page = await js.consumers_info(subjects.JOBS_STREAM, offset=len(infos))
            infos += page
        # Jobs held past their ack wait (their runner died) come again only
        # to a pull, so a tenant at its limit is asked too: the server
        # answers at once with a job due again, or that none may go out.
        waiting = [
            c.name
            for c in infos
            if c.name.startswith((_JOBS_PREFIX, _BATCH_PREFIX)) and (c.num_pending or c.num_ack_pending)
        ]
        return sorted(waiting)

    async def _on_pulled(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        # A job comes under its own subject (``...jobq.<tenant>.<api>``); a
        # status under the pull request's (``<inbox>.<queue>``).
        queue = msg.subject.rsplit(".", 1)[1] if status else _queue_of(msg.subject)
        asked = self._asked.get(queue)
        if status is None:
            try:
                await self._take(msg)
            except Exception:  # the result could not be stored: the job comes back after its ack wait
                log.exception("job %s could not be taken", msg.metadata.sequence.stream)
        elif status not in _NO_JOB:
            log.warning("pulling %s: status %s", queue, status)
        if asked is not None and not asked.done():
            asked.set_result(None)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            for h in list(self.held.values()):
                await _quietly(h.msg.in_progress())

    async def _take(self, msg: Msg) -> None:
        job_id = str(msg.metadata.sequence.stream)
        if job_id in self.held:  # delivered again while this process still holds it: it runs once, here
            return
        is_line = msg.subject.startswith(f"{subjects.BATCH_QUEUE}.")
        prefix = subjects.BATCH_QUEUE if is_line else subjects.JOB_QUEUE
        tenant_id = _tenant_of(msg.subject)
        api, _, slug = msg.subject[len(prefix) + len(tenant_id) + 2 :].partition(".")
        if api == "api":
            api = "prompt"
        headers = msg.headers or {}
        key_id = headers.get(subjects.KEY_ID_HEADER, "")
        run = JobRun(self.gw, job_id, api, slug, key_id, tenant_id, headers.get(subjects.TRACEPARENT_HEADER, ""))
        run.response_id = headers.get(subjects.RESPONSE_ID_HEADER, "") if api == "responses" and not is_line else ""
        held = Held(msg, run)
        self.held[job_id] = held
        self._taken += 1
        if is_line:
            held.task = asyncio.create_task(self._run_line(held))
            return
        try:
            # The key as it is now: disabled or deleted since the job came in, it is refused.
            policy.key_by_id(key_id, self.gw.keys.mirror.items, time.time_ns() // 1_000_000)
            held.job = decode_json(_decode_job_json if is_json(msg.data) else _decode_job_msgpack, msg.data)
            if held.job.reply and not valid_reply_subject(held.job.reply):
                raise invalid("'reply' must be an inbox subject (_INBOX...), without wildcards.")
        except GatewayError as exc:
            try:
                await self._finish(msg, run.fail(exc), reply_of(msg.data))
            finally:
                self._release(job_id)
            return
        held.task = asyncio.create_task(self._run(held))

    async def _run(self, held: Held) -> None:
        run, msg, job = held.run, held.msg, held.job
        assert job is not None
        try:
            done = await self._stored(run.id)
            if done is None:
                result = await run.run(job.body, job.variables, msg.metadata.num_delivered)
                await self._finish(msg, result, job.reply)
            else:
                await msg.ack()
        except GatewayError as exc:
            await self._finish(msg, run.fail(exc), job.reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed", run.id)
            await self._finish(msg, run.fail(InternalError("The gateway failed on this job.")), job.reply)
        finally:
            self._release(run.id)

    async def _run_line(self, held: Held) -> None:
        try:
            await self.batches.lines.run(held.run, held.msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Nothing kept for it: the line runs again (its claim says how far it got).
            log.exception("batch line (job %s) failed; it is delivered again", held.run.id)
            await _quietly(held.msg.nak(delay=1.0))
        finally:
            self._release(held.run.id)

    def _release(self, job_id: str) -> None:
        self.held.pop(job_id, None)
        self._room.set()
        self._news.set()  # the tenant may have room again

    async def _stored(self, job_id: str) -> JobResult | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(job_id)
        except (KeyNotFoundError, NotFoundError):
            return None
        return self._readable(job_id, entry.value) if entry.value else None

    def _readable(self, job_id: str, stored: bytes) -> JobResult:
        """A stored result as it reads; one that does not (kept by another
        version) is the job failed, said once: its caller gets an answer,
        not a timeout at every query. Its tenant as far as that reads (a
        result nobody's is any caller's "not found")."""
        try:
            return _decode_result(stored)
        except (msgspec.DecodeError, ValueError):
            pass
        try:
            owner = msgspec.msgpack.decode(stored, type=_Owner)
        except (msgspec.DecodeError, ValueError):
            owner = _Owner()
        if job_id not in self._unreadable:
            if len(self._unreadable) >= UNREADABLE_KEPT:
                self._unreadable.clear()
            self._unreadable.add(job_id)
            log.error("the stored result of job %s does not decode; it is answered as failed", job_id)
        error = InternalError("The job's stored result could not be read.", code="result_unreadable")
        return JobResult(
            id=job_id,
            api=owner.api,
            request_id=owner.request_id,
            result=Failure.from_error(owner.request_id, error),
            tenant_id=owner.tenant_id,
        )

    async def _finish(self, msg: Msg, result: JobResult, reply: str) -> None:
        """Store the result, tell the caller, then (only then) acknowledge."""
        assert self.kv is not None
        payload = bus.encode(result)
        await self.kv.put(result.id, payload)
        if reply:
            await self.gw.nc.publish(reply, payload)
        await msg.ack()

    async def _on_query(self, msg: Msg) -> None:
        if not valid_reply_subject(msg.reply or ""):
            return
        as_json = is_json(msg.data)
        try:
            query = decode_json(_decode_query_json if as_json else _decode_query_msgpack, msg.data)
            header = msg.headers.get(subjects.API_KEY_HEADER) if msg.headers else None
            key = policy.authenticate(header, self.gw.keys.by_hash, time.time_ns() // 1_000_000)
            answer: JobResult | Failure = await self._result_for(query.id, key.tenant_id)
        except GatewayError as exc:
            answer = Failure.from_error("", exc)
        except Exception:
            # Answered all the same: a query left unanswered is a caller waiting out its timeout, every time.
            log.exception("a job query failed")
            answer = Failure.from_error("", InternalError("The job's result could not be looked up; ask again."))
        await self.gw.nc.publish(msg.reply, msgspec.json.encode(answer) if as_json else bus.encode(answer))

    async def _result_for(self, job_id: str, tenant_id: str) -> JobResult | Failure:
        stored = await self._stored(job_id) if job_id.isdigit() else None
        if stored is not None and stored.tenant_id == tenant_id:
            return stored
        if stored is None and job_id.isdigit():
            if await self._pending(job_id, tenant_id):
                return Failure(id="", seq=0, status=202, type="pending", code="job_pending", message="Not done yet.")
            # It may have ended between the two looks (stored, then taken off the queue).
            stored = await self._stored(job_id)
            if stored is not None and stored.tenant_id == tenant_id:
                return stored
        # Another tenant's job is as unknown as one that never was.
        raise RecordNotFound(f"No job {job_id!r} (or its result has expired).", code="job_not_found")

    async def _pending(self, job_id: str, tenant_id: str) -> bool:
        if job_id in self.held:
            return self.held[job_id].run.tenant_id == tenant_id
        try:
            raw = await self.gw.nc.jetstream().get_msg(subjects.JOBS_STREAM, int(job_id))
        except NotFoundError:
            return False
        # Queued under its tenant: the subject says whose it is.
        return (raw.subject or "").startswith(f"{subjects.JOB_QUEUE}.{tenant_id}.")


def _tenant_of(job_subject: str) -> str:
    """The tenant of a job (``...jobq.<tenant>.<api>``) or a batch line (``...batchq.<tenant>.<api>``)."""
    prefix = subjects.BATCH_QUEUE if job_subject.startswith(f"{subjects.BATCH_QUEUE}.") else subjects.JOB_QUEUE
    return job_subject[len(prefix) + 1 :].partition(".")[0]


def _queue_of(job_subject: str) -> str:
    """The consumer a job or a batch line came from."""
    tenant_id = _tenant_of(job_subject)
    if job_subject.startswith(f"{subjects.BATCH_QUEUE}."):
        return subjects.batch_consumer(tenant_id)
    return subjects.jobs_consumer(tenant_id)


async def _quietly(ack: Awaitable[None]) -> None:
    # The server forgot the message, or the connection is going: nothing to do.
    with contextlib.suppress(Exception):
        await ack
