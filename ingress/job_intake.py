"""Taking durable jobs in: what a caller publishes on ``sluice.v1.jobs.<api>``
reaches an ingress process (queue group "jobs"), not the stream.

The caller's key is checked here, once; the job is queued under its
tenant (``sluice.v1.jobq.<tenant>.<api>``) with the key's id, so the
secret is never at rest in JetStream; and the caller gets the stream's own
acknowledgement, so a plain JetStream publish (``js.publish``) is still how
a job is sent, and its sequence is still the job's id. A refusal comes back
as a JetStream API error (and, if the job names a ``reply`` inbox, as a
failed result there too).

Each tenant has a consumer of its own on the queue, created here on its
first job, whose ack limit is the tenant's job concurrency: JetStream holds
back its next job while that many run, in whichever runner. A batch's lines
(``queue_lines``) go to the tenant's batch queue (``sluice.v1.batchq.<tenant>.<api>``),
whose consumer's ack limit is its batch concurrency: a batch of thousands
takes none of the room of the tenant's other jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import Error as JetStreamError

from ingress.gateway import Gateway
from schemas import bus, subjects
from schemas.errors import GatewayError, InternalError
from schemas.jobs import JobResult
from schemas.replies import Failure
from services import policy
from services.admission import valid_reply_subject
from services.apis.base import is_json

log = logging.getLogger("sluice.ingress.jobs")

# A held job is told "in progress" well inside this (``jobs.KEEPALIVE_S``).
ACK_WAIT_S = 10.0
_CALLER_HEADERS = (subjects.TRACEPARENT_HEADER, "Nats-Msg-Id")
# A batch's lines are queued with this many acknowledgements awaited at once.
LINES_IN_FLIGHT = 256


class _ReplyOnly(msgspec.Struct):
    reply: str = ""


def reply_of(data: bytes) -> str:
    """Where a job that cannot be run asked to hear of it, if it says so readably."""
    try:
        reply = (msgspec.json.decode if is_json(data) else msgspec.msgpack.decode)(data, type=_ReplyOnly).reply
    except (msgspec.DecodeError, ValueError):
        return ""
    return reply if valid_reply_subject(reply) else ""


class JobIntake:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        # consumer -> the concurrency it was made with
        self._consumers: dict[str, int] = {}

    async def start(self) -> None:
        self.sub = await self.gw.nc.subscribe(f"{subjects.JOBS}.>", queue="jobs", cb=self._on_job)

    async def stop(self) -> None:
        await self.sub.unsubscribe()

    def concurrency(self, tenant_id: str) -> int:
        tenant = self.gw.mirrors[subjects.KV_TENANTS].items.get(tenant_id)
        return (tenant.job_concurrency if tenant is not None else 0) or self.gw.settings.jobs_per_tenant

    def batch_concurrency(self, tenant_id: str) -> int:
        tenant = self.gw.mirrors[subjects.KV_TENANTS].items.get(tenant_id)
        return (tenant.batch_concurrency if tenant is not None else 0) or self.gw.settings.batches_per_tenant

    async def _on_job(self, msg: Msg) -> None:
        headers = msg.headers or {}
        api = msg.subject[len(subjects.JOBS) + 1 :]
        try:
            key = policy.authenticate(headers.get(subjects.API_KEY_HEADER), self.gw.keys.by_hash, _now_ms())
            # Of a caller's headers only these go on (never the gateway's own, e.g. a response id).
            given = {k: v for k, v in (msg.headers or {}).items() if k in _CALLER_HEADERS}
            answer = await self._queue(msg.data, given, key.tenant_id, key.id, api)
        except GatewayError as exc:
            answer = {"error": {"code": exc.status, "err_code": 0, "description": f"{exc.code}: {exc.message}"}}
            told = reply_of(msg.data)
            if told:
                refused = JobResult(id="", api=api, request_id="", result=Failure.from_error("", exc))
                await self.gw.nc.publish(told, bus.encode(refused))
        if msg.reply:
            await self.gw.nc.publish(msg.reply, json.dumps(answer).encode())

    async def queue(
        self, data: bytes, tenant_id: str, key_id: str, api: str, response_id: str = "", traceparent: str = ""
    ) -> int:
        """Queue a job the gateway itself made (a background response, whose
        answer is stored under ``response_id``); its sequence, the job's id."""
        headers = {subjects.TRACEPARENT_HEADER: traceparent} if traceparent else {}
        if response_id:
            headers[subjects.RESPONSE_ID_HEADER] = response_id
        return (await self._queue(data, headers, tenant_id, key_id, api))["seq"]

    async def _queue(self, data: bytes, headers: dict[str, str], tenant_id: str, key_id: str, api: str) -> dict:
        queued = {subjects.KEY_ID_HEADER: key_id}
        if response_id := headers.get(subjects.RESPONSE_ID_HEADER):
            queued[subjects.RESPONSE_ID_HEADER] = response_id
        if traceparent := headers.get(subjects.TRACEPARENT_HEADER):
            queued[subjects.TRACEPARENT_HEADER] = traceparent
        if submission := headers.get("Nats-Msg-Id"):
            # Scoped to the tenant: another tenant's id can neither collide with it nor reveal it.
            queued["Nats-Msg-Id"] = f"{tenant_id}:{submission}"
        js = self.gw.nc.jetstream()
        try:
            await self._ensure_consumer(
                subjects.jobs_consumer(tenant_id), f"{subjects.JOB_QUEUE}.{tenant_id}.>", self.concurrency(tenant_id)
            )
            ack = await js.publish(
                subjects.job_queue(tenant_id, api), data, stream=subjects.JOBS_STREAM, headers=queued
            )
        except (JetStreamError, nats.errors.Error) as exc:
            log.warning("a job of tenant %s could not be queued: %s", tenant_id, exc)
            raise InternalError("The job could not be queued; send it again.", status=503) from exc
        # Runners look for work now rather than at their next round.
        await self.gw.nc.publish(subjects.CONTROL_JOBS, tenant_id.encode())
        return {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}

    async def queue_lines(self, tenant_id: str, key_id: str, api: str, lines: AsyncIterator[tuple[str, bytes]]) -> int:
        """Queue a batch's lines (``ingress.batch_create``: each its
        Nats-Msg-Id and payload) on the tenant's batch queue; how many.
        Runners are told as soon as the first ones are in."""
        js = self.gw.nc.jetstream()
        subject = subjects.batch_queue(tenant_id, api)
        waiting: set[asyncio.Future] = set()
        count = 0
        try:
            await self._ensure_consumer(
                subjects.batch_consumer(tenant_id),
                f"{subjects.BATCH_QUEUE}.{tenant_id}.>",
                self.batch_concurrency(tenant_id),
            )
            async for msg_id, data in lines:
                headers = {subjects.KEY_ID_HEADER: key_id, "Nats-Msg-Id": msg_id}
                waiting.add(
                    asyncio.ensure_future(js.publish(subject, data, stream=subjects.JOBS_STREAM, headers=headers))
                )
                count += 1
                if len(waiting) >= LINES_IN_FLIGHT:
                    done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    for ack in done:
                        ack.result()
                if count == LINES_IN_FLIGHT:
                    await self.gw.nc.publish(subjects.CONTROL_JOBS, tenant_id.encode())
            await asyncio.gather(*waiting)
            waiting.clear()
        except (JetStreamError, nats.errors.Error) as exc:
            log.warning("a batch of tenant %s could not be queued: %s", tenant_id, exc)
            raise InternalError("The batch could not be queued; it is queued again shortly.", status=503) from exc
        finally:
            for ack in waiting:
                ack.cancel()
        await self.gw.nc.publish(subjects.CONTROL_JOBS, tenant_id.encode())
        return count

    async def _ensure_consumer(self, name: str, filter_subject: str, limit: int) -> None:
        if self._consumers.get(name) == limit:
            return
        # Made or changed (its ack limit follows the tenant's setting); the server takes the same config again.
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_ack_pending=limit,
        )
        await self.gw.nc.jetstream().add_consumer(subjects.JOBS_STREAM, config)
        self._consumers[name] = limit


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
