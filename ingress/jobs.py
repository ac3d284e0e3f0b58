"""Durable jobs, taken from the work queue by every ingress process (one
shared durable consumer), run at most ``jobs_per_tenant`` at a time per
tenant, their results kept in a bucket and sent to the job's ``reply``.

A job is acknowledged only once its result is stored, so a runner that dies
or stops leaves it to another (see ``job_run`` for how it is then run once).
Results are read with a request on ``sluice.v1.in.jobs.result``: a caller
sees only its own tenant's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ingress.gateway import Gateway
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
ACK_WAIT_S = 10.0
KEEPALIVE_S = 3.0
# On a clean stop, jobs running get this long to end before they are left
# to the next runner.
STOP_WAIT_S = 5.0
_decode_job_msgpack = msgspec.msgpack.Decoder(Job).decode
_decode_job_json = msgspec.json.Decoder(Job).decode
_decode_query_msgpack = msgspec.msgpack.Decoder(JobQuery).decode
_decode_query_json = msgspec.json.Decoder(JobQuery).decode
_decode_result = msgspec.msgpack.Decoder(JobResult).decode


@dataclass
class Held:
    msg: Msg
    run: JobRun
    job: Job
    task: asyncio.Task[None] | None = None


@dataclass
class TenantQueue:
    running: int = 0
    waiting: deque[Held] = field(default_factory=deque)


class JobRunner:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.tenants: dict[str, TenantQueue] = {}
        self.held: dict[str, Held] = {}
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.kv: KeyValue | None = None

    async def start(self) -> None:
        js = self.gw.nc.jetstream()
        self.kv = await js.key_value(subjects.KV_JOB_RESULTS)
        held = self.gw.settings.jobs_held
        self.sub = await js.pull_subscribe(
            f"{subjects.JOBS}.>",
            durable=subjects.JOBS_CONSUMER,
            stream=subjects.JOBS_STREAM,
            config=ConsumerConfig(ack_wait=ACK_WAIT_S, max_ack_pending=max(1000, 4 * held)),
        )
        self.queries = await self.gw.nc.subscribe(subjects.JOBS_RESULT, queue="jobs", cb=self._on_query)
        self._tasks = [asyncio.create_task(self._fetch()), asyncio.create_task(self._keep_alive())]

    async def stop(self) -> None:
        """Take no more; what waits goes back at once, what runs gets a moment."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # Unsubscribed here rather than drained with the connection: draining
        # a pull subscription whose fetch was cut short waits out its timeout.
        for sub in (self.sub, self.queries):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        running = [h.task for h in self.held.values() if h.task is not None]
        for h in list(self.held.values()):
            if h.task is None:
                await _quietly(h.msg.nak())
        if running:
            await asyncio.wait(running, timeout=STOP_WAIT_S)
        for h in list(self.held.values()):
            if h.task is not None and not h.task.done():
                h.task.cancel()
                await _quietly(h.msg.nak())

    async def _fetch(self) -> None:
        while not self._stopping:
            room = self.gw.settings.jobs_held - len(self.held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                msgs = await self.sub.fetch(batch=min(room, 64), timeout=1.0)
            except TimeoutError:
                continue
            except Exception:
                log.exception("fetching jobs failed; trying again")
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                try:
                    await self._take(msg)
                except Exception:  # the result could not be stored: the job comes back after its ack wait
                    log.exception("job %s could not be taken", msg.metadata.sequence.stream)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            for h in list(self.held.values()):
                await _quietly(h.msg.in_progress())

    async def _take(self, msg: Msg) -> None:
        job_id = str(msg.metadata.sequence.stream)
        if job_id in self.held:  # delivered again while this process still holds it: it runs once, here
            return
        api, _, slug = msg.subject[len(subjects.JOBS) + 1 :].partition(".")
        if api == "api":
            api = "prompt"
        key_header = msg.headers.get(subjects.API_KEY_HEADER) if msg.headers else None
        traceparent = msg.headers.get(subjects.TRACEPARENT_HEADER, "") if msg.headers else ""
        run = JobRun(self.gw, job_id, api, slug, key_header or "", "", traceparent)
        try:
            # The key first: a result is kept for its tenant, readable by it alone.
            key = policy.authenticate(key_header, self.gw.keys.by_hash, time.time_ns() // 1_000_000)
            run.tenant_id = key.tenant_id
            job = decode_json(_decode_job_json if is_json(msg.data) else _decode_job_msgpack, msg.data)
            if job.reply and not valid_reply_subject(job.reply):
                raise invalid("'reply' must be an inbox subject (_INBOX...), without wildcards.")
        except GatewayError as exc:
            await self._finish(msg, run.fail(exc), _reply_of(msg.data))
            return
        held = Held(msg, run, job)
        self.held[job_id] = held
        self.tenants.setdefault(key.tenant_id, TenantQueue()).waiting.append(held)
        self._dispatch(key.tenant_id)

    def _dispatch(self, tenant_id: str) -> None:
        queue = self.tenants[tenant_id]
        tenant = self.gw.mirrors[subjects.KV_TENANTS].items.get(tenant_id)
        limit = (tenant.job_concurrency if tenant is not None else 0) or self.gw.settings.jobs_per_tenant
        while queue.waiting and queue.running < limit and not self._stopping:
            held = queue.waiting.popleft()
            queue.running += 1
            held.task = asyncio.create_task(self._run(held))

    async def _run(self, held: Held) -> None:
        run, msg = held.run, held.msg
        try:
            done = await self._stored(run.id)
            if done is None:
                result = await run.run(held.job.body, held.job.variables, msg.metadata.num_delivered)
                await self._finish(msg, result, held.job.reply)
            else:
                await msg.ack()
        except GatewayError as exc:
            await self._finish(msg, run.fail(exc), held.job.reply)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed", run.id)
            await self._finish(msg, run.fail(InternalError("The gateway failed on this job.")), held.job.reply)
        finally:
            self.held.pop(run.id, None)
            queue = self.tenants[run.tenant_id]
            queue.running -= 1
            self._dispatch(run.tenant_id)
            self._room.set()

    async def _stored(self, job_id: str) -> JobResult | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(job_id)
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decode_result(entry.value) if entry.value else None

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
        await self.gw.nc.publish(msg.reply, msgspec.json.encode(answer) if as_json else bus.encode(answer))

    async def _result_for(self, job_id: str, tenant_id: str) -> JobResult | Failure:
        stored = await self._stored(job_id) if job_id.isdigit() else None
        if stored is not None and stored.tenant_id == tenant_id:
            return stored
        if stored is None and job_id.isdigit() and await self._pending(job_id, tenant_id):
            return Failure(id="", seq=0, status=202, type="pending", code="job_pending", message="Not done yet.")
        # Another tenant's job is as unknown as one that never was.
        raise RecordNotFound(f"No job {job_id!r} (or its result has expired).", code="job_not_found")

    async def _pending(self, job_id: str, tenant_id: str) -> bool:
        if job_id in self.held:
            return self.held[job_id].run.tenant_id == tenant_id
        try:
            raw = await self.gw.nc.jetstream().get_msg(subjects.JOBS_STREAM, int(job_id))
        except NotFoundError:
            return False
        header = raw.headers.get(subjects.API_KEY_HEADER) if raw.headers else None
        try:
            return policy.authenticate(header, self.gw.keys.by_hash, time.time_ns() // 1_000_000).tenant_id == tenant_id
        except GatewayError:
            return False


class _ReplyOnly(msgspec.Struct):
    reply: str = ""


def _reply_of(data: bytes) -> str:
    """Where a job that cannot be run asked to hear of it, if it says so readably."""
    try:
        reply = (msgspec.json.decode if is_json(data) else msgspec.msgpack.decode)(data, type=_ReplyOnly).reply
    except (msgspec.DecodeError, ValueError):
        return ""
    return reply if valid_reply_subject(reply) else ""


async def _quietly(ack: Awaitable[None]) -> None:
    # The server forgot the message, or the connection is going: nothing to do.
    with contextlib.suppress(Exception):
        await ack
